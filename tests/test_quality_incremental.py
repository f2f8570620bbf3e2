"""Checks cost what is new: batch suites of datasets with new batches, marts that changed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.test_quality import _copy, small_warehouse
from tracehouse.lake import write_batch
from tracehouse.quality import QualityError, QualityRun
from tracehouse.quality.results import RESULTS_TABLE


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    return small_warehouse(tmp_path_factory)


@pytest.mark.slow
def test_a_dataset_without_new_batches_runs_no_batch_suite_and_says_so(
    small: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    lake_src, warehouse_src, _ = small
    lake = _copy(lake_src, tmp_path / "lake")
    warehouse = _copy(warehouse_src, tmp_path / "warehouse")
    spans = pq.read_table(sorted((lake / "spans").glob("dt=*/*.parquet"))[0])
    write_batch(lake, "spans", spans.slice(0, 50), source="test", batch_id="only-spans-1",
                ingest_time=datetime(2026, 1, 9, tzinfo=UTC))

    quality = QualityRun(lake, warehouse, run_id="test-only-spans")
    summary = quality.check_batches()
    assert [s.suite for s in quality.batch_results] == ["lake.spans.batches"]
    assert summary.splitlines()[0].endswith(
        "; no new feedback, annotations batch: suites lake.feedback.batches, "
        "lake.annotations.batches not run")
    con = duckdb.connect(str(warehouse / "tracehouse.duckdb"), read_only=True)
    try:
        suites = {r[0] for r in con.execute(
            f"SELECT DISTINCT suite FROM marts.{RESULTS_TABLE} WHERE run_id = 'test-only-spans'"
        ).fetchall()}
    finally:
        con.close()
    assert suites == {"lake.spans.batches"}


@pytest.mark.slow
def test_marts_unchanged_since_their_passed_check_are_not_checked_again(
    small: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    _, warehouse_src, lines = small
    first_run = next(line for line in lines if line.startswith("marts"))
    assert "not re-checked" not in first_run  # the first run checks every mart
    lake_src = small[0]
    warehouse = _copy(warehouse_src, tmp_path / "warehouse")

    quality = QualityRun(lake_src, warehouse, run_id="test-unchanged")
    summary = quality.check_marts()
    assert {"fct_requests", "metric_daily", "dim_versions"} <= quality.marts_unchanged.keys()
    assert "unchanged mart(s) not re-checked" in summary
    skipped = {s.suite: s for s in quality.mart_results if s.note}
    for suite in ("marts.fct_requests", "marts.fct_requests.table", "marts.metric_daily",
                  "marts.calendar"):
        assert "not re-checked" in (skipped[suite].note or "")
        assert not skipped[suite].outcomes
    assert quality.level == "PASS"  # a skipped fail-level suite is no warning

    # a mart that changed is checked again, with its usual failure message
    con = duckdb.connect(str(warehouse / "tracehouse.duckdb"))
    try:
        con.execute("INSERT INTO marts.fct_requests SELECT * FROM marts.fct_requests LIMIT 1")
    finally:
        con.close()
    again = QualityRun(lake_src, warehouse, run_id="test-changed")
    with pytest.raises(QualityError, match="duplicate_trace_ids"):
        again.check_marts()
    assert "fct_requests" not in again.marts_unchanged
    assert "metric_daily" in again.marts_unchanged
    table = next(s for s in again.mart_results if s.suite == "marts.fct_requests.table")
    assert [o.check.column for o in table.failed] == ["duplicate_trace_ids"]
    calendar = next(s for s in again.mart_results if s.suite == "marts.calendar")
    assert calendar.outcomes  # one of its two marts changed


@pytest.mark.slow
def test_a_full_check_checks_unchanged_marts_too(
    small: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    lake_src, warehouse_src, _ = small
    warehouse = _copy(warehouse_src, tmp_path / "warehouse")
    quality = QualityRun(lake_src, warehouse, run_id="test-all", all_marts=True)
    quality.check_marts()
    assert not quality.marts_unchanged
    assert not any("not re-checked" in (s.note or "") for s in quality.mart_results)
    assert quality.expectations > 0
