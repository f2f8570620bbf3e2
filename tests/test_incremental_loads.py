"""Incremental builds cost what is new, and still equal a full refresh.

One small lake goes through the runs an hourly schedule sees, built incrementally into one
warehouse: 3 days; + the first hour of day 4; nothing new; a lake compaction; the rest of day 4
(late feedback and annotations for traces of the compacted days come with it: periods rebuilt
for feedback or annotations alone, whose metric rows per span_type / tool_name are kept, not
recomputed, and days the span-only marts must not rebuild). Then a full
refresh of the same lake into a second warehouse must equal it row for row (base tables, every
core table, a question mart). Along the way: a run with nothing new writes no base row, and a
compaction rewrites nothing (its merged file holds rows already loaded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.warehouse_tables import assert_built
from tracehouse.compaction import compact_lake
from tracehouse.contract.schemas import SPANS_SCHEMA
from tracehouse.lake import lake_status, write_batch
from tracehouse.warehouse import dbt_invoke, warehouse_db

from .warehouse_tables import assert_same_rows, warehouse_table

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS, TRACES_PER_DAY, SEED = 3, 60, 11
SELECT = (
    "+fct_requests +fct_spans +metric_daily +metric_hourly +agg_stage_latency "
    "+agg_cost_per_successful_task +fct_eval_candidates +dim_versions +agg_route_stage_latency "
    "+agg_context_assembly +agg_version_quality +agg_tool_reliability +agg_retrieval_quality "
    "+agg_failure_taxonomy"
)
QUICK = ["--resource-type", "model", "--resource-type", "seed"]
COMPARED = [
    "staging.base_lake__spans",
    "staging.base_lake__feedback",
    "staging.base_lake__annotations",
    "intermediate.int_spans_priced",
    "intermediate.int_traces_enveloped",
    "intermediate.int_traces_stamped",
    "intermediate.int_traces_stage_timed",
    "intermediate.int_traces_retrieval_summarized",
    "intermediate.int_traces_llm_summarized",
    "intermediate.int_traces_tools_summarized",
    "intermediate.int_traces_validated",
    "marts.fct_requests",
    "marts.fct_spans",
    "marts.metric_daily",
    "marts.metric_hourly",
    "marts.agg_stage_latency",
    "marts.agg_cost_per_successful_task",
    "marts.agg_route_stage_latency",
    "marts.agg_context_assembly",
    "marts.agg_version_quality",
    "marts.agg_tool_reliability",
    "marts.agg_retrieval_quality",
    "marts.agg_failure_taxonomy",
    "intermediate.int_versions_daily",
    "marts.dim_versions",
    "marts.fct_eval_candidates",
]
BASES = ["base_lake__spans", "base_lake__feedback", "base_lake__annotations"]


def _land_day_part(source_lake: Path, lake: Path, day: date, *, first_hour: bool) -> int:
    """Land the rows of ``day``'s generated batches from ``source_lake`` whose ingest_time is in
    the day's first hour (or after it), as one new batch per dataset. Returns rows landed."""
    cut = datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
    landed = 0
    for dataset in ("spans", "feedback", "annotations"):
        files = sorted((source_lake / dataset).glob(f"dt=*/gen-s{SEED}-{day}-{dataset}*.parquet"))
        table = pa.concat_tables([pq.read_table(p) for p in files])
        before = pc.less(table.column("ingest_time"), pa.scalar(cut, table.schema.field(
            "ingest_time").type))
        part = table.filter(before if first_hour else pc.invert(before))
        name = "hour" if first_hour else "rest"
        write_batch(lake, dataset, part, source="test", batch_id=f"{name}-{day}-{dataset}",
                    ingest_time=cut)
        landed += part.num_rows
    return landed


