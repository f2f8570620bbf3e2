"""Data quality: batch suites warn, mart suites fail the run before publishing, results, Data Docs.

One small generated lake and one pipeline run are shared by this module and by
``test_trace_view`` / ``test_report`` (see :func:`small_warehouse`).
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tracehouse.lake import write_batch
from tracehouse.pipeline import PipelineError, run
from tracehouse.quality import QualityError, QualityRun
from tracehouse.quality.results import RESULTS_TABLE

_SHARED: dict[str, object] = {}


def small_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(lake, warehouse, run output lines): generated and run once per test session."""
    if "warehouse" not in _SHARED:
        from tracehouse.generator import generate

        root = tmp_path_factory.mktemp("small")
        lake, warehouse = root / "lake", root / "warehouse"
        generate(lake, start=date(2026, 1, 1), days=4, traces_per_day=250, seed=7,
                 progress=False, truth_path=root / "truth.json")
        lines: list[str] = []
        run(lake, warehouse, progress=False, echo=lines.append)
        _SHARED.update(lake=lake, warehouse=warehouse, lines=lines)
    return _SHARED["lake"], _SHARED["warehouse"], _SHARED["lines"]  # type: ignore[return-value]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    return small_warehouse(tmp_path_factory)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.mark.slow
def test_run_ends_with_the_quality_verdict(small: tuple[Path, Path, list[str]]) -> None:
    _, warehouse, lines = small
    assert lines[-1].startswith("quality"), lines[-3:]
    assert re.search(r"(PASS|WARN): \d+ expectations on \d+ batches and \d+ marts", lines[-1])
    assert str(warehouse / "quality" / "index.html") in lines[-1]
    steps = [line.split()[0] for line in lines]
    # batch checks before the build, mart checks after it and before publishing
    assert steps.index("batches") < steps.index("build") < steps.index("marts") < \
        steps.index("publish")


@pytest.mark.slow
def test_dq_results_are_published_with_both_stages(small: tuple[Path, Path, list[str]]) -> None:
    _, warehouse, _ = small
    published = warehouse / "marts" / f"{RESULTS_TABLE}.parquet"
    assert published.is_file()
    table = pq.read_table(published)
    stages = set(table.column("stage").to_pylist())
    assert stages == {"batch", "mart"}
    suites = set(table.column("suite").to_pylist())
    assert {"lake.spans.batches", "marts.fct_requests", "marts.metric_daily",
            "marts.calendar"} <= suites
    # every published rate is checked: at least one between-[0, 1] on metric_daily
    kwargs = table.filter(pc.equal(table.column("suite"), "marts.metric_daily")) \
        .column("kwargs").to_pylist()
    assert any('"max_value": 1' in k for k in kwargs if k)


@pytest.mark.slow
def test_data_docs_index_links_every_suite(small: tuple[Path, Path, list[str]]) -> None:
    _, warehouse, _ = small
    index = warehouse / "quality" / "index.html"
    html = index.read_text()
    suites = set(pq.read_table(warehouse / "marts" / f"{RESULTS_TABLE}.parquet")
                 .column("suite").to_pylist())
    for suite in suites:
        assert f">{suite}<" in html, suite
    links = re.findall(r"href='(gx/validations/[^']+)'", html)
    assert links, "no link to GX validation pages"
    for link in links:
        assert (index.parent / link).is_file(), link
    assert (index.parent / "gx" / "index.html").is_file()
    assert "<script" not in html  # our index is standalone


