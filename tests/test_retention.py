"""`tracehouse lake expire`: retention applied atomically, counted in the ledger, and the
published aggregates of expired days unchanged by incremental builds and full refreshes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.warehouse_tables import assert_built
from tracehouse.artifacts.policy import parse_policy
from tracehouse.lake import lake_status
from tracehouse.retention import ARCHIVED_MODELS, RetentionError, expire_lake
from tracehouse.warehouse import dbt_invoke, warehouse_db

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
FIRST_DAYS, MORE_DAYS, TRACES_PER_DAY, SEED = 5, 2, 120, 11
# +fct_spans: no archived model reads the fct_spans view any more, but DETAIL below does
SELECT = " ".join(f"+{m}" for m in ARCHIVED_MODELS) + " +fct_spans"
QUICK = ["--resource-type", "model", "--resource-type", "seed"]
NOW = datetime(2026, 1, 6, 12, tzinfo=UTC)  # the day after the first five days
DETAIL = ["marts.fct_requests", "marts.fct_spans", "intermediate.int_traces_enveloped",
          "intermediate.int_spans_priced"]


def _policy(expiring_tenant: str):
    return parse_policy({
        "classes": {"d2": {"days": 2}, "d3": {"days": 3}, "forever": {}},
        "lake": {"default": {"tier2_text": "d3", "spans": "forever"},
                 "tenants": {expiring_tenant: {"spans": "d2"}}},
    })


def _table(con: duckdb.DuckDBPyConnection, relation: str, where: str = "true") -> list[tuple]:
    return sorted(con.execute(f"select * from {relation} where {where}").fetchall(), key=repr)


def _day_filter(model: str, days: list[date]) -> str:
    listed = ", ".join(f"date '{d.isoformat()}'" for d in days)
    return f"{ARCHIVED_MODELS[model]} in ({listed})"


@pytest.fixture(scope="module")
def expired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Build 5 days, snapshot, expire, land 2 more days, rebuild incrementally and in full."""
    from tracehouse.generator import generate

    patch = pytest.MonkeyPatch()
    patch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    root = tmp_path_factory.mktemp("retention")
    lake, incremental, full = root / "lake", root / "incremental", root / "full"
    generate(lake, start=START, days=FIRST_DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)
    assert_built(dbt_invoke(["build", "--select", SELECT, *QUICK], lake=lake,
                            warehouse=incremental))
    con = duckdb.connect(str(warehouse_db(incremental)), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    tenant = con.execute("select tenant_id from marts.fct_requests group by 1 "
                         "order by count(*) desc limit 1").fetchone()[0]
    all_days = sorted(r[0] for r in con.execute(
        "select distinct trace_date from marts.fct_requests").fetchall())
    con.close()
    published = root / "published"  # the warehouse as published before anything expired
    published.mkdir()
    shutil.copy(warehouse_db(incremental), warehouse_db(published))
    status_before = {(r["dataset"], r["dt"], r["source"]): r
                     for r in lake_status(lake).to_pylist()}
    policy = _policy(tenant)
    dry = expire_lake(lake, incremental, policy, now=NOW, dry_run=True)
    report = expire_lake(lake, incremental, policy, now=NOW)
    status_expired = {(r["dataset"], r["dt"], r["source"]): r
                      for r in lake_status(lake).to_pylist()}
    with pytest.raises(RetentionError, match="older than the lake"):  # re-stamped text rows
        expire_lake(lake, incremental, policy, now=NOW)
    assert_built(dbt_invoke(["build", "--select", SELECT, *QUICK], lake=lake,
                            warehouse=incremental))
    again = expire_lake(lake, incremental, policy, now=NOW)  # idempotent: nothing left to do
    generate(lake, start=date.fromordinal(START.toordinal() + FIRST_DAYS), days=MORE_DAYS,
             traces_per_day=TRACES_PER_DAY, seed=SEED, progress=False)
    assert_built(dbt_invoke(["build", "--select", SELECT, *QUICK], lake=lake,
                            warehouse=incremental))
    assert_built(dbt_invoke(["build", "--full-refresh", "--select", SELECT, *QUICK], lake=lake,
                            warehouse=full))
    patch.undo()
    yield {"lake": lake, "incremental": incremental, "full": full, "tenant": tenant,
           "published": published, "report": report, "dry": dry, "again": again,
           "all_days": all_days, "status_before": status_before,
           "status_expired": status_expired, "policy": policy}


def test_expire_drops_the_tenants_old_traces_and_old_text_only(expired: dict[str, Any]) -> None:
    lake, tenant = expired["lake"], expired["tenant"]
    report, dry, again = expired["report"], expired["dry"], expired["again"]
    assert report.expired_traces > 50 and report.expired_span_rows > 5 * report.expired_traces
    assert (dry.expired_traces, dry.expired_span_rows) == (report.expired_traces,
                                                          report.expired_span_rows)
    assert again.expired_traces == 0 and again.files_rewritten == 0
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    spans = str(lake / "spans" / "dt=*" / "*.parquet")
    # no trace of the tenant whose first span is before the cutoff (2026-01-04) is left, whole
    left = con.execute(f"""
        select count(*) from (
            select trace_id, min(event_time) as first_at from read_parquet('{spans}')
            where tenant_id = '{tenant}' group by trace_id)
        where cast(first_at as date) < date '2026-01-04'""").fetchone()[0]
    assert left == 0
    # other tenants' old spans are all still there
    others = con.execute(f"select count(*) from read_parquet('{spans}') "
                         f"where tenant_id <> '{tenant}' and dt < '2026-01-04'").fetchone()[0]
    assert others > 1000
    # tier-2 text older than 3 days is gone for everyone; newer text is still there
    text = con.execute(f"""
        select cast(event_time as date) < date '2026-01-03' as old,
            count(*) filter (where error_message_redacted is not null
                             or attributes like '%user_query_redacted%') as with_text
        from read_parquet('{spans}') where event_time < timestamptz '2026-01-06' group by 1
    """).fetchall()
    assert dict(text)[True] == 0 and dict(text)[False] > 0
    # every lake file is still a contract file
    from tracehouse.contract import DATASETS

    for path in (lake / "spans").glob("dt=*/*.parquet"):
        assert pq.read_schema(path).remove_metadata().equals(
            DATASETS["spans"].schema.remove_metadata())


def test_ledger_records_the_expiry_and_status_reconciles(expired: dict[str, Any]) -> None:
    lake, report = expired["lake"], expired["report"]
    assert report.ledger is not None
    ledger = report.ledger.to_pylist()
    assert sum(r["expired"] for r in ledger if r["dataset"] == "spans") == report.expired_span_rows
    assert sum(r["expired"] for r in ledger) == sum(report.expired_rows.values())
    assert {r["tenant_id"] for r in ledger if r["expired"]} == {expired["tenant"]}
    assert {r["spans_class"] for r in ledger if r["expired"]} == {"d2"}
    status = lake_status(lake).to_pylist()
    assert all(r["reconciled"] for r in status), [r for r in status if not r["reconciled"]]
    assert sum(r["expired"] for r in status if r["dataset"] == "spans") == (
        report.expired_span_rows)
    assert sum(r["expired"] for r in status) == sum(report.expired_rows.values())
    # right after the expiry: nothing received changed, and what left is counted as expired
    after = expired["status_expired"]
    assert set(after) == set(expired["status_before"])
    for key, r in after.items():
        old = expired["status_before"][key]
        assert r["reconciled"]
        assert r["received"] == old["received"]
        assert r["accepted"] + r["expired"] == old["accepted"]


def test_published_aggregates_of_expired_days_never_change(expired: dict[str, Any]) -> None:
    days = [date.fromisoformat(d) for d in sorted(set(expired["report"].archived_days))]
    assert date(2026, 1, 1) in days and date(2026, 1, 3) in days
    published = duckdb.connect(str(warehouse_db(expired["published"])), read_only=True)
    published.execute("SET TimeZone = 'UTC'")
    for warehouse in (expired["incremental"], expired["full"]):
        con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        try:
            for model in ARCHIVED_MODELS:
                where = _day_filter(model, days)
                then = _table(published, f"marts.{model}", where)
                assert then, model
                assert _table(con, f"marts.{model}", where) == then, (warehouse.name, model)
        finally:
            con.close()
    published.close()


def test_incremental_equals_full_refresh_after_expiry(expired: dict[str, Any]) -> None:
    inc = duckdb.connect(str(warehouse_db(expired["incremental"])), read_only=True)
    full = duckdb.connect(str(warehouse_db(expired["full"])), read_only=True)
    try:
        for relation in [*DETAIL, *(f"marts.{m}" for m in ARCHIVED_MODELS)]:
            assert _table(inc, relation) == _table(full, relation), relation
        n = inc.execute(f"select count(*) from marts.fct_requests where tenant_id = "
                        f"'{expired['tenant']}' and trace_date < date '2026-01-04'").fetchone()
        assert n == (0,)  # the expired traces are gone from the stored detail too
    finally:
        inc.close()
        full.close()


def test_expire_refuses_a_stale_warehouse(tmp_path: Path) -> None:
    from tracehouse.generator import generate

    lake = tmp_path / "lake"
    generate(lake, start=START, days=1, traces_per_day=20, seed=3, progress=False)
    with pytest.raises(RetentionError, match="no warehouse"):
        expire_lake(lake, tmp_path / "nowhere", _policy("x"), now=NOW)
    wh = tmp_path / "wh"
    wh.mkdir()
    con = duckdb.connect(str(warehouse_db(wh)))
    con.execute("create schema marts; create table marts.fct_requests as select "
                "'t' as trace_id, date '2026-01-01' as trace_date, "
                "timestamptz '2020-01-01 00:00:00+00' as last_span_ingest_at")
    con.close()
    files = {p: p.read_bytes() for p in lake.rglob("*.parquet")}
    with pytest.raises(RetentionError, match="older than the lake"):
        expire_lake(lake, wh, _policy("x"), now=NOW)
    assert {p: p.read_bytes() for p in lake.rglob("*.parquet")} == files


def test_cli_lake_expire_dry_run_and_status(expired: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tracehouse.cli import app

    policy = tmp_path / "policy.toml"
    policy.write_text('[classes]\nd2 = { days = 2 }\n[lake]\ndefault = { spans = "d2" }\n')
    lake = expired["lake"]
    files = {p: p.stat().st_mtime_ns for p in (lake / "spans").rglob("*.parquet")}
    runner = CliRunner()
    out = runner.invoke(app, ["lake", "expire", "--lake", str(lake), "--warehouse",
                              str(expired["incremental"]), "--policy", str(policy), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "would expire" in out.output and "traces" in out.output
    assert {p: p.stat().st_mtime_ns for p in (lake / "spans").rglob("*.parquet")} == files
    status = runner.invoke(app, ["lake", "status", "--lake", str(lake)])
    assert status.exit_code == 0, status.output
    assert f"expired {sum(expired['report'].expired_rows.values()):,}" in status.output


def _base_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [f"{r[0]}.{r[1]}" for r in con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_name in "
        "('base_lake__spans', 'base_lake__feedback', 'base_lake__annotations') order by 2"
    ).fetchall()]


def test_expired_traces_leave_the_lake_and_the_base_tables_whole(expired: dict[str, Any]) -> None:
    """Feedback and annotations of an expired trace go with its spans, from the lake and from
    the base tables (which keep every row they loaded): the base tables of the incremental
    warehouse equal a full refresh's, row for row (but for the load stamp)."""
    lake, report = expired["lake"], expired["report"]
    assert report.expired_rows.get("feedback", 0) > 0
    con = duckdb.connect()
    spans = str(lake / "spans" / "dt=*" / "*.parquet")
    for dataset in ("feedback", "annotations"):
        glob = str(lake / dataset / "dt=*" / "*.parquet")
        orphans = con.execute(f"""
            select count(*) from read_parquet('{glob}') as x
            where x.trace_id not in (select trace_id from read_parquet('{spans}'))
              and x.ingest_time <= timestamptz '{NOW.isoformat()}'""").fetchone()
        assert orphans == (0,), dataset  # nothing landed before the expiry is left behind
    con.close()
    inc = duckdb.connect(str(warehouse_db(expired["incremental"])), read_only=True)
    full = duckdb.connect(str(warehouse_db(expired["full"])), read_only=True)
    try:
        tables = _base_tables(inc)
        assert len(tables) == 3
        for relation in tables:
            query = f"select * exclude (_loaded_at) from {relation}"
            assert sorted(inc.execute(query).fetchall(), key=repr) == sorted(
                full.execute(query).fetchall(), key=repr), relation
        n = inc.execute(f"select count(*) from {tables[2]} where tenant_id = "
                        f"'{expired['tenant']}' and cast(event_time as date) < "
                        "date '2026-01-03'").fetchone()
        assert n == (0,)  # base_lake__spans: the tenant's expired spans are gone
    finally:
        inc.close()
        full.close()


def test_an_expiry_is_a_change_for_the_next_run(tmp_path: Path) -> None:
    """Text-only expiry rewrites lake files without a new batch: the run's ledger fingerprint
    must still change, or the next run would skip and keep serving the old text."""
    from tracehouse.changes import ledger_fingerprint
    from tracehouse.lake import write_expiry_ledger

    before = ledger_fingerprint(tmp_path)
    write_expiry_ledger(tmp_path, "expire-test", [{
        "dataset": "spans", "batch_id": "b", "dt": "2026-01-01", "tenant_id": "t",
        "expired": 0, "text_expired": 3}], NOW)
    assert ledger_fingerprint(tmp_path) != before


def test_expiry_never_runs_under_a_run(tmp_path: Path) -> None:
    from tracehouse.generator import generate
    from tracehouse.runlock import RunLockedError, lake_files_lock

    lake, wh = tmp_path / "lake", tmp_path / "wh"
    generate(lake, start=START, days=1, traces_per_day=20, seed=3, progress=False)
    wh.mkdir()
    duckdb.connect(str(warehouse_db(wh))).close()
    files = {p: p.read_bytes() for p in lake.rglob("*.parquet")}
    with lake_files_lock(lake, rewrite=False, what="a run"), pytest.raises(RunLockedError):
        expire_lake(lake, wh, _policy("x"), now=NOW)
    assert {p: p.read_bytes() for p in lake.rglob("*.parquet")} == files
