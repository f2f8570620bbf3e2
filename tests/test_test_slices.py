"""Data tests on an incremental run check what was written since they last passed, and still
catch a broken row there (macros/incremental/test_slices.sql).

A small lake is built with its tests (whole tables: each test records its watermark); another
day lands and the models are rebuilt; then a duplicate row is planted in ``fct_requests`` for a
trace that hour touched and one for a trace it did not. With slices on, the unique test sees
only the touched duplicate (it reads the new slice); with slices off it sees both.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.test_incremental_loads import SEED, _land_day_part
from tracehouse.warehouse import BuildResult, dbt_invoke, warehouse_db

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS, TRACES_PER_DAY = 2, 40
UNIQUE_TEST = "unique_fct_requests_trace_id"
SLICES_ON = {"TRACEHOUSE_TEST_SLICES": "1"}


def _run(args: list[str], lake: Path, warehouse: Path,
         env: dict[str, str] | None = None) -> BuildResult:
    return dbt_invoke(args, lake=lake, warehouse=warehouse, extra_env=env)


def test_sliced_unique_test_reads_the_new_slice_and_catches_a_duplicate_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tracehouse.generator import generate

    # only the tests whose every parent is selected (the others need seeds and marts not built)
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    lake, source, warehouse = tmp_path / "lake", tmp_path / "source", tmp_path / "wh"
    generate(lake, start=START, days=DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)
    generate(source, start=START, days=DAYS + 1, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)
    built = _run(["build", "--select", "+fct_requests", "--exclude", "test_type:unit"],
                 lake, warehouse)
    assert built.success, built.failures
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        marks = con.execute(
            "select count(*) from main.tracehouse_watermarks where model_name like ?",
            [f"test.tracehouse.{UNIQUE_TEST}%"],
        ).fetchone()
    finally:
        con.close()
    assert marks is not None and marks[0] == 3  # spans, feedback, annotations: it passed

    assert _land_day_part(source, lake, START + timedelta(days=DAYS), first_hour=False) > 0
    rebuilt = _run(["run", "--select", "+fct_requests"], lake, warehouse)
    assert rebuilt.success, rebuilt.failures

    con = duckdb.connect(str(warehouse_db(warehouse)))
    try:
        # traces with a base row stamped after the unique test's watermark: the slice
        checked = ("(select max(loaded_at) from main.tracehouse_watermarks "
                   "where model_name like ? and upstream = ?)")
        new_rows = " union ".join(
            f"select trace_id from staging.base_lake__{b} where _loaded_at > {checked}"
            for b in ("spans", "feedback", "annotations"))
        args = [x for b in ("spans", "feedback", "annotations")
                for x in (f"test.tracehouse.{UNIQUE_TEST}%", b)]
        touched = con.execute(f"select min(trace_id) from ({new_rows})", args).fetchone()
        untouched = con.execute(
            f"select min(trace_id) from marts.fct_requests where trace_id not in ({new_rows})",
            args).fetchone()
        assert touched and touched[0] and untouched and untouched[0]
        for trace_id in (touched[0], untouched[0]):
            con.execute("insert into marts.fct_requests select * from marts.fct_requests "
                        "where trace_id = ?", [trace_id])
    finally:
        con.close()

    sliced = _run(["test", "--select", "fct_requests,test_name:unique"], lake, warehouse,
                  SLICES_ON)
    assert not sliced.success
    assert any(UNIQUE_TEST in f and "Got 1 result" in f for f in sliced.failures), \
        sliced.failures
    compiled = next((warehouse / "_dbt" / "target" / "compiled").rglob(f"{UNIQUE_TEST}*.sql"))
    assert "_loaded_at >" in compiled.read_text()

    whole = _run(["test", "--select", "fct_requests,test_name:unique"], lake, warehouse)
    assert not whole.success
    assert any(UNIQUE_TEST in f and "Got 2 results" in f for f in whole.failures), \
        whole.failures
