"""Which days a build rewrote, so that mart checks look at those days only.

The warehouse's base tables stamp every row they write with ``_loaded_at``
(macros/incremental/loaded.sql). The mart checks keep their own watermark in the same table the
models use (``main.tracehouse_watermarks``, model ``quality.marts``): the days to check are the
``trace_date`` of every trace with a base row stamped after it. It moves only after a check
passed, so a failed check is repeated on the same days (and more) next run.
"""

from __future__ import annotations

import duckdb

from tracehouse.warehouse import MARTS_SCHEMA

WATERMARKS = "main.tracehouse_watermarks"
CHECKER = "quality.marts"
BASES = {
    "spans": "staging.base_lake__spans",
    "feedback": "staging.base_lake__feedback",
    "annotations": "staging.base_lake__annotations",
}


def _exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()[0])  # type: ignore[index]


def _has_stamps(con: duckdb.DuckDBPyConnection) -> bool:
    return all(_exists(con, t) for t in (*BASES.values(), WATERMARKS,
                                         f"{MARTS_SCHEMA}.fct_requests"))


def touched_days(con: duckdb.DuckDBPyConnection) -> list[str] | None:
    """The days (YYYY-MM-DD) of traces written since the last passed mart check; None when the
    marts were never checked against this warehouse's stamps (check every day)."""
    if not _has_stamps(con):
        return None
    marks = dict(con.execute(
        f"SELECT upstream, max(loaded_at) FROM {WATERMARKS} WHERE model_name = ? GROUP BY 1",
        [CHECKER],
    ).fetchall())
    if set(marks) != set(BASES):
        return None
    touched = " UNION ".join(
        f"SELECT trace_id FROM {table} WHERE _loaded_at > ?" for table in BASES.values()
    )
    rows = con.execute(
        f"""
        SELECT DISTINCT strftime(trace_date, '%Y-%m-%d') AS day
        FROM "{MARTS_SCHEMA}".fct_requests
        WHERE trace_id IN ({touched}) AND trace_date IS NOT NULL
        ORDER BY day
        """,
        [marks[name] for name in BASES],
    ).fetchall()
    return [r[0] for r in rows]


def mark_marts_checked(con: duckdb.DuckDBPyConnection) -> None:
    """The marts passed their checks: every stamp now in the base tables is checked."""
    if not all(_exists(con, t) for t in BASES.values()):
        return
    con.execute(f"CREATE TABLE IF NOT EXISTS {WATERMARKS} "
                "(model_name VARCHAR, upstream VARCHAR, loaded_at TIMESTAMPTZ)")
    con.execute(f"DELETE FROM {WATERMARKS} WHERE model_name = ?", [CHECKER])
    for name, table in BASES.items():
        con.execute(
            f"INSERT INTO {WATERMARKS} SELECT ?, ?, max(_loaded_at) FROM {table} "
            "HAVING max(_loaded_at) IS NOT NULL",
            [CHECKER, name],
        )
