"""The question marts (cost, latency, retrieval, tools, context, quality, failures, evals).

One small generated lake, built three ways: the first days with every data test and unit test,
then more days incrementally, and a full refresh of a second warehouse on the same lake. The
tests check the marts against each other and against the core facts (fct_requests, fct_spans)
on real generated behaviour, that an incremental build equals a full refresh row for row, and
that the eval candidates are deterministic and take every thumbs-down trace up to the cap.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.warehouse_tables import assert_built
from tracehouse.warehouse import dbt_invoke, warehouse_db

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
FIRST_DAYS, MORE_DAYS, TRACES_PER_DAY, SEED = 3, 2, 200, 7

MARTS = [
    "agg_cost_per_successful_task",
    "agg_stage_latency",
    "agg_route_stage_latency",
    "agg_retrieval_quality",
    "agg_tool_reliability",
    "agg_context_assembly",
    "agg_version_quality",
    "agg_failure_taxonomy",
    "fct_eval_candidates",
]
# fct_spans too: the marts read span rows from staging and base tables (not through the view),
# but its tests are picked up through fct_requests and some checks below read it.
SELECT = " ".join(f"+{name}" for name in MARTS) + " +fct_spans"
# A singular test that also reads metric_daily (not in this selection) is picked up by dbt's
# eager indirect selection through fct_requests: leave it to tests/test_warehouse_core.py.
NOT_HERE = "assert_metric_request_count_matches_fct_requests"
THUMBS_DOWN_CAP = 200  # the default policy's daily cap (models/marts/evals/fct_eval_candidates.sql)


@pytest.fixture(scope="module")
def marts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """First days built with tests, more days incrementally, and a full refresh to compare."""
    from tracehouse.generator import generate

    root = tmp_path_factory.mktemp("question_marts")
    lake, incremental, full = root / "lake", root / "incremental", root / "full"
    generate(lake, start=START, days=FIRST_DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)
    first = assert_built(dbt_invoke(["build", "--select", SELECT, "--exclude", NOT_HERE], lake=lake,
                                    warehouse=incremental))
    generate(lake, start=date.fromordinal(START.toordinal() + FIRST_DAYS), days=MORE_DAYS,
             traces_per_day=TRACES_PER_DAY, seed=SEED, progress=False)
    quick = ["--resource-type", "model", "--resource-type", "seed"]
    second = assert_built(dbt_invoke(["build", "--select", SELECT, *quick], lake=lake,
                                     warehouse=incremental))
    refreshed = assert_built(dbt_invoke(["build", "--full-refresh", "--select", SELECT, *quick],
                                        lake=lake, warehouse=full))
    con = duckdb.connect(str(warehouse_db(full)), read_only=True)
    try:
        yield {"root": root, "lake": lake, "incremental": incremental, "full": full, "con": con,
               "builds": (first, second, refreshed)}
    finally:
        con.close()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def test_build_runs_the_marts_data_tests_and_unit_tests(marts: dict[str, Any]) -> None:
    first = marts["builds"][0]
    assert first.counts.get("pass", 0) > 100
    con = marts["con"]
    for name in MARTS:
        assert _rows(con, f"select count(*) from marts.{name}")[0][0] > 0, name


def test_incremental_equals_full_refresh_row_for_row(marts: dict[str, Any]) -> None:
    con = duckdb.connect()
    con.execute(f"attach '{warehouse_db(marts['incremental'])}' as inc (read_only)")
    con.execute(f"attach '{warehouse_db(marts['full'])}' as ful (read_only)")
    try:
        for name in MARTS:
            for a, b in (("inc", "ful"), ("ful", "inc")):
                diff = con.execute(
                    f"select count(*) from (select * from {a}.marts.{name} except all "
                    f"select * from {b}.marts.{name})"
                ).fetchone()[0]  # type: ignore[index]
                assert diff == 0, f"{name}: {diff} rows of {a} not in {b}"
    finally:
        con.close()


def test_cost_mart_counts_every_request_and_dollar_of_the_day(marts: dict[str, Any]) -> None:
    rows = _rows(marts["con"], """
        with mart as (
            select trace_date, sum(request_count) as n, sum(cost_usd) as cost,
                   sum(successful_task_count) as ok
            from marts.agg_cost_per_successful_task group by trace_date
        ),
        facts as (
            select trace_date, count(*) as n, sum(coalesce(cost_usd, 0)) as cost,
                   sum(case when is_successful_task then 1 else 0 end) as ok
            from marts.fct_requests group by trace_date
        )
        select facts.trace_date, facts.n, mart.n, facts.cost, mart.cost, facts.ok, mart.ok
        from facts full outer join mart using (trace_date)
    """)
    assert len(rows) == FIRST_DAYS + MORE_DAYS
    for day, n_facts, n_mart, cost_facts, cost_mart, ok_facts, ok_mart in rows:
        assert n_facts == n_mart, day
        assert ok_facts == ok_mart, day
        assert cost_mart == pytest.approx(cost_facts, rel=1e-9), day
    # a segment without a successful task has no cost per successful task, never a division by 0
    assert _rows(marts["con"], """
        select count(*) from marts.agg_cost_per_successful_task
        where successful_task_count = 0 and cost_per_successful_task_usd is not null
    """)[0][0] == 0


def test_stage_latency_waterfall_adds_up(marts: dict[str, Any]) -> None:
    con = marts["con"]
    # the root stage of every segment is the whole wall time of its traces
    roots = _rows(con, """
        select trace_date, sum(span_count), sum(duration_ms_sum)
        from marts.agg_stage_latency where span_type = 'request' group by trace_date order by 1
    """)
    facts = _rows(con, """
        select trace_date, count(*), sum(duration_ms)
        from marts.fct_requests where has_root group by trace_date order by 1
    """)
    assert [r[:2] for r in roots] == [f[:2] for f in facts]
    for root, fact in zip(roots, facts, strict=True):
        assert root[2] == pytest.approx(fact[2], rel=1e-9)
    # every span is in exactly one stage row
    spans = _rows(con, """
        select (select sum(span_count) from marts.agg_stage_latency),
               (select count(*) from marts.fct_spans
                where trace_id in (select trace_id from marts.fct_requests))
    """)[0]
    assert spans[0] == spans[1]
    bad = _rows(con, """
        select count(*) from marts.agg_stage_latency
        where not (duration_ms_p50 <= duration_ms_p90 and duration_ms_p90 <= duration_ms_p95
                   and duration_ms_p95 <= duration_ms_p99 and duration_ms_p99 <= duration_ms_max)
           or share_of_wall_time > share_of_wall_time_when_present + 1e-12
    """)[0][0]
    assert bad == 0


def test_route_stage_latency_equals_the_raw_lake_answer(marts: dict[str, Any]) -> None:
    """The bench's dashboard question from the mart equals it from the raw lake, for the same
    definition: every span once (the latest copy of a span id), on its root's day and route."""
    from tracehouse.bench.run_bench import ROUTE

    spans = marts["lake"] / "spans" / "dt=*" / "*.parquet"
    raw = duckdb.connect()
    try:
        expected = raw.execute(f"""
            with spans as (
                select * from read_parquet('{spans}', hive_partitioning = false,
                                           union_by_name = true)
                qualify row_number() over (partition by span_id
                                           order by ingest_time desc, span_id) = 1),
            roots as (select trace_id, route_name, event_time from spans
                      where parent_span_id is null)
            select cast(r.event_time as date) as trace_date, s.span_type, count(*) as n,
                   round(quantile_cont(s.duration_ms, 0.95), 6) as p95_ms
            from spans as s join roots as r using (trace_id)
            where r.route_name = '{ROUTE}' group by all order by all""").fetchall()
    finally:
        raw.close()
    got = _rows(marts["con"], f"""
        select trace_date, span_type, span_count, round(duration_ms_p95, 6)
        from marts.agg_route_stage_latency where route_name = '{ROUTE}' order by all""")
    assert len(expected) > 10
    assert got == expected
    # and the fine-grained waterfall agrees on the counts of the same route and days
    (counts,) = _rows(marts["con"], f"""
        select (select sum(span_count) from marts.agg_stage_latency where route_name = '{ROUTE}'),
               (select sum(span_count) from marts.agg_route_stage_latency
                where route_name = '{ROUTE}')""")
    assert counts[0] == counts[1] > 0