def _land_early_child_span(lake: Path, day: date, ingest: datetime) -> str:
    """Land one late span, a copy of a tool_call span of a trace of ``day`` that started an
    hour before the day (a child clocked before its root: its trace keeps ``day``). Marts
    bound their span reads by the traces' earliest span day (int_traces_stamped.span_dates),
    not by their trace_date: rebuilding ``day`` must read it. Returns its trace_id."""
    con = duckdb.connect()
    try:
        row = con.execute(f"""
            with spans as (
                select * from read_parquet(
                    '{lake}/spans/*/*.parquet', hive_partitioning = false, union_by_name = true
                )
            )
            select * from spans
            where span_type = 'tool_call' and trace_id in (
                select trace_id from spans
                where span_type = 'request' and parent_span_id is null
                    and cast(timezone('UTC', event_time) as date) = date '{day}'
                    and extract(hour from timezone('UTC', event_time)) >= 2
            )
            order by span_id limit 1""").to_arrow_table()
    finally:
        con.close()
    assert row.num_rows == 1
    row = row.select(SPANS_SCHEMA.names).cast(SPANS_SCHEMA)
    table = row
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=1)
    time_type = table.schema.field("event_time").type
    duration_ms = row.column("duration_ms")[0].as_py() or 0.0
    span_id = hashlib.md5(f"early-{row.column('span_id')[0]}".encode()).hexdigest()[:16]
    replaced = {
        "span_id": pa.array([span_id]),
        "event_time": pa.array([start], time_type),
        "end_time": pa.array([start + timedelta(milliseconds=duration_ms)], time_type),
        "ingest_time": pa.array([ingest], table.schema.field("ingest_time").type),
    }
    for name, values in replaced.items():
        row = row.set_column(row.schema.get_field_index(name), name, values)
    write_batch(lake, "spans", row, source="test", batch_id=f"early-child-{day}",
                ingest_time=ingest)
    return str(row.column("trace_id")[0].as_py())


