"""The warehouse core (intermediate, fct_requests, fct_spans, dim_versions, metric series).

(a) ``dbt build`` of the core on a small generated lake succeeds, tests and unit tests included;
(b) the incremental invariant: build N days, append M days (late feedback and annotations for
    old traces come with them), build incrementally; full-refresh a second warehouse on the same
    lake; every core and metric table is equal row for row (EXCEPT ALL both ways);
(c) an independent recompute of contract metrics straight from the lake's Parquet (own dedup,
    own pricing with an ASOF join) equals ``metric_daily`` for ``all`` and a route segment.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tests.warehouse_tables import assert_built
from tracehouse.warehouse import BuildResult, build, dbt_invoke, project_dir, warehouse_db

from .warehouse_tables import assert_same_rows

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
FIRST_DAYS, MORE_DAYS, TRACES_PER_DAY, SEED = 4, 3, 150, 7

CORE_SELECT = "+fct_requests +fct_spans +dim_versions +metric_daily +metric_hourly failure_taxonomy"
COMPARED = [
    "intermediate.int_spans_priced",
    "intermediate.int_traces_enveloped",
    "intermediate.int_traces_stage_timed",
    "intermediate.int_traces_retrieval_summarized",
    "intermediate.int_traces_llm_summarized",
    "intermediate.int_traces_tools_summarized",
    "intermediate.int_traces_validated",
    "marts.fct_requests",
    "marts.fct_spans",
    "marts.dim_versions",
    "marts.metric_daily",
    "marts.metric_hourly",
]


@pytest.fixture(scope="session")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """One lake built three ways: first N days, then +M days incrementally, and full refresh."""
    from tracehouse.generator import generate

    # only the tests whose parents are all selected (not the question marts' tests on our seeds)
    patch = pytest.MonkeyPatch()
    patch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    root = tmp_path_factory.mktemp("warehouse_core")
    lake, incremental, full = root / "lake", root / "incremental", root / "full"
    generate(
        lake, start=START, days=FIRST_DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED, progress=False
    )
    first = assert_built(build(lake, incremental, select=CORE_SELECT))
    generate(
        lake,
        start=date.fromordinal(START.toordinal() + FIRST_DAYS),
        days=MORE_DAYS,
        traces_per_day=TRACES_PER_DAY,
        seed=SEED,
        progress=False,
    )
    # the later builds skip the data tests (the first one ran them): models and seeds only
    quick = ["--resource-type", "model", "--resource-type", "seed"]
    second = assert_built(
        dbt_invoke(["build", "--select", CORE_SELECT, *quick], lake=lake, warehouse=incremental)
    )
    refreshed = assert_built(
        dbt_invoke(
            ["build", "--full-refresh", "--select", CORE_SELECT, *quick], lake=lake, warehouse=full
        )
    )
    patch.undo()
    yield {
        "lake": lake,
        "incremental": incremental,
        "full": full,
        "builds": (first, second, refreshed),
    }


def test_core_build_succeeds_with_tests_and_unit_tests(core: dict[str, object]) -> None:
    builds: tuple[BuildResult, BuildResult, BuildResult] = core["builds"]  # type: ignore[assignment]
    first, second, refreshed = builds
    assert first.counts.get("pass", 0) > 50  # data tests and unit tests ran and passed
    for result in (first, second, refreshed):
        assert result.counts.get("success", 0) > 10
    con = duckdb.connect(str(warehouse_db(core["full"])), read_only=True)  # type: ignore[arg-type]
    try:
        n_traces = con.execute("select count(*) from marts.fct_requests").fetchall()[0][0]
        n_spans = con.execute("select count(*) from marts.fct_spans").fetchall()[0][0]
        assert n_traces > 500 and n_spans > 5 * n_traces
        metrics = {
            r[0] for r in con.execute("select distinct metric from marts.metric_daily").fetchall()
        }
        assert {
            "request_count",
            "error_rate",
            "latency_p95_ms",
            "task_success_rate",
            "retrieval_hit_rate",
            "tool_error_rate",
            "model_share",
        } <= metrics
        segments = {
            r[0].split("=")[0]
            for r in con.execute("select distinct segment_key from marts.metric_daily").fetchall()
        }
        assert segments == {
            "all",
            "route_name",
            "model_name",
            "task_type",
            "span_type",
            "tool_name",
        }
    finally:
        con.close()


def _read(warehouse: object, sql: str) -> pa.Table:
    # each warehouse opened under its own name: views (fct_spans) name their catalog
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)  # type: ignore[arg-type]
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def test_incremental_equals_full_refresh_row_for_row(core: dict[str, object]) -> None:
    boundary = date.fromordinal(START.toordinal() + FIRST_DAYS)
    # the appended days really brought late rows for traces built in the first run
    late = (
        _read(
            core["full"],
            f"""
        select count(*) as n from marts.fct_requests
        where trace_date < date '{boundary}'
          and greatest(coalesce(last_feedback_ingest_at, last_span_ingest_at),
                       coalesce(last_annotation_ingest_at, last_span_ingest_at))
              >= timestamptz '{boundary}'""",
        )
        .column("n")[0]
        .as_py()
    )
    assert late > 0
    for table in COMPARED:
        assert_same_rows(_read(core["incremental"], f"select * from {table}"),
                         _read(core["full"], f"select * from {table}"), table)


RECOMPUTE_SQL = """
with
spans as (
    select * from read_parquet('{lake}/spans/dt=*/*.parquet')
    qualify row_number() over (partition by span_id order by ingest_time desc) = 1
),
feedback as (
    select * from read_parquet('{lake}/feedback/dt=*/*.parquet')
    qualify row_number() over (partition by feedback_id order by ingest_time desc) = 1
),
annotations as (
    select * from read_parquet('{lake}/annotations/dt=*/*.parquet')
    qualify row_number() over (partition by annotation_id order by ingest_time desc) = 1
),
latest_annotation as (
    select * from annotations
    qualify row_number() over (
        partition by trace_id order by label_time desc, ingest_time desc, annotation_id desc) = 1
),
roots as (
    select trace_id, date_trunc('day', event_time) as day, status, route_name,
           json_extract_string(attributes, '$.final_status') as final_status
    from spans where parent_span_id is null
),
prices as (
    select model_name, cast(effective_from as timestamptz) as effective_from,
           input_usd_per_1m, output_usd_per_1m, cached_input_usd_per_1m
    from read_csv('{seeds}/model_prices.csv', header = true)
),
cached as (
    select *, coalesce(cast(json_extract(attributes, '$.cached_tokens') as bigint), 0) as cached
    from spans
),
priced as (
    select s.trace_id, coalesce(
        s.cost_usd_estimate,
        ((coalesce(s.input_tokens, 0) - s.cached) * p.input_usd_per_1m
         + s.cached * p.cached_input_usd_per_1m
         + coalesce(s.output_tokens, 0) * p.output_usd_per_1m) / 1e6) as cost
    from cached s asof left join prices p
        on s.model_name = p.model_name and s.event_time >= p.effective_from
),
trace_cost as (select trace_id, sum(cost) as cost from priced group by trace_id),
fb as (
    select trace_id,
           bool_or(feedback_type = 'thumbs_down') as thumbs_down,
           bool_or(feedback_type in ('thumbs_down', 'escalation', 'task_abandoned')) as negative
    from feedback group by trace_id
),
chunks as (
    select trace_id,
        flatten(list(cast(json_extract(attributes, '$.included_chunk_ids') as varchar[]))
                filter (where span_type = 'context_assembly')) as included,
        count(json_extract(attributes, '$.included_chunk_ids'))
            filter (where span_type = 'context_assembly') as n_included,
        flatten(list(cast(json_extract(attributes, '$.selected_chunk_ids') as varchar[]))
                filter (where span_type = 'rerank')) as selected,
        count(json_extract(attributes, '$.selected_chunk_ids'))
            filter (where span_type = 'rerank') as n_selected,
        flatten(list(cast(json_extract(attributes, '$.chunk_ids') as varchar[]))
                filter (where span_type = 'retrieval')) as retrieved,
        count(json_extract(attributes, '$.chunk_ids'))
            filter (where span_type = 'retrieval') as n_retrieved,
        count(*) filter (where span_type = 'tool_call') as tool_calls,
        count(*) filter (where span_type = 'tool_call' and status <> 'ok') as tool_errors
    from spans group by trace_id
),
traces as (
    select r.*, tc.cost, coalesce(fb.thumbs_down, false) as thumbs_down,
        r.status = 'ok' and coalesce(r.final_status, 'success') = 'success'
            and not coalesce(fb.negative, false)
            and coalesce(a.correctness, 1) >= 0.5 as success,
        case when len(a.relevant_chunk_ids) > 0 then coalesce(list_has_any(a.relevant_chunk_ids,
            case when c.n_included > 0 then c.included when c.n_selected > 0 then c.selected
                 when c.n_retrieved > 0 then c.retrieved end), false) end as hit,
        c.tool_calls, c.tool_errors
    from roots r
    join trace_cost tc using (trace_id)
    left join fb using (trace_id)
    left join latest_annotation a using (trace_id)
    left join chunks c using (trace_id)
),
segmented as (
    select 'all' as segment_key, * from traces
    union all
    select 'route_name=' || coalesce(route_name, 'unknown'), * from traces
)
select day, segment_key,
    count(*)::double as request_count,
    avg(case when status in ('error', 'timeout') then 1 else 0 end) as error_rate,
    avg(success::int) as task_success_rate,
    avg(thumbs_down::int) as thumbs_down_rate,
    avg(hit::int) as retrieval_hit_rate,
    sum(tool_errors) / nullif(sum(tool_calls), 0) as tool_error_rate,
    sum(cost) / count(*) as cost_per_request_usd
