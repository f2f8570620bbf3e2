"""Data tests on an incremental run check what was written since they last passed, and still
catch a broken row there (macros/incremental/test_slices.sql).

A small lake is built with its tests (whole tables: each test records its watermark); another
day lands and the models are rebuilt; then a duplicate row is planted in ``fct_requests`` for a
trace that hour touched and one for a trace it did not. With slices on, the unique test sees
only the touched duplicate (it reads the new slice); with slices off it sees both. The same
holds for a model's consolidated `column_checks` test (macros/tests/column_checks.sql), whose
failure names the offending column. A daily mart's test slices by the days of the touched
traces, read from int_traces_stamped: their trace_date and every day of their spans, so a day a
trace left is checked too.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.test_incremental_loads import SEED, _land_day_part
from tracehouse.warehouse import BuildResult, dbt_invoke, warehouse_db

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS, TRACES_PER_DAY = 2, 40
UNIQUE_TEST = "unique_fct_requests_trace_id"
CHECKS_TEST = "column_checks_fct_requests"
SLICES_ON = {"TRACEHOUSE_TEST_SLICES": "1"}
DAY_MART = "agg_cost_per_successful_task"  # a daily mart (test_slice: trace_date), on fct_requests
DAY_TEST = f"unique_combination_{DAY_MART}"


def _run(args: list[str], lake: Path, warehouse: Path,
         env: dict[str, str] | None = None) -> BuildResult:
    return dbt_invoke(args, lake=lake, warehouse=warehouse, extra_env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A lake and a warehouse built with its tests (watermarks recorded), then a day landed and
    the models rebuilt (tests not run since)."""
    from tracehouse.generator import generate

    tmp_path = tmp_path_factory.mktemp("slices")
    mp = pytest.MonkeyPatch()
    # only the tests whose every parent is selected (the others need seeds and marts not built)
    mp.setenv("DBT_INDIRECT_SELECTION", "cautious")
    try:
        return _build(tmp_path, generate)
    finally:
        mp.undo()


def _build(tmp_path: Path, generate: Any) -> tuple[Path, Path]:
    lake, source, warehouse = tmp_path / "lake", tmp_path / "source", tmp_path / "wh"
    generate(lake, start=START, days=DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)
    generate(source, start=START, days=DAYS + 1, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)
    built = _run(["build", "--select", f"+{DAY_MART}", "--exclude", "test_type:unit"],
                 lake, warehouse)
    assert built.success, built.failures
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        marks = [con.execute(
            "select count(*) from main.tracehouse_watermarks where model_name like ?",
            [f"test.tracehouse.{test}%"],
        ).fetchone() for test in (UNIQUE_TEST, CHECKS_TEST, DAY_TEST)]
    finally:
        con.close()
    assert marks == [(3,), (3,), (3,)]  # spans, feedback, annotations: all passed

    assert _land_day_part(source, lake, START + timedelta(days=DAYS), first_hour=False) > 0
    rebuilt = _run(["run", "--select", f"+{DAY_MART}"], lake, warehouse)
    assert rebuilt.success, rebuilt.failures
    return lake, warehouse


def _touched_and_untouched(con: duckdb.DuckDBPyConnection, test: str) -> tuple[str, str]:
    """A trace in `test`'s slice (a base row stamped after its watermark) and one outside it."""
    checked = ("(select max(loaded_at) from main.tracehouse_watermarks "
               "where model_name like ? and upstream = ?)")
    new_rows = " union ".join(
        f"select trace_id from staging.base_lake__{b} where _loaded_at > {checked}"
        for b in ("spans", "feedback", "annotations"))
    args = [x for b in ("spans", "feedback", "annotations")
            for x in (f"test.tracehouse.{test}%", b)]
    touched = con.execute(f"select min(trace_id) from ({new_rows})", args).fetchone()
    untouched = con.execute(
        f"select min(trace_id) from marts.fct_requests where trace_id not in ({new_rows})",
        args).fetchone()
    assert touched and touched[0] and untouched and untouched[0]
    return touched[0], untouched[0]