def _query(warehouse: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _stamps(warehouse: Path) -> dict[str, tuple[object, int]]:
    """Per base table: the newest _loaded_at and how many rows carry it."""
    out = {}
    for base in BASES:
        (row,) = _query(
            warehouse,
            f"select max(_loaded_at), count(*) filter (where _loaded_at = "
            f"(select max(_loaded_at) from staging.{base})) from staging.{base}",
        )
        out[base] = (row[0], int(row[1]))  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    from tracehouse.generator import generate

    patch = pytest.MonkeyPatch()
    patch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    root = tmp_path_factory.mktemp("incremental_loads")
    lake, source, inc, full = root / "lake", root / "source", root / "inc", root / "full"
    generate(lake, start=START, days=DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)
    generate(source, start=START, days=DAYS + 1, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)
    day4 = START + timedelta(days=DAYS)

    def build(warehouse: Path, *extra: str) -> None:
        assert_built(dbt_invoke(["build", "--select", SELECT, *QUICK, *extra], lake=lake,
                                warehouse=warehouse))

    out: dict[str, object] = {}
    build(inc)
    out["after_full"] = _stamps(inc)
    out["hour_rows"] = _land_day_part(source, lake, day4, first_hour=True)
    build(inc)
    out["after_hour"] = _stamps(inc)
    out["fct_requests_after_hour"] = _query(inc, "select * from marts.fct_requests order by all")
    out["version_days_after_hour"] = _query(inc, """
        select distinct trace_date from intermediate.int_versions_daily
        where _loaded_at = (select max(_loaded_at) from intermediate.int_versions_daily)
        order by 1""")
    after_full = out["after_full"]
    assert isinstance(after_full, dict)
    # versions come from spans: late feedback or annotations do not rebuild a day
    stamped = (f"select trace_id from staging.base_lake__spans where _loaded_at > timestamptz "
               f"'{after_full['base_lake__spans'][0].isoformat()}'")
    out["days_touched_by_hour"] = _query(inc, f"""
        select distinct trace_date from marts.fct_requests
        where trace_id in ({stamped}) order by 1""")
    build(inc)
    out["after_noop"] = _stamps(inc)
    out["fct_requests_after_noop"] = _query(inc, "select * from marts.fct_requests order by all")
    out["compacted"] = compact_lake(lake)
    out["status_after_compaction"] = lake_status(lake).to_pylist()
    build(inc)
    out["after_compaction"] = _stamps(inc)
    # as a warehouse built before these marts' lineage became spans-only: the next run drops
    # the old columns (pre-hook drop_retired_columns), so it still equals a full refresh
    con = duckdb.connect(str(warehouse_db(inc)))
    try:
        for table in ("agg_stage_latency", "agg_context_assembly"):
            con.execute(f"alter table marts.{table} add column last_ingest_at timestamptz")
            con.execute(f"alter table marts.{table} add column last_feedback_ingest_at timestamptz")
    finally:
        con.close()
    out["rest_rows"] = _land_day_part(source, lake, day4, first_hour=False)
    out["early_child_trace"] = _land_early_child_span(
        lake, START + timedelta(days=1), datetime(day4.year, day4.month, day4.day, 2, tzinfo=UTC)
    )
    build(inc)
    out["after_rest"] = _stamps(inc)
    build(full, "--full-refresh")
    patch.undo()
    yield {"lake": lake, "inc": inc, "full": full, "day4": day4, **out}


def test_an_hour_writes_only_its_rows(runs: dict[str, object]) -> None:
    hour_rows = runs["hour_rows"]
    assert isinstance(hour_rows, int) and hour_rows > 0
    after_full, after_hour = runs["after_full"], runs["after_hour"]
    assert isinstance(after_full, dict) and isinstance(after_hour, dict)
    inc = runs["inc"]
    assert isinstance(inc, Path)
    spans_total = _query(inc, "select count(*) from staging.base_lake__spans")[0][0]
    stamp, n = after_hour["base_lake__spans"]
    assert stamp > after_full["base_lake__spans"][0]
    # only the hour's rows were written: a small share of the lake, never the old days again
    assert 0 < n <= hour_rows and n < 0.2 * spans_total  # type: ignore[operator]


def test_an_hour_rebuilds_only_its_day_of_version_state(runs: dict[str, object]) -> None:
    # dim_versions and fct_eval_candidates follow int_versions_daily: it rebuilt the days of the
    # traces the hour brought spans for (late spans of older days too), not every day
    rebuilt, touched = runs["version_days_after_hour"], runs["days_touched_by_hour"]
    assert isinstance(rebuilt, list) and isinstance(touched, list) and touched
    assert set(touched) <= set(rebuilt) and len(rebuilt) < DAYS


def test_nothing_new_writes_nothing(runs: dict[str, object]) -> None:
    assert runs["after_noop"] == runs["after_hour"]
    assert runs["fct_requests_after_noop"] == runs["fct_requests_after_hour"]


def test_compaction_between_runs_rewrites_nothing(runs: dict[str, object]) -> None:
    compacted = runs["compacted"]
    assert isinstance(compacted, list) and len(compacted) >= 3
    status = runs["status_after_compaction"]
    assert isinstance(status, list) and all(r["reconciled"] for r in status)
    assert runs["after_compaction"] == runs["after_noop"]


def test_late_feedback_for_compacted_days_is_built(runs: dict[str, object]) -> None:
    day4 = runs["day4"]
    # the rest of day 4 brought feedback for traces of days whose files were compacted
    inc = runs["inc"]
    assert isinstance(inc, Path)
    late = _query(
        inc,
        f"""select count(*) from staging.base_lake__feedback as f
            join marts.fct_requests as r using (trace_id)
            where r.trace_date < date '{day4}'
              and f.ingest_time >= timestamptz '{day4} 01:00:00+00'""",
    )[0][0]
    assert late > 0  # type: ignore[operator]
    after_compaction, after_rest = runs["after_compaction"], runs["after_rest"]
    assert isinstance(after_compaction, dict) and isinstance(after_rest, dict)
    assert after_rest["base_lake__feedback"][0] > after_compaction["base_lake__feedback"][0]


def test_late_annotations_for_old_days_are_built(runs: dict[str, object]) -> None:
    day4, inc = runs["day4"], runs["inc"]
    assert isinstance(inc, Path)
    # the rest of day 4 brought annotations for traces of earlier days ...
    late_days = _query(
        inc,
        f"""select distinct r.trace_date from staging.base_lake__annotations as a
            join marts.fct_requests as r using (trace_id)
            where r.trace_date < date '{day4}'
              and a.ingest_time >= timestamptz '{day4} 01:00:00+00' order by 1""",
    )
    assert late_days
    # ... and every metric row of those days, the span-level ones kept from the stored rows
    # too, carries the day's new annotation lineage (equality with a full refresh: below)
    stale = _query(
        inc,
        f"""select m.segment_key, m.metric from marts.metric_daily as m
            join (select trace_date, max(last_annotation_ingest_at) as newest
                  from marts.fct_requests group by trace_date) as d
              on cast(timezone('UTC', m.period_start) as date) = d.trace_date
            where d.trace_date < date '{day4}'
              and m.last_annotation_ingest_at is distinct from d.newest""",
    )
    assert stale == []
    span_level = _query(
        inc,
        f"""select count(*) from marts.metric_daily
            where period_start < timestamptz '{day4} 00:00:00+00'
              and (segment_key like 'span_type=%' or segment_key like 'tool_name=%')""",
    )[0][0]
    assert span_level > 0  # type: ignore[operator]


def test_span_only_marts_carry_only_span_lineage(runs: dict[str, object]) -> None:
    # they read nothing of feedback or annotations: a feedback / annotation lineage column
    # would go stale on days late labels do not rebuild
    inc = runs["inc"]
    for table in ("agg_stage_latency", "agg_context_assembly", "agg_route_stage_latency"):
        columns = {r[0] for r in _query(
            inc,
            f"select column_name from information_schema.columns where table_name = '{table}'",
        )}
        assert {"day_trace_count", "last_span_ingest_at"} <= columns, table
        assert not columns & {"last_feedback_ingest_at", "last_annotation_ingest_at",
                              "last_ingest_at"}, table


def test_a_late_span_before_its_traces_day_is_read(runs: dict[str, object]) -> None:
    # the late child span landed: its trace's span days start the day before its trace_date,
    # so an incremental mart rebuilding that day reads spans from the earlier day on (its
    # rows equal a full refresh's: below); a bound by trace_date would have dropped the span
    inc, trace_id = runs["inc"], runs["early_child_trace"]
    assert isinstance(inc, Path)
    ((trace_date, first_span_day, spans),) = _query(inc, f"""
        select s.trace_date, list_min(s.span_dates),
            (select count(*) from staging.base_lake__spans as b
             where b.trace_id = s.trace_id and b.event_time < cast(s.trace_date as timestamptz))
        from intermediate.int_traces_stamped as s where s.trace_id = '{trace_id}'""")
    assert trace_date == START + timedelta(days=1)
    assert first_span_day == START and spans == 1
    # ... and it was built incrementally: the stage waterfall of its day counts it
    ((span_count,),) = _query(inc, f"""
        select sum(span_count) from marts.agg_route_stage_latency
        where trace_date = date '{trace_date}' and span_type = 'tool_call'""")
    ((expected,),) = _query(inc, f"""
        select count(*) from staging.base_lake__spans as b
        join intermediate.int_traces_enveloped as e using (trace_id)
        where e.trace_date = date '{trace_date}' and b.span_type = 'tool_call'""")
    assert span_count == expected


def test_incremental_equals_full_refresh_row_for_row(runs: dict[str, object]) -> None:
    for table in COMPARED:
        assert_same_rows(warehouse_table(runs["inc"], table),  # type: ignore[arg-type]
                         warehouse_table(runs["full"], table), table)  # type: ignore[arg-type]


def test_stamps_date_every_trace_as_int_traces_enveloped(runs: dict[str, object]) -> None:
    """int_traces_stamped (the test slices' days) gives every trace int_traces_enveloped's
    trace_date, among its span days, and its newest stamps are the base tables'."""
    for warehouse in (runs["inc"], runs["full"]):
        assert isinstance(warehouse, Path)
        ((traces, differ, outside),) = _query(warehouse, """
            select count(*),
                count(*) filter (where s.trace_date is distinct from e.trace_date),
                count(*) filter (where not list_contains(s.span_dates, e.trace_date))
            from intermediate.int_traces_enveloped as e
            left join intermediate.int_traces_stamped as s using (trace_id)""")
        assert traces > 0 and differ == 0 and outside == 0
        assert _query(warehouse, """
            select (select max(_loaded_at) from staging.base_lake__spans),
                (select max(_loaded_at) from staging.base_lake__feedback),
                (select max(_loaded_at) from staging.base_lake__annotations)""") == _query(
            warehouse, """
            select max(spans_loaded_at), max(feedback_loaded_at), max(annotations_loaded_at)
            from intermediate.int_traces_stamped""")