def test_retrieval_hit_rate_never_grows_along_the_pipeline(marts: dict[str, Any]) -> None:
    con = marts["con"]
    violations = _rows(con, """
        select count(*) from marts.agg_retrieval_quality
        where hit_included_count > hit_retrieved_count
           or hit_selected_count > hit_retrieved_count
           or hit_retrieved_count > judged_trace_count
           or zero_result_span_count > result_count_known_spans
    """)[0][0]
    assert violations == 0
    total = _rows(con, """
        select sum(judged_trace_count), sum(hit_retrieved_count), sum(hit_included_count),
               sum(retrieval_span_count)
        from marts.agg_retrieval_quality
    """)[0]
    assert total[0] > 0 and total[3] > 0
    assert total[2] <= total[1]
    # the included point is the contract's retrieval_hit_rate
    facts = _rows(con, """
        select sum(case when is_retrieval_judged then 1 else 0 end),
               sum(case when is_retrieval_hit then 1 else 0 end),
               sum(retrieval_span_count)
        from marts.fct_requests
    """)[0]
    assert (total[0], total[2], total[3]) == facts


def test_tool_reliability_matches_the_spans_and_the_requirements(marts: dict[str, Any]) -> None:
    con = marts["con"]
    calls = _rows(con, """
        select (select sum(call_count) from marts.agg_tool_reliability),
               (select count(*) from marts.fct_spans where span_type = 'tool_call'
                and trace_id in (select trace_id from marts.fct_requests)),
               (select sum(error_call_count) from marts.agg_tool_reliability),
               (select sum(tool_error_count) from marts.fct_requests)
    """)[0]
    assert calls[0] == calls[1] > 0
    assert calls[2] == calls[3]
    pairs = _rows(con, """
        select count(*) from marts.agg_tool_reliability
        where required_called_count + required_missing_count <> required_trace_count
           or unnecessary_call_count > called_labelled_count
           or tool_success_answer_failed_count > tool_success_trace_count
           or (tool_version = '(none)' and call_count > 0)
    """)[0][0]
    assert pairs == 0
    # a trace missing a required tool has at least one missing (trace, tool) pair
    missing = _rows(con, """
        select (select sum(required_missing_count) from marts.agg_tool_reliability),
               (select count(*) from marts.fct_requests where is_required_tool_missing)
    """)[0]
    assert missing[0] >= missing[1] > 0