from segmented group by day, segment_key
"""


def test_metric_daily_equals_an_independent_recompute_from_the_lake(
    core: dict[str, object],
) -> None:
    lake = Path(core["lake"])  # type: ignore[arg-type]
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    try:
        expected = con.sql(
            RECOMPUTE_SQL.format(lake=lake.as_posix(), seeds=(project_dir() / "seeds").as_posix())
        ).df()
    finally:
        con.close()
    actual = _read(core["full"], "select * from marts.metric_daily").to_pandas()
    got = {(r.metric, r.period_start, r.segment_key): r.value for r in actual.itertuples()}
    checked = 0
    routes = sorted(k for k in expected["segment_key"].unique() if k != "all")
    assert routes, "the lake has no route_name segment"
    for row in expected.itertuples():
        if row.segment_key not in ("all", routes[0]):
            continue
        for metric in (
            "request_count",
            "error_rate",
            "task_success_rate",
            "thumbs_down_rate",
            "retrieval_hit_rate",
            "tool_error_rate",
            "cost_per_request_usd",
        ):
            want = getattr(row, metric)
            key = (metric, row.day, row.segment_key)
            if want is None or math.isnan(want):  # undefined: the mart leaves the row out
                assert key not in got, key
                continue
            assert key in got, key
            assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key
            checked += 1
    assert checked > 5 * (FIRST_DAYS + MORE_DAYS)