@pytest.mark.slow
def test_batch_suite_warns_on_a_suspicious_batch(
    small: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    lake_src, warehouse_src, _ = small
    lake = _copy(lake_src, tmp_path / "lake")
    warehouse = _copy(warehouse_src, tmp_path / "warehouse")
    # A batch that passes the contract row by row but is suspicious as a whole: every request
    # failed, nobody says which route served it, and durations are in microseconds, not ms.
    one = sorted((lake / "spans").glob("dt=*/*.parquet"))[0]
    spans = pq.read_table(one)
    is_root = pc.is_null(spans.column("parent_span_id"))
    spans = spans.set_column(spans.schema.get_field_index("status"), "status",
                             pc.if_else(is_root, "error", spans.column("status")))
    spans = spans.set_column(spans.schema.get_field_index("route_name"), "route_name",
                             pc.if_else(is_root, pa.scalar(None, pa.string()),
                                        spans.column("route_name")))
    spans = spans.set_column(spans.schema.get_field_index("duration_ms"), "duration_ms",
                             pc.multiply(spans.column("duration_ms"), 1000.0))
    report = write_batch(lake, "spans", spans, source="test", batch_id="suspicious-batch-1",
                         ingest_time=datetime(2026, 1, 9, tzinfo=UTC))
    assert report.quarantined == 0  # the contract has nothing against it

    quality = QualityRun(lake, warehouse, run_id="test-suspicious")
    summary = quality.check_batches()  # warns, does not raise
    assert quality.batches_checked == 1
    warned = {o.check.column for s in quality.batch_results for o in s.failed
              if "suspicious-batch-1" in o.unexpected_targets}
    assert {"root_error_share", "root_route_null_share", "duration_max_ms",
            "duration_mismatch_share", "redelivered_share"} <= warned
    assert "WARN" in summary and "suspicious-batch-1" in summary
    assert quality.level == "WARN" and not quality.failures
    # recorded, and not checked again
    con = duckdb.connect(str(warehouse / "tracehouse.duckdb"), read_only=True)
    try:
        n = con.execute(
            f"SELECT count(*) FROM marts.{RESULTS_TABLE} WHERE run_id = 'test-suspicious' "
            "AND NOT success AND list_contains(unexpected_targets, 'suspicious-batch-1')"
        ).fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    assert n >= 5
    again = QualityRun(lake, warehouse, run_id="test-again")
    assert again.check_batches() == "no new batches to check"


@pytest.mark.slow
def test_a_broken_mart_fails_the_run_and_previous_marts_stay(
    small: tuple[Path, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake_src, warehouse_src, _ = small
    warehouse = _copy(warehouse_src, tmp_path / "warehouse")
    before_target = (warehouse / "marts").resolve()
    before = {str(p.relative_to(before_target)): p.read_bytes()
              for p in before_target.rglob("*.parquet") if p.is_file()}
    con = duckdb.connect(str(warehouse / "tracehouse.duckdb"))
    try:  # a negative cost, a rate above 1, and a day missing from metric_daily
        con.execute("UPDATE marts.fct_requests SET cost_usd = -1 WHERE trace_id IN "
                    "(SELECT trace_id FROM marts.fct_requests LIMIT 3)")
        con.execute("UPDATE marts.metric_daily SET value = 1.7 WHERE metric = 'error_rate' "
                    "AND segment_key = 'all'")
        con.execute("DELETE FROM marts.metric_daily WHERE metric = 'request_count' AND "
                    "segment_key = 'all' AND CAST(period_start AS DATE) = DATE '2026-01-02'")
    finally:
        con.close()

    # these rows were changed by hand, not by a build: only a check of every day sees them all
    quality = QualityRun(lake_src, warehouse, run_id="test-broken", all_marts=True)
    with pytest.raises(QualityError, match="mart expectations failed"):
        quality.check_marts()
    failed = {(s.suite, o.check.column) for s in quality.mart_results for o in s.failed}
    assert ("marts.fct_requests", "cost_usd") in failed
    assert ("marts.metric_daily", "rate_value") in failed
    assert ("marts.calendar", "metric_request_count") in failed
    calendar = next(s for s in quality.mart_results if s.suite == "marts.calendar")
    assert any("2026-01-02" in o.unexpected_targets for o in calendar.failed)

    # The same through `tracehouse run` (without rebuilding, which would repair the marts).
    monkeypatch.setattr("tracehouse.pipeline.step_build", lambda *a, **k: "skipped in test")
    monkeypatch.setattr("tracehouse.pipeline.step_detect", lambda *a, **k: "skipped in test",
                        raising=False)
    lines: list[str] = []
    with pytest.raises(PipelineError, match="marts"):
        run(lake_src, warehouse, progress=False, echo=lines.append)
    assert lines[-1].startswith("quality") and "FAIL" in lines[-1]
    assert (warehouse / "marts").resolve() == before_target
    after = warehouse / "marts"
    assert {str(p.relative_to(after)): p.read_bytes()
            for p in after.rglob("*.parquet") if p.is_file()} == before
    assert "FAIL" in (warehouse / "quality" / "index.html").read_text()


@pytest.mark.slow
def test_mart_checks_look_at_the_days_a_build_rewrote(
    small: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    from tracehouse.quality.touched import touched_days

    lake_src, warehouse_src, lines = small
    assert any("every day" in line for line in lines)  # the first run checks every day
    warehouse = _copy(warehouse_src, tmp_path / "warehouse")
    con = duckdb.connect(str(warehouse / "tracehouse.duckdb"))
    try:
        assert touched_days(con) == []  # checked, and nothing written since
        # a build that rewrote one trace of 2026-01-03 (its spans stamped anew), badly
        (trace_id,) = con.execute(
            "SELECT trace_id FROM marts.fct_requests WHERE trace_date = DATE '2026-01-03' "
            "ORDER BY trace_id LIMIT 1").fetchone()  # type: ignore[misc]
        con.execute("UPDATE staging.base_lake__spans SET _loaded_at = now() WHERE trace_id = ?",
                    [trace_id])
        con.execute("UPDATE marts.fct_requests SET cost_usd = -1 WHERE trace_id = ?", [trace_id])
        # a bad row on a day no build touched is not looked at row by row
        con.execute("UPDATE marts.fct_requests SET cost_usd = -2 WHERE trace_id IN (SELECT "
                    "trace_id FROM marts.fct_requests WHERE trace_date = DATE '2026-01-01' "
                    "LIMIT 1)")
        assert touched_days(con) == ["2026-01-03"]
    finally:
        con.close()
    quality = QualityRun(lake_src, warehouse, run_id="test-touched")
    with pytest.raises(QualityError, match="cost_usd"):
        quality.check_marts()
    assert quality.mart_days == ["2026-01-03"]
    requests = next(s for s in quality.mart_results if s.suite == "marts.fct_requests")
    (failed,) = [o for o in requests.failed if o.check.column == "cost_usd"]
    assert failed.unexpected_targets == [trace_id]
    # row by row, only the traces the build rewrote: every other row of the day passed before
    assert requests.rows == 1
