"""The day-partitioned marts are republished only on the days a build touched.

One small lake (3 days), built incrementally and published after each step: the first
publication writes every day; late feedback for traces of one day rewrites only that day (the
others are hard links to the previous publication's files); a lake expiry that drops some traces
of the first day rewrites that day; a full refresh rewrites every day. Row counts reconcile with
the warehouse every time, and a reader holding an old ``marts.duckdb`` still sees its whole
publication.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from tests.warehouse_tables import assert_built
from tracehouse.artifacts.policy import parse_policy
from tracehouse.lake import write_batch
from tracehouse.publication import MANIFEST, connect, mart_glob, mart_path, mart_rows
from tracehouse.publish import DAY_PARTITIONED, Published, publish
from tracehouse.retention import expire_lake
from tracehouse.warehouse import dbt_invoke, warehouse_db

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS, TRACES_PER_DAY, SEED = 3, 60, 5
SELECT = "+fct_requests +fct_spans"
QUICK = ["--resource-type", "model", "--resource-type", "seed"]
DAY2 = "2026-01-02"
ALL_DAYS = {"2026-01-01", DAY2, "2026-01-03"}


def _warehouse_days(warehouse: Path, mart: str) -> dict[str, int]:
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        day = DAY_PARTITIONED[mart]
        return dict(con.execute(
            f"select strftime(cast({day} as date), '%Y-%m-%d'), count(*) from marts.{mart} "
            "group by 1").fetchall())
    finally:
        con.close()


def _files(folder: Path) -> dict[str, int]:
    """Day file name -> inode, for one mart folder."""
    return {p.name: p.stat().st_ino for p in folder.glob("*.parquet")}


def _late_feedback(lake: Path, warehouse: Path, day: str) -> None:
    """Land one feedback row for a trace of ``day`` (no new span, no other day)."""
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        (trace_id,) = con.execute(
            "select min(trace_id) from marts.fct_requests where trace_date = ?::DATE", [day]
        ).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    template = pq.read_table(sorted((lake / "feedback").glob("dt=*/*.parquet"))[0]).slice(0, 1)
    row = template.to_pylist()[0]
    now = datetime(2026, 1, 4, 9, tzinfo=UTC)
    row.update(feedback_id=f"late-{trace_id}", trace_id=trace_id, event_time=now,
               ingest_time=now)
    table = template.from_pylist([row], schema=template.schema)
    write_batch(lake, "feedback", table, source="test", batch_id="late-feedback",
                ingest_time=now)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tracehouse.generator import generate

    patch = pytest.MonkeyPatch()
    patch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    root = tmp_path_factory.mktemp("publish_days")
    lake, warehouse = root / "lake", root / "warehouse"
    generate(lake, start=START, days=DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)

    def build(*extra: str) -> None:
        assert_built(dbt_invoke(["build", "--select", SELECT, *QUICK, *extra], lake=lake,
                                warehouse=warehouse))

    out: dict[str, Any] = {"lake": lake, "warehouse": warehouse}

    def step(name: str, **kwargs: Any) -> None:
        published = publish(warehouse, name, **kwargs)
        out[name] = {
            "published": published,
            "folder": published.folder,
            "files": {m: _files(published.folder / f"{m}.parquet") for m in DAY_PARTITIONED},
            "warehouse": {m: _warehouse_days(warehouse, m) for m in DAY_PARTITIONED},
        }

    build()
    step("r1")
    reader = connect(warehouse)  # holds publication r1 from here on
    out["reader_before"] = reader.execute(
        "select count(*), count(distinct trace_date) from fct_spans").fetchone()
    _late_feedback(lake, warehouse, DAY2)
    build()
    step("r2")
    # Nothing new: nothing is written.
    step("r3")
    # Expiry: one tenant's traces older than 2 days go (from the first day only).
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    tenant = con.execute("select tenant_id from marts.fct_requests "
                         "where trace_date = date '2026-01-01' group by 1 "
                         "order by count(*) desc limit 1").fetchone()[0]  # type: ignore[index]
    con.close()
    policy = parse_policy({
        "classes": {"d2": {"days": 2}, "forever": {}},
        "lake": {"default": {"tier2_text": "forever", "spans": "forever"},
                 "tenants": {tenant: {"spans": "d2"}}},
    })
    out["expiry"] = expire_lake(lake, warehouse, policy,
                                now=datetime(2026, 1, 4, 12, tzinfo=UTC))
    build()
    step("r4")
    build("--full-refresh")
    step("r5", full_refresh=True)
    out["reader_after"] = reader.execute(
        "select count(*), count(distinct trace_date) from fct_spans").fetchone()
    reader.close()
    patch.undo()
    yield out


def _published(runs: dict[str, Any], name: str) -> Published:
    published: Published = runs[name]["published"]
    return published


def test_days_are_files_of_a_folder_that_every_reader_reads(runs: dict[str, Any]) -> None:
    warehouse = runs["warehouse"]
    for mart in DAY_PARTITIONED:
        path = mart_path(warehouse, mart)
        assert path.is_dir()
        assert set(_files(path)) == {f"{d}.parquet" for d in ALL_DAYS}
        rows = sum(_warehouse_days(warehouse, mart).values())
        assert mart_rows(path) == rows > 0
        assert pq.read_table(path).num_rows == rows  # pyarrow: the folder is one table
        assert "dt" not in pq.read_table(path).column_names  # no invented partition column
        assert pl.read_parquet(mart_glob(path)).height == rows
        con = connect(warehouse)
        try:
            assert con.execute(f"select count(*) from {mart}").fetchone()[0] == rows  # type: ignore[index]
        finally:
            con.close()


def test_the_first_publication_writes_every_day(runs: dict[str, Any]) -> None:
    first = _published(runs, "r1")
    assert first.all_days_because == "no previous publication"
    for mart in DAY_PARTITIONED:
        assert set(first.days_written[mart]) == ALL_DAYS


def test_late_feedback_rewrites_only_its_day_and_links_the_others(
    runs: dict[str, Any],
) -> None:
    second = _published(runs, "r2")
    assert second.all_days_because is None
    # Feedback changes a request row, never a span row: fct_spans keeps every file.
    expected = {"fct_requests": [DAY2], "fct_spans": []}
    for mart in DAY_PARTITIONED:
        assert second.days_written[mart] == expected[mart]
        assert second.days_linked[mart] == len(ALL_DAYS) - len(expected[mart])
        before, after = runs["r1"]["files"][mart], runs["r2"]["files"][mart]
        assert set(before) == set(after)
        for name, inode in after.items():
            # same inode: a hard link of the previous publication's file; a written day is new
            assert (inode == before[name]) == (name[:-len(".parquet")] not in expected[mart]), name
        assert mart_rows(runs["r2"]["folder"] / f"{mart}.parquet") == sum(
            runs["r2"]["warehouse"][mart].values())
    assert "fct_requests" in second.written  # a day of it was written


def test_the_manifest_records_days_stamps_and_build(runs: dict[str, Any]) -> None:
    manifest = json.loads((runs["r2"]["folder"] / MANIFEST).read_text())
    assert manifest["build"] and set(manifest["stamps"]) == {"spans", "feedback", "annotations"}
    for mart, written in (("fct_spans", []), ("fct_requests", [DAY2])):
        entry = manifest["tables"][f"{mart}.parquet"]
        assert {d: v["rows"] for d, v in entry["days"].items()} == runs["r2"]["warehouse"][mart]
        assert entry["day_column"] == DAY_PARTITIONED[mart]
        assert entry["days_written"] == written


def test_nothing_new_writes_no_day(runs: dict[str, Any]) -> None:
    third = _published(runs, "r3")
    for mart in DAY_PARTITIONED:
        assert third.days_written[mart] == []
        assert runs["r3"]["files"][mart] == runs["r2"]["files"][mart]
        assert mart in third.linked


def test_an_expiry_rewrites_the_day_it_deleted_from(runs: dict[str, Any]) -> None:
    assert runs["expiry"].expired_traces > 0
    fourth = _published(runs, "r4")
    for mart in DAY_PARTITIONED:
        assert runs["r4"]["warehouse"][mart]["2026-01-01"] < runs["r3"]["warehouse"][mart][
            "2026-01-01"]
        # exactly the days whose rows the expiry deleted (a span of a first-day trace may
        # have ended up past midnight)
        before, after = runs["r3"]["warehouse"][mart], runs["r4"]["warehouse"][mart]
        assert fourth.days_written[mart] == sorted(d for d in before if after.get(d) != before[d])
        assert "2026-01-01" in fourth.days_written[mart]
        files = runs["r4"]["files"][mart]
        assert files["2026-01-01.parquet"] != runs["r3"]["files"][mart]["2026-01-01.parquet"]
        assert mart_rows(runs["r4"]["folder"] / f"{mart}.parquet") == sum(
            runs["r4"]["warehouse"][mart].values())


def test_a_full_refresh_rewrites_every_day(runs: dict[str, Any]) -> None:
    fifth = _published(runs, "r5")
    assert fifth.all_days_because == "full refresh"
    for mart in DAY_PARTITIONED:
        assert set(fifth.days_written[mart]) == set(runs["r5"]["warehouse"][mart])
        before, after = runs["r4"]["files"][mart], runs["r5"]["files"][mart]
        assert not set(before.values()) & set(after.values())
        assert mart_rows(runs["r5"]["folder"] / f"{mart}.parquet") == sum(
            runs["r5"]["warehouse"][mart].values())


def test_a_reader_of_an_old_publication_keeps_seeing_all_of_it(runs: dict[str, Any]) -> None:
    assert runs["reader_after"] == runs["reader_before"]
    assert runs["reader_before"][1] == len(ALL_DAYS)


def test_another_build_fingerprint_rewrites_every_day(
    runs: dict[str, Any], tmp_path: Path,
) -> None:
    published = publish(runs["warehouse"], "r6", build="another project")
    assert published.all_days_because == "the dbt project or tracehouse code changed"
    assert set(published.days_written["fct_spans"]) == ALL_DAYS


def test_a_warehouse_without_stamps_publishes_every_day_and_undated_rows(tmp_path: Path) -> None:
    """As a Spark build leaves it (marts imported, no base tables): every day is written each
    time, rows with no day go to ``_undated.parquet``, an empty mart keeps its columns."""
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    con = duckdb.connect(str(warehouse_db(warehouse)))
    con.execute("CREATE SCHEMA marts")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE marts.fct_spans AS SELECT trace_id, span_id, "
                "event_time::TIMESTAMPTZ AS event_time, event_time::DATE AS trace_date FROM ("
                "VALUES ('t1', 's1', TIMESTAMP '2026-01-01 00:00:00'), "
                "('t1', 's2', TIMESTAMP '2026-01-01 23:59:59.999'), "
                "('t2', 's3', TIMESTAMP '2026-01-02 00:00:00'), ('t3', 's4', NULL)) "
                "AS v(trace_id, span_id, event_time)")
    con.execute("CREATE TABLE marts.fct_requests AS SELECT 'x' AS trace_id, "
                "DATE '2026-01-01' AS trace_date WHERE false")
    con.execute("CREATE TABLE marts.metric_daily AS SELECT 1 AS v")
    con.close()
    for run_id in ("a", "b"):
        published = publish(warehouse, run_id, build="same")
        assert published.all_days_because in {"no previous publication",
                                               "the warehouse has no stamped base tables"}
        spans = mart_path(warehouse, "fct_spans")
        assert set(_files(spans)) == {"2026-01-01.parquet", "2026-01-02.parquet",
                                      "_undated.parquet"}
        assert set(published.days_written["fct_spans"]) == {"2026-01-01", "2026-01-02",
                                                            "_undated"}
        assert mart_rows(spans) == 4
        # a day's file holds the rows of that UTC day, its last microsecond included
        assert pq.read_table(spans / "2026-01-01.parquet").num_rows == 2
        requests = mart_path(warehouse, "fct_requests")
        assert set(_files(requests)) == {"_undated.parquet"}
        reader = connect(warehouse)
        try:
            assert reader.execute("select count(*) from fct_requests").fetchone()[0] == 0  # type: ignore[index]
            assert reader.execute(
                "select count(*) from fct_spans where trace_date is null").fetchone()[0] == 1  # type: ignore[index]
        finally:
            reader.close()
    assert "metric_daily" in published.linked
