"""Loading a trace from the current publication (see :mod:`tracehouse.publication`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from tracehouse.trace_view.model import (
    Row,
    TraceNotFoundError,
    TraceView,
    _tree_order,
    chunk_journey,
)
from tracehouse.warehouse import MARTS_SCHEMA

# Looked up in the publication (marts.duckdb), first found wins.
FEEDBACK_RELATIONS = ("fct_feedback", "stg_lake__feedback")
ANNOTATION_RELATIONS = ("fct_annotations", "stg_lake__annotations")


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _relation_exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_name = ?",
        [relation],
    ).fetchone()[0])  # type: ignore[index]


def connect(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the current publication (see :mod:`tracehouse.publication`)."""
    from tracehouse.publication import connect as connect_publication

    return connect_publication(warehouse)


def load_trace(warehouse: Path | str, trace_id: str) -> TraceView:
    """Load one trace (``trace_id`` or a unique prefix of it) from the warehouse."""
    con = connect(warehouse)
    try:
        return load_trace_from(con, trace_id)
    finally:
        con.close()


def load_trace_from(con: duckdb.DuckDBPyConnection, trace_id: str) -> TraceView:
    """:func:`load_trace` on an open connection."""
    trace_id = trace_id.strip().lower()
    matches = _rows(
        con,
        f"SELECT * FROM {MARTS_SCHEMA}.fct_requests WHERE trace_id LIKE ? || '%' LIMIT 2",
        [trace_id],
    )
    if not matches:
        raise TraceNotFoundError(f"no trace {trace_id!r} in marts.fct_requests")
    if len(matches) > 1 and matches[0]["trace_id"] != trace_id:
        raise TraceNotFoundError(f"trace id prefix {trace_id!r} is ambiguous; give more of it")
    request = matches[0]
    tid = request["trace_id"]
    spans = _rows(
        con,
        f"SELECT * FROM {MARTS_SCHEMA}.fct_spans WHERE trace_id = ? "
        "ORDER BY offset_ms NULLS LAST, event_time, span_id",
        [tid],
    )
    feedback: list[Row] = []
    for relation in FEEDBACK_RELATIONS:
        if _relation_exists(con, relation):
            feedback = _rows(con, f"SELECT * FROM {relation} WHERE trace_id = ? "
                                  "ORDER BY event_time", [tid])
            break
    annotations: list[Row] = []
    for relation in ANNOTATION_RELATIONS:
        if _relation_exists(con, relation):
            annotations = _rows(con, f"SELECT * FROM {relation} WHERE trace_id = ? "
                                     "ORDER BY label_time", [tid])
            break
    view = TraceView(tid, request, _tree_order(spans), feedback, annotations)
    view.chunks = chunk_journey(view)
    return view
