"""Which days a build rewrote, so that mart checks look at those days only.

The warehouse's base tables stamp every row they write with ``_loaded_at``
(macros/incremental/loaded.sql). The mart checks keep their own watermark in the same table the
models use (``main.tracehouse_watermarks``, model ``quality.marts``): the days to check are the
``trace_date`` of every trace with a base row stamped after it. It moves only after a check
passed, so a failed check is repeated on the same days (and more) next run.

A mart whose content did not change since the last passed check is not validated again: each
passed check records every mart's content fingerprint (the one publish compares,
:func:`tracehouse.publish.fingerprint`: columns, rows and an order-independent hash) with a
digest of the suites' code in ``quality.checked_marts``; a mart with the same fingerprint and
digest would give the same outcomes, so its suites are reported as not re-checked.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import duckdb

from tracehouse.warehouse import BASE_TABLES, MARTS_SCHEMA

WATERMARKS = "main.tracehouse_watermarks"
CHECKER = "quality.marts"
CHECKED_MARTS = "quality.checked_marts"


def _exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()[0])  # type: ignore[index]


def _has_stamps(con: duckdb.DuckDBPyConnection) -> bool:
    return all(_exists(con, t) for t in (*BASE_TABLES.values(), WATERMARKS,
                                         f"{MARTS_SCHEMA}.fct_requests"))


#: The temporary table (of the checks' connection) that holds the touched trace ids.
TOUCHED_TRACES = "quality_touched_traces"


def touched_days(con: duckdb.DuckDBPyConnection) -> list[str] | None:
    """The days (YYYY-MM-DD) of traces written since the last passed mart check; None when the
    marts were never checked against this warehouse's stamps (check every day).

    The ids of those traces are left in the temporary table :data:`TOUCHED_TRACES` of ``con``
    (when days are returned): the row-level checks of ``fct_requests`` look at them only.
    """
    if not _has_stamps(con):
        return None
    marks = dict(con.execute(
        f"SELECT upstream, max(loaded_at) FROM {WATERMARKS} WHERE model_name = ? GROUP BY 1",
        [CHECKER],
    ).fetchall())
    if set(marks) != set(BASE_TABLES):
        return None
    touched = " UNION ".join(
        f"SELECT trace_id FROM {table} WHERE _loaded_at > ?" for table in BASE_TABLES.values()
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {TOUCHED_TRACES} AS {touched}",
                [marks[name] for name in BASE_TABLES])
    rows = con.execute(
        f"""
        SELECT DISTINCT strftime(trace_date, '%Y-%m-%d') AS day
        FROM "{MARTS_SCHEMA}".fct_requests
        WHERE trace_id IN (SELECT trace_id FROM {TOUCHED_TRACES}) AND trace_date IS NOT NULL
        ORDER BY day
        """
    ).fetchall()
    return [r[0] for r in rows]


@cache
def checks_digest() -> str:
    """A digest of the code that declares and runs the mart suites (a change re-checks all)."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in ("marts.py", "engine.py", "touched.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def mart_fingerprints(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, str]:
    """mart -> content fingerprint (DuckDB scans each once; no rows leave the database)."""
    from tracehouse.publish import fingerprint

    return {t: fingerprint(con, f'"{MARTS_SCHEMA}"."{t}"')[0] for t in tables}


def unchanged_marts(con: duckdb.DuckDBPyConnection,
                    fingerprints: dict[str, str]) -> dict[str, str]:
    """mart -> the run whose passed check saw this very content (and the same suites)."""
    if not _exists(con, CHECKED_MARTS):
        return {}
    rows = con.execute(
        f"SELECT mart, fingerprint, run_id FROM {CHECKED_MARTS} WHERE checks = ?",
        [checks_digest()],
    ).fetchall()
    return {mart: run_id for mart, fp, run_id in rows if fingerprints.get(mart) == fp}


def mark_marts_checked(con: duckdb.DuckDBPyConnection,
                       fingerprints: dict[str, str] | None = None, run_id: str = "") -> None:
    """The marts passed their checks: every stamp now in the base tables is checked, and (with
    ``fingerprints``) every mart's content as it is now."""
    if fingerprints is not None:
        con.execute("CREATE SCHEMA IF NOT EXISTS quality")
        con.execute(f"CREATE TABLE IF NOT EXISTS {CHECKED_MARTS} "
                    "(mart VARCHAR, fingerprint VARCHAR, checks VARCHAR, run_id VARCHAR)")
        unchanged = unchanged_marts(con, fingerprints)
        con.execute(f"DELETE FROM {CHECKED_MARTS}")
        con.executemany(f"INSERT INTO {CHECKED_MARTS} VALUES (?, ?, ?, ?)",
                        [[m, fp, checks_digest(), unchanged.get(m, run_id)]
                         for m, fp in sorted(fingerprints.items())])
    if not all(_exists(con, t) for t in BASE_TABLES.values()):
        return
    con.execute(f"CREATE TABLE IF NOT EXISTS {WATERMARKS} "
                "(model_name VARCHAR, upstream VARCHAR, loaded_at TIMESTAMPTZ)")
    con.execute(f"DELETE FROM {WATERMARKS} WHERE model_name = ?", [CHECKER])
    for name, table in BASE_TABLES.items():
        con.execute(
            f"INSERT INTO {WATERMARKS} SELECT ?, ?, max(_loaded_at) FROM {table} "
            "HAVING max(_loaded_at) IS NOT NULL",
            [CHECKER, name],
        )
