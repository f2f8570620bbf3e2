"""The Dagster code location: every asset materializes once, in process, on a small lake."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

dg = pytest.importorskip("dagster")


def test_every_asset_materializes_and_the_schedule_is_hourly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracehouse.generator import generate

    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse"
    generate(lake, start=date(2026, 1, 1), days=3, traces_per_day=120, seed=8, progress=False)
    monkeypatch.setenv("TRACEHOUSE_LAKE", str(lake))
    monkeypatch.setenv("TRACEHOUSE_WAREHOUSE", str(warehouse))
    monkeypatch.delenv("TRACEHOUSE_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("TRACEHOUSE_SLACK_WEBHOOK_URL", raising=False)
    from tracehouse import dagster_defs

    defs = dagster_defs.defs
    schedule = defs.resolve_schedule_def("tracehouse_hourly")
    assert schedule.cron_schedule == "0 * * * *"

    result = dg.materialize(dagster_defs.ASSETS, resources=dagster_defs.resources())
    assert result.success
    materialized = {e.asset_key.to_user_string()
                    for e in result.get_asset_materialization_events()}
    expected = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert materialized == expected
    assert {"lake/spans", "marts/fct_requests", "change_points", "alerts", "publication",
            "alert_notifications", "regression_report"} <= materialized
    # What the assets made is what `tracehouse run` makes: published marts and a report.
    assert any((warehouse / "marts" / "fct_requests.parquet").glob("*.parquet"))  # day files
    assert (warehouse / "marts" / "alerts.parquet").is_file()
    assert (warehouse / "report.html").stat().st_size > 10_000
    # Freshness checks: the generator stamps its batches with their simulated landing time
    # (January 2026), so every dataset is stale: each check warns, and the run still succeeds.
    freshness = [e for e in result.get_asset_check_evaluations() if e.check_name == "freshness"]
    assert {e.asset_key.to_user_string() for e in freshness} == {
        "lake/spans", "lake/feedback", "lake/annotations"}
    assert not any(e.passed for e in freshness)
    assert all(e.severity == dg.AssetCheckSeverity.WARN for e in freshness)
    # dbt's tests ran as asset checks: every error-severity one passed (a `severity: warn`
    # test, like the failure-category relationship, may warn without failing the run).
    dbt_checks = [e for e in result.get_asset_check_evaluations() if e.check_name != "freshness"]
    assert len(dbt_checks) > 50
    assert all(e.passed for e in dbt_checks if e.severity == dg.AssetCheckSeverity.ERROR)


def test_freshness_reads_the_ledger(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    import pyarrow.parquet as pq

    from tracehouse.dagster_defs import last_landed
    from tracehouse.generator import generate
    from tracehouse.lake import write_batch

    assert last_landed(tmp_path) == {}
    lake = tmp_path / "lake"
    generate(lake, start=date(2026, 1, 1), days=1, traces_per_day=20, seed=2, progress=False)
    landed = last_landed(lake)
    assert {"spans", "feedback"} <= set(landed)  # one small day may have no annotation yet
    assert all(at < datetime(2026, 1, 10, tzinfo=UTC) for at in landed.values())
    # A batch of feedback landing now makes feedback fresh, and only feedback.
    feedback = pq.read_table(next((lake / "feedback").rglob("*.parquet")))
    write_batch(lake, "feedback", feedback.slice(0, 1), source="test")
    after = last_landed(lake)
    assert datetime.now(UTC) - after["feedback"] < timedelta(minutes=5)
    assert after["spans"] == landed["spans"]


def test_assets_take_the_run_lock_of_tracehouse_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from tracehouse import dagster_defs, pipeline
    from tracehouse.runlock import RunLockedError, run_lock

    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse"
    lake.mkdir()
    resources = {"tracehouse": dagster_defs.TracehouseResource(lake=str(lake),
                                                               warehouse=str(warehouse))}
    seen: list[str] = []

    def land_probe(lake_path: Path) -> str:
        # While the op works, a `tracehouse run` (the same lock) cannot start.
        try:
            with run_lock(warehouse.resolve(), "cron-run", datetime.now(UTC).isoformat()):
                seen.append("lock was free")
        except RunLockedError:
            seen.append("locked by the op")
        return "nothing to land"

    monkeypatch.setattr(pipeline, "step_land", land_probe)
    result = dg.materialize([dagster_defs.lake], resources=resources)
    assert result.success and seen == ["locked by the op"]

    # A `tracehouse run` in progress: the op waits (here 0.5 s), then fails without landing.
    monkeypatch.setenv(dagster_defs.LOCK_WAIT_ENV, "0.5")
    seen.clear()
    with run_lock(warehouse.resolve(), "cron-run", datetime.now(UTC).isoformat()):
        failed = dg.materialize([dagster_defs.lake], resources=resources, raise_on_error=False)
    assert not failed.success and seen == []
    failure = failed.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "RunLockedError" in failure.to_string()
