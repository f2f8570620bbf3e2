"""Does a trace exist? Looked up in the published marts, else in the lake's spans."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from tracehouse.contract.schemas import TRACE_ID_PATTERN
from tracehouse.errors import TracehouseError


class TraceNotFoundError(TracehouseError, LookupError):
    """No such trace in the published marts nor in the lake (or a malformed trace id)."""


def normalize_trace_id(trace_id: str) -> str:
    """The trace id lower-cased, or :class:`TraceNotFoundError` if it is not 32 hex chars."""
    tid = trace_id.strip().lower()
    if not re.match(TRACE_ID_PATTERN, tid):
        raise TraceNotFoundError(
            f"{trace_id!r} is not a trace id: expected 32 lowercase hex characters (W3C)"
        )
    return tid


def _any_row(sql: str, params: list[str]) -> bool:
    con = duckdb.connect()
    try:
        return bool(con.execute(sql, params).fetchall())
    finally:
        con.close()


def _glob(path: Path) -> str:
    return str(path).replace("'", "''")


def find_trace(
    trace_id: str, *, warehouse: Path | str | None = None, lake: Path | str | None = None
) -> str:
    """Where ``trace_id`` was found (``'marts'`` or ``'lake'``); raises if it is in neither.

    The published ``fct_requests`` is looked at first (one row per trace, fast), then the lake's
    accepted span files (a trace whose run has not happened yet can already be labelled).
    """
    tid = normalize_trace_id(trace_id)
    looked = []
    if warehouse is not None:
        from tracehouse.publication import mart_glob

        # a file, or (current layout) a folder of one file per day
        published = Path(warehouse) / "marts" / "fct_requests.parquet"
        looked.append(str(published))
        if published.exists() and _any_row(
            f"SELECT 1 FROM read_parquet('{_glob(Path(mart_glob(published)))}') "
            "WHERE trace_id = ? LIMIT 1", [tid]
        ):
            return "marts"
    if lake is not None:
        spans = Path(lake) / "spans"
        looked.append(str(spans))
        if any(spans.glob("dt=*/*.parquet")) and _any_row(
            f"SELECT 1 FROM read_parquet('{_glob(spans / 'dt=*' / '*.parquet')}', "
            "union_by_name = true) WHERE trace_id = ? LIMIT 1",
            [tid],
        ):
            return "lake"
    if not looked:
        raise TraceNotFoundError("give --warehouse or --lake to look the trace up in")
    raise TraceNotFoundError(f"no trace {tid} in {' nor '.join(looked)}")