def _copy(built: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    lake, warehouse = built
    shutil.copytree(warehouse, tmp_path / "wh")
    return lake, tmp_path / "wh"


def test_sliced_unique_test_reads_the_new_slice_and_catches_a_duplicate_in_it(
    built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    lake, warehouse = _copy(built, tmp_path)
    con = duckdb.connect(str(warehouse_db(warehouse)))
    try:
        touched, untouched = _touched_and_untouched(con, UNIQUE_TEST)
        for trace_id in (touched, untouched):
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


def test_column_checks_reads_the_new_slice_and_names_the_failing_column(
    built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fct_requests' not_null and accepted_values checks are one `column_checks` test: sliced, it
    sees the NULL planted in a touched trace and not the bad value in an untouched one; whole,
    both; and the failure message names each column with its count."""
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    lake, warehouse = _copy(built, tmp_path)
    con = duckdb.connect(str(warehouse_db(warehouse)))
    try:
        touched, untouched = _touched_and_untouched(con, CHECKS_TEST)
        con.execute("update marts.fct_requests set tool_path = null where trace_id = ?",
                    [touched])
        con.execute("update marts.fct_requests set status = 'sideways' where trace_id = ?",
                    [untouched])
    finally:
        con.close()

    select = ["test", "--select", "fct_requests,test_name:column_checks"]
    sliced = _run(select, lake, warehouse, SLICES_ON)
    assert not sliced.success
    (failure,) = [f for f in sliced.failures if CHECKS_TEST in f]
    assert "Got 1 result" in failure and "tool_path: 1 row not_null" in failure, failure
    assert "status" not in failure.split("(", 1)[1], failure

    whole = _run(select, lake, warehouse)
    (failure,) = [f for f in whole.failures if CHECKS_TEST in f]
    assert "Got 2 results" in failure, failure
    assert "status: 1 row accepted_values" in failure and "tool_path: 1 row not_null" in failure


def test_day_slice_checks_the_day_a_trace_left(
    built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trace whose root landed late moved from the day of its earliest span to the root's day;
    the daily marts rebuilt both days, so the day slice must hold both. Here a touched trace gets
    a span on a day no trace is dated (base_lake__spans edited, int_traces_stamped rebuilt), and a
    duplicate segment is planted in the daily mart on that day: the sliced test, which reads the
    days from int_traces_stamped, still catches it."""
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    lake, warehouse = _copy(built, tmp_path)
    left = START - timedelta(days=5)
    con = duckdb.connect(str(warehouse_db(warehouse)))
    try:
        touched, _ = _touched_and_untouched(con, DAY_TEST)
        moved = con.execute(
            "update staging.base_lake__spans set event_time = cast(? as timestamptz) "
            "where span_id = (select min(span_id) from staging.base_lake__spans "
            "where trace_id = ? and parent_span_id is not null)",
            [f"{left.isoformat()} 12:00:00+00", touched]).fetchall()
        assert moved == [(1,)]
        assert con.execute(f"select count(*) from marts.{DAY_MART} where trace_date = ?",
                           [left]).fetchone() == (0,)
        for _ in range(2):
            con.execute(f"insert into marts.{DAY_MART} select * replace (cast(? as date) as "
                        f"trace_date) from marts.{DAY_MART} limit 1", [left])
    finally:
        con.close()
    stamped = _run(["run", "--select", "int_traces_stamped", "--full-refresh"], lake, warehouse)
    assert stamped.success, stamped.failures

    select = ["test", "--select", f"{DAY_MART},test_name:unique_combination"]
    sliced = _run(select, lake, warehouse, SLICES_ON)
    assert not sliced.success
    assert any(DAY_TEST in f and "Got 1 result" in f for f in sliced.failures), sliced.failures
    # dbt shortens a long test name in its file names
    compiled = next((warehouse / "_dbt" / "target" / "compiled").rglob(f"{DAY_TEST[:30]}*.sql"))
    text = compiled.read_text()
    assert f"date '{left.isoformat()}'" in text and 'int_traces_stamped" */' in text, text


SPAN_TEST = "unique_base_lake__spans_span_id"


def test_span_slice_reads_the_spans_written_and_their_days_and_catches_a_duplicate(
    built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The span base table and the staging span views slice by the spans written since the test
    last passed (`span_id`, with their event_time range): a duplicate of a span written in the
    window is caught; one of an older span is outside the slice (a whole-table test sees both)."""
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    lake, warehouse = _copy(built, tmp_path)
    con = duckdb.connect(str(warehouse_db(warehouse)))
    try:
        mark = ("(select max(loaded_at) from main.tracehouse_watermarks "
                "where model_name like ? and upstream = 'spans')")
        test = [f"test.tracehouse.{SPAN_TEST}%"]
        assert con.execute(  # the span slice keeps a watermark on spans only
            "select list(distinct upstream) from main.tracehouse_watermarks "
            "where model_name like ?", test).fetchone() == (["spans"],)
        written = con.execute(
            f"select min(span_id) from staging.base_lake__spans where _loaded_at > {mark}",
            test).fetchone()
        older = con.execute(
            f"select min(span_id) from staging.base_lake__spans where _loaded_at <= {mark}",
            test).fetchone()
        assert written and written[0] and older and older[0]
        for span_id in (written[0], older[0]):
            con.execute("insert into staging.base_lake__spans select * from "
                        "staging.base_lake__spans where span_id = ?", [span_id])
    finally:
        con.close()

    select = ["test", "--select", "base_lake__spans,test_name:unique"]
    sliced = _run(select, lake, warehouse, SLICES_ON)
    assert not sliced.success
    assert any(SPAN_TEST in f and "Got 1 result" in f for f in sliced.failures), sliced.failures
    compiled = next((warehouse / "_dbt" / "target" / "compiled").rglob(f"{SPAN_TEST}*.sql"))
    assert "span_id in (select span_id" in compiled.read_text()
    assert "event_time >= " in compiled.read_text()

    whole = _run(select, lake, warehouse)
    assert any(SPAN_TEST in f and "Got 2 results" in f for f in whole.failures), whole.failures
