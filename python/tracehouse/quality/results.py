"""The ``dq_results`` table: every expectation of every run, published with the marts.

One row per expectation per suite per run, appended to ``marts.dq_results`` in the warehouse
database (so it is published as ``W/marts/dq_results.parquet`` by the next successful run, and a
failed run's results are there for the one after). The last :data:`KEEP_RUNS` runs are kept.
"""

from __future__ import annotations

import json

import duckdb
import pandas as pd

from tracehouse.quality.engine import SuiteResult
from tracehouse.warehouse import MARTS_SCHEMA

RESULTS_TABLE = "dq_results"
KEEP_RUNS = 100

COLUMNS_SQL = """
    run_id VARCHAR,
    checked_at TIMESTAMPTZ,
    stage VARCHAR,
    suite VARCHAR,
    target VARCHAR,
    severity VARCHAR,
    expectation VARCHAR,
    column_name VARCHAR,
    kwargs VARCHAR,
    description VARCHAR,
    success BOOLEAN,
    observed_value VARCHAR,
    unexpected_count BIGINT,
    unexpected_targets VARCHAR[],
    unexpected_examples VARCHAR[],
    rows_checked BIGINT,
    note VARCHAR
"""


def results_frame(run_id: str, suites: list[SuiteResult]) -> pd.DataFrame:
    """The rows of ``dq_results`` for ``suites`` (one note row for a suite with no expectation)."""
    rows: list[dict[str, object]] = []
    for s in suites:
        base = {
            "run_id": run_id, "checked_at": s.validated_at, "stage": s.stage, "suite": s.suite,
            "target": s.target, "severity": s.severity, "rows_checked": s.rows, "note": s.note,
        }
        if not s.outcomes:
            rows.append({**base, "expectation": None, "column_name": None, "kwargs": None,
                         "description": None, "success": None, "observed_value": None,
                         "unexpected_count": None, "unexpected_targets": [],
                         "unexpected_examples": []})
        for o in s.outcomes:
            rows.append({
                **base,
                "expectation": o.check.expectation,
                "column_name": o.check.column,
                "kwargs": json.dumps(o.check.kwargs, sort_keys=True, default=str),
                "description": o.check.description,
                "success": o.success,
                "observed_value": o.observed,
                "unexpected_count": o.unexpected_count,
                "unexpected_targets": o.unexpected_targets,
                "unexpected_examples": o.unexpected_examples,
            })
    return pd.DataFrame(rows)


def write_results(con: duckdb.DuckDBPyConnection, run_id: str, suites: list[SuiteResult]) -> int:
    """Append the suites' outcomes to ``marts.dq_results``; return the rows written."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {MARTS_SCHEMA}")
    table = f'"{MARTS_SCHEMA}"."{RESULTS_TABLE}"'
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({COLUMNS_SQL})")
    frame = results_frame(run_id, suites)
    if frame.empty:
        return 0
    con.register("__dq", frame)
    try:
        names = [line.split()[0] for line in COLUMNS_SQL.strip().splitlines()]
        cols = ", ".join(names)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM __dq")
    finally:
        con.unregister("__dq")
    con.execute(
        f"DELETE FROM {table} WHERE run_id NOT IN (SELECT run_id FROM {table} "
        f"GROUP BY run_id ORDER BY max(checked_at) DESC LIMIT {KEEP_RUNS})"
    )
    return len(frame)