def test_context_exclusions_add_up_by_reason(marts: dict[str, Any]) -> None:
    rows = _rows(marts["con"], """
        select sum(excluded_chunk_count),
               sum(excluded_budget_count + excluded_dedupe_count
                   + excluded_relevance_threshold_count + excluded_policy_count
                   + excluded_other_count),
               (select sum(excluded_chunk_count) from marts.fct_requests),
               sum(truncated_count),
               (select count(*) from marts.fct_requests where is_context_truncated)
        from marts.agg_context_assembly
    """)[0]
    assert rows[0] == rows[1] == rows[2] > 0
    assert rows[3] == rows[4]


def test_version_quality_counts_every_trace_once_per_scalar_dimension(
    marts: dict[str, Any],
) -> None:
    rows = _rows(marts["con"], """
        with per_dimension as (
            select version_dimension, trace_date, sum(trace_count) as n,
                   sum(correctness_n) as labelled
            from marts.agg_version_quality
            where version_dimension not in ('validator_versions', 'tool_versions')
            group by version_dimension, trace_date
        ),
        facts as (
            select trace_date, count(*) as n, count(correctness) as labelled
            from marts.fct_requests group by trace_date
        )
        select per_dimension.version_dimension, per_dimension.trace_date
        from per_dimension inner join facts using (trace_date)
        where per_dimension.n <> facts.n or per_dimension.labelled <> facts.labelled
    """)
    assert rows == []
    sql = "select distinct version_dimension from marts.agg_version_quality"
    dimensions = {r[0] for r in _rows(marts["con"], sql)}
    assert {"release_sha", "prompt_version", "model_name", "retriever_version",
            "validator_versions", "tool_versions"} <= dimensions


def test_failure_taxonomy_counts_human_labels_and_rule_tags(marts: dict[str, Any]) -> None:
    rows = _rows(marts["con"], """
        select
            (select sum(trace_count) from marts.agg_failure_taxonomy where label_source = 'human'),
            (select count(*) from marts.fct_requests where failure_category is not null),
            (select sum(trace_count) from marts.agg_failure_taxonomy where label_source = 'rule'),
            (select count(*) from (select distinct trace_id, unnest(failure_tags)
                                   from marts.fct_requests)),
            (select count(*) from marts.agg_failure_taxonomy
             where is_known_category and failure_description is null)
    """)[0]
    assert rows[0] == rows[1]
    assert rows[2] == rows[3] > 0
    assert rows[4] == 0


def test_eval_candidates_take_every_thumbs_down_up_to_the_cap(marts: dict[str, Any]) -> None:
    con = marts["con"]
    per_day = _rows(con, """
        select requests.trace_date,
               count(*) as thumbs_down,
               count(candidates.trace_id) as proposed
        from marts.fct_requests as requests
        left join marts.fct_eval_candidates as candidates using (trace_id)
        where requests.has_thumbs_down
        group by requests.trace_date
    """)
    assert per_day, "the lake has no thumbs-down trace"
    for day, thumbs_down, proposed in per_day:
        assert proposed == min(thumbs_down, THUMBS_DOWN_CAP), day
    # reasons, priority and replay fields are filled
    bad = _rows(con, """
        select count(*) from marts.fct_eval_candidates
        where len(candidate_reasons) = 0 or len(sampled_for_reasons) = 0 or priority_score <= 0
           or release_sha is null or not (sample_key >= 0 and sample_key < 1)
    """)[0][0]
    assert bad == 0
    assert _rows(con, """
        select count(*) from marts.fct_eval_candidates where len(artifact_refs) > 0
    """)[0][0] > 0


def test_eval_candidates_are_deterministic_and_respect_a_smaller_cap(
    marts: dict[str, Any],
) -> None:
    # two builds with different histories (incremental, full refresh) propose the same traces
    con = duckdb.connect()
    con.execute(f"attach '{warehouse_db(marts['incremental'])}' as inc (read_only)")
    con.execute(f"attach '{warehouse_db(marts['full'])}' as ful (read_only)")
    try:
        a = con.execute("select trace_id, candidate_reasons, sampled_for_reasons, priority_score "
                        "from inc.marts.fct_eval_candidates order by trace_id").fetchall()
        b = con.execute("select trace_id, candidate_reasons, sampled_for_reasons, priority_score "
                        "from ful.marts.fct_eval_candidates order by trace_id").fetchall()
    finally:
        con.close()
    assert a == b and len(a) > 0

    # a cap of 2 thumbs-down a day: exactly min(n, 2) a day, the lowest sample keys
    copy = Path(marts["root"]) / "capped"
    copy.mkdir()
    shutil.copy(warehouse_db(marts["full"]), warehouse_db(copy))
    # a changed policy is a changed model: incremental by day, it needs a full refresh
    assert_built(dbt_invoke(["run", "--full-refresh", "--select", "fct_eval_candidates"],
                            lake=marts["lake"], warehouse=copy,
                            dbt_vars={"eval_candidate_policy": {"thumbs_down": {"cap": 2}}}))
    capped = duckdb.connect(str(warehouse_db(copy)), read_only=True)
    try:
        rows = capped.execute("""
            with ranked as (
                select trace_date, trace_id,
                       row_number() over (partition by trace_date order by
                           (cast(('0x' || substr(md5(trace_id || 'eval'), 1, 8)) as bigint)
                            / 4294967296.0), trace_id) as rank
                from marts.fct_requests where has_thumbs_down
            )
            select ranked.trace_date, ranked.rank,
                   coalesce(list_contains(candidates.sampled_for_reasons, 'thumbs_down'), false)
            from ranked left join marts.fct_eval_candidates as candidates using (trace_id)
        """).fetchall()
    finally:
        capped.close()
    for day, rank, sampled in rows:
        assert sampled == (rank <= 2), (day, rank)
