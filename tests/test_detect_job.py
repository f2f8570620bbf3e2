"""The detection job on synthetic warehouse tables: attribution, dedup, alerts, scoring, I/O."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from tests.detect_synthetic import START, Shift, dim_versions, metric_daily
from tracehouse.contract.schemas import CHANGE_POINTS_SCHEMA
from tracehouse.detect.alerts import ALERTS_SCHEMA, find_alerts, severity
from tracehouse.detect.attribution import suspected_causes, versions_from_rows
from tracehouse.detect.changes import Change
from tracehouse.detect.dedup import deduplicate
from tracehouse.detect.evaluate import evaluate_warehouse, incidents_from_truth, score
from tracehouse.detect.job import (
    DetectConfig,
    detect_tables,
    eligible,
    panel_from_table,
    run_detection,
)
from tracehouse.detect.segments import is_within, overlaps
from tracehouse.publish import publish

DAY = timedelta(days=1)


def _at(day: int, hour: int = 0) -> datetime:
    return START + timedelta(days=day, hours=hour)


def _change(metric: str, seg: str, day: int, before: float, after: float, *,
            contribution: float = math.nan, move: float = math.nan,
            share: float = math.nan, score: float = 10.0,
            causes: list[str] | None = None) -> Change:
    return Change(metric, "day", seg, _at(day), before, after, score, contribution, move, share,
                  causes or [])


# --- segments ------------------------------------------------------------------------------


def test_segments_overlap_unless_one_dimension_differs() -> None:
    assert overlaps("all", "route_name=cheap")
    assert overlaps("route_name=cheap", "task_type=qa")
    assert not overlaps("route_name=cheap", "route_name=standard")
    assert overlaps("route_name=cheap|task_type=qa", "task_type=qa")
    assert is_within("route_name=cheap|task_type=qa", "route_name=cheap")
    assert not is_within("all", "route_name=cheap")


# --- attribution ---------------------------------------------------------------------------


def _versions() -> list:
    return versions_from_rows(dim_versions([
        ("prompt_version", "qa-v10", "task_type=qa", _at(9, 14)),
        ("prompt_version", "qa-v10", "all", _at(9, 14)),
        ("retriever_version", "ret-v4", "all", _at(9, 20)),
        ("release_sha", "abc123", "all", _at(9, 14)),
        ("app_version", "3.12.4", "all", _at(9, 14)),
        ("tool_version", "2.5.0", "tool_name=billing_lookup", _at(10, 9)),
        ("prompt_version", "support-v15", "task_type=support", _at(10, 2)),
        ("index_version", "idx-0050", "all", _at(4, 10)),  # too early
        ("planner_version", "planner-v4", "all", _at(11, 3)),  # after the window
    ]))


def test_attribution_ranks_same_segment_then_all_then_distance_generic_last() -> None:
    causes = suspected_causes("task_type=qa", _at(10), _versions())
    names = [c.split(" first seen ")[0] for c in causes]
    assert names[0] == "prompt_version=qa-v10"  # same segment
    assert names[1] == "retriever_version=ret-v4"  # overall, 4 h before the change
    assert "prompt_version=support-v15" not in names  # disjoint scope
    assert "index_version=idx-0050" not in names and "planner_version=planner-v4" not in names
    # within a period of the change: specific components (same segment, then all, then other
    # overlapping scopes) before whole-deploy ids
    assert names == ["prompt_version=qa-v10", "retriever_version=ret-v4", "tool_version=2.5.0",
                     "app_version=3.12.4", "release_sha=abc123"]
    assert causes[0] == "prompt_version=qa-v10 first seen 2026-01-10T14:00Z"
    assert len(names) == len(set(names))  # qa-v10 named once though it has two scopes


def test_attribution_prefers_the_stage_that_produces_the_metric() -> None:
    # one deploy ships a planner and a policy validator: a guardrail block rate is produced by
    # the validators, so the validator ranks first although the planner's scope is `all`
    rows = versions_from_rows(dim_versions([
        ("planner_version", "planner-v4", "all", _at(9, 14)),
        ("validator_version", "policy-v8", "validator_name=policy", _at(9, 14)),
        ("release_sha", "abc123", "all", _at(9, 14)),
        ("retriever_version", "ret-v4", "all", _at(7, 14)),  # a period further away
    ]))

    def names(metric: str | None, seg: str = "task_type=billing") -> list[str]:
        return [c.split(" first seen ")[0]
                for c in suspected_causes(seg, _at(10), rows, metric=metric)]

    assert names("guardrail_block_rate") == ["validator_version=policy-v8",
                                             "planner_version=planner-v4", "release_sha=abc123"]
    assert names(None)[0] == "planner_version=planner-v4"  # no prior: scope decides
    assert names("tool_call_rate")[0] == "planner_version=planner-v4"
    # latency: the stage of the span_type segment
    assert names("latency_p95_ms", "span_type=postprocess")[0] == "validator_version=policy-v8"
    # the prior never beats a whole period of distance
    assert names("retrieval_hit_rate")[-1] == "release_sha=abc123"
    assert "retriever_version=ret-v4" not in names("retrieval_hit_rate")


def test_attribution_overlapping_scopes_and_limit() -> None:
    causes = suspected_causes("task_type=billing", _at(10), _versions())
    names = [c.split(" first seen ")[0] for c in causes]
    assert "tool_version=2.5.0" in names  # tool_name scope overlaps a task type
    assert names.index("retriever_version=ret-v4") < names.index("tool_version=2.5.0")
    assert len(suspected_causes("all", _at(10), _versions(), limit=2)) == 2
    assert suspected_causes("all", _at(30), _versions()) == []


# --- dedup ---------------------------------------------------------------------------------


def test_dedup_keeps_the_segment_that_drives_a_local_change() -> None:
    m = "required_tool_missing_rate"
    changes = [
        _change(m, "all", 20, 0.05, 0.12, contribution=0.07, move=0.07, share=1.0),
        _change(m, "route_name=standard", 20, 0.05, 0.20, contribution=0.066, move=0.07,
                share=0.45),
        _change(m, "task_type=support", 21, 0.05, 0.10, contribution=0.02, move=0.07,
                share=0.34),
        _change(m, "task_type=qa", 20, 0.05, 0.11, contribution=0.015, move=0.07, share=0.24),
        _change(m, "route_name=standard", 27, 0.20, 0.05, contribution=-0.066, move=-0.07,
                share=0.45),  # the recovery: its own cluster
        _change("error_rate", "all", 20, 0.02, 0.04, contribution=0.02, move=0.02, share=1.0),
    ]
    kept = deduplicate(changes)
    got = [(c.metric, c.segment_key, c.change_at) for c in kept]
    assert got == [
        ("error_rate", "all", _at(20)),
        (m, "route_name=standard", _at(20)),
        (m, "route_name=standard", _at(27)),
    ]


def test_dedup_keeps_all_for_a_global_change() -> None:
    m = "citation_mismatch_rate"
    shares = {"task_type=support": 0.45, "task_type=qa": 0.32, "task_type=billing": 0.23}
    changes = [_change(m, "all", 12, 0.04, 0.08, contribution=0.04, move=0.04, share=1.0)]
    changes += [
        _change(m, seg, 12, 0.04, 0.08, contribution=0.04 * s, move=0.04, share=s)
        for seg, s in shares.items()
    ]
    kept = deduplicate(changes)
    assert [(c.segment_key) for c in kept] == ["all"]


def test_dedup_model_share_segments_are_distinct_and_replace_request_count() -> None:
    changes = [
        _change("model_share", "model_name=nimbus-pro", 15, 0.45, 0.2),
        _change("model_share", "model_name=nimbus-mini", 15, 0.3, 0.55),
        _change("model_share", "model_name=atlas-small", 15, 0.01, 0.2),
        _change("request_count", "model_name=nimbus-mini", 15, 600, 1100),
        _change("request_count", "model_name=atlas-small", 20, 20, 400),  # not near: kept
        _change("latency_p95_ms", "span_type=tool_call", 15, 300, 900),
        _change("latency_p95_ms", "span_type=retrieval", 15, 80, 200),
    ]
    kept = {(c.metric, c.segment_key) for c in deduplicate(changes)}
    assert ("request_count", "model_name=nimbus-mini") not in kept
    assert ("request_count", "model_name=atlas-small") in kept
    assert {("model_share", "model_name=nimbus-mini"), ("model_share", "model_name=atlas-small"),
            ("model_share", "model_name=nimbus-pro")} <= kept
    assert {("latency_p95_ms", "span_type=tool_call"),
            ("latency_p95_ms", "span_type=retrieval")} <= kept


# --- alerts --------------------------------------------------------------------------------


def test_alert_rules() -> None:
    rollout = "index_version=idx-0042 first seen 2026-01-10T14:00Z"
    changes = [
        _change("required_tool_missing_rate", "route_name=standard", 20, 0.05, 0.2, share=0.45),
        _change("retrieval_zero_result_rate", "all", 10, 0.01, 0.05, share=1.0,
                causes=[rollout]),
        _change("context_truncation_rate", "task_type=qa", 11, 0.02, 0.2, share=0.24,
                causes=["prompt_version=qa-v10 first seen 2026-01-11T09:00Z"]),
        _change("model_share", "model_name=nimbus-mini", 20, 0.3, 0.55),
        _change("task_success_rate", "route_name=standard", 21, 0.8, 0.7, share=0.45),
        _change("citation_mismatch_rate", "all", 12, 0.04, 0.08, share=1.0),
        _change("latency_p95_ms", "span_type=tool_call", 14, 400, 1200),
        _change("tool_timeout_rate", "tool_name=billing_lookup", 14, 0.01, 0.2, share=0.3),
        _change("cost_per_successful_task_usd", "all", 25, 0.010, 0.012, share=1.0),
        _change("cost_per_successful_task_usd", "route_name=cheap", 25, 0.010, 0.0105,
                share=0.3),  # +5%: not material
        _change("error_rate", "all", 3, 0.02, 0.03, share=1.0),  # no rule
    ]
    traffic = {"model_name=nimbus-mini": 0.3}
    cost = {"all": 0.004, "model_name=nimbus-mini": 0.0005, "model_name=nimbus-pro": 0.005}
    alerts = find_alerts(changes, traffic_share=traffic, model_cost=cost)
    by_rule = {a.rule: a for a in alerts}
    assert set(by_rule) == {
        "no_tool_for_required", "retrieval_drop", "truncation_after_template_change",
        "route_shift_to_smaller_model", "citation_mismatch_rising", "tool_p95_rising",
        "cost_per_successful_task_rising",
    }
    assert len(alerts) == 7
    assert "after index rollout index_version=idx-0042" in by_rule["retrieval_drop"].message
    assert "template change prompt_version=qa-v10" in by_rule[
        "truncation_after_template_change"].message
    assert "tool billing_lookup" in by_rule["tool_p95_rising"].message
    shift = by_rule["route_shift_to_smaller_model"].message
    assert "; with task_success_rate" in shift or "; with required_tool_missing_rate" in shift
    assert by_rule["no_tool_for_required"].severity == "critical"
    assert by_rule["cost_per_successful_task_rising"].severity == "info"
    assert all("\n" not in a.message for a in alerts)
    # no worse quality nearby: a shift to a cheaper model alone is not an alert
    calm = find_alerts(changes[3:4], model_cost=cost)
    assert calm == []


def test_severity_thresholds() -> None:
    assert severity(0.6, 0.3) == "critical"
    assert severity(-0.6, 0.1) == "warning"
    assert severity(0.25, 0.1) == "warning"
    assert severity(0.25, 0.01) == "info"
    assert severity(math.nan, 1.0) == "info"


# --- scoring -------------------------------------------------------------------------------

TRUTH = [
    {"name": "route_downgrade-1", "start_time": "2026-01-20T15:00:00Z",
     "end_time": "2026-01-26T10:00:00Z", "segment": "route_name=standard",
     "cause": "route_policy_version=rp-v6",
     "metrics": ["required_tool_missing_rate", "tool_call_rate"],
     "direction": {"required_tool_missing_rate": "up", "tool_call_rate": "down"}},
    {"name": "route_downgrade-1.model_share", "start_time": "2026-01-20T15:00:00Z",
     "end_time": "2026-01-26T10:00:00Z", "segment": "model_name=nimbus-pro",
     "cause": "route_policy_version=rp-v6", "metrics": ["model_share"],
     "direction": {"model_share": "down"}},
    {"name": "tool_slowdown-1", "start_time": "2026-01-08T03:00:00Z", "end_time": None,
     "segment": "tool_name=billing_lookup", "cause": None,
     "metrics": ["tool_timeout_rate"], "direction": {"tool_timeout_rate": "up"}},
    {"name": "citation_mismatch-1", "start_time": "2026-01-12T10:00:00Z",
     "end_time": "2026-01-18T10:00:00Z", "segment": "all", "cause": "validator_version=cite-v4",
     "metrics": ["citation_mismatch_rate"], "direction": {"citation_mismatch_rate": "up"}},
]


def _cp(metric: str, seg: str, day: int, direction: str, causes: list[str] | None = None) -> dict:
    return {"metric": metric, "grain": "day", "segment_key": seg, "change_at": _at(day),
            "direction": direction, "suspected_causes": causes or []}


def test_score_definitions() -> None:
    incidents = incidents_from_truth(TRUTH)
    assert [i.name for i in incidents] == ["tool_slowdown-1", "citation_mismatch-1",
                                          "route_downgrade-1"]
    cps = [
        _cp("required_tool_missing_rate", "route_name=standard", 20, "up",
            ["model_name=nimbus-mini first seen 2026-01-20T15:00Z",
             "route_policy_version=rp-v6 first seen 2026-01-20T15:00Z"]),
        _cp("model_share", "model_name=nimbus-mini", 20, "up"),  # overlaps route_name=standard
        _cp("required_tool_missing_rate", "route_name=standard", 25, "down"),  # recovery
        _cp("tool_timeout_rate", "tool_name=billing_lookup", 7, "up"),
        _cp("citation_mismatch_rate", "all", 13, "up"),  # 2 days late: belongs, not found
        _cp("error_rate", "all", 3, "up"),  # false
        _cp("tool_timeout_rate", "tool_name=order_status", 9, "up"),  # disjoint segment: false
    ]
    s = score(cps, incidents, lake_end=_at(35), series_judged=100, days=35)
    assert s.recall == pytest.approx(2 / 3)
    assert s.precision == pytest.approx(5 / 7)
    # top-1: the route downgrade's cause is listed, but second (citation_mismatch was not
    # found, so it is not judged)
    assert s.attribution == 0.0
    assert s.cause_listed == 1.0
    by_name = {i.name: i for i in s.incidents}
    assert by_name["route_downgrade-1"].delay_hours == pytest.approx(9.0)
    assert by_name["route_downgrade-1"].change_points == 3
    assert by_name["tool_slowdown-1"].attributed is None
    assert s.median_delay_hours == pytest.approx((9.0 - 3.0) / 2)
    assert s.false_per_series_month == pytest.approx(2 / 100 / (35 / 30))
    control = score(cps[5:], [], lake_end=_at(35), series_judged=100, days=35)
    assert math.isnan(control.recall) and control.precision == 0.0
    assert json.dumps(s.as_dict(), default=str)


# --- the job end to end on synthetic tables ------------------------------------------------


def test_small_and_short_series_are_not_judged() -> None:
    table = metric_daily(days=42, traffic=2000.0, seed=3)
    panel = panel_from_table(table, "day")
    mask = eligible(panel, DetectConfig(min_median_n=300))
    judged = {(m, s) for m, s, ok in zip(panel.metrics, panel.segments, mask, strict=True) if ok}
    assert ("error_rate", "all") in judged
    assert ("error_rate", "task_type=extraction") not in judged  # ~ 220 traces a day
    short = panel_from_table(metric_daily(days=10, seed=3), "day")
    assert not eligible(short, DetectConfig()).any()


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_no_change_points_without_incidents(seed: int) -> None:
    table = metric_daily(days=42, traffic=2000.0, seed=seed)
    result = detect_tables([panel_from_table(table, "day")], [], "r")
    assert result.change_points.num_rows == 0, result.change_points.to_pylist()


def test_missing_days_are_missing_not_zero() -> None:
    table = metric_daily(days=42, traffic=2000.0, seed=5)
    rows = table.to_pylist()
    for r in rows:  # an outage: no traffic on days 20-21
        if r["period_start"] in (_at(20), _at(21)):
            r["value"], r["n"] = None, 0
    result = detect_tables([panel_from_table(pa.Table.from_pylist(rows, table.schema), "day")],
                           [], "r")
    assert [r for r in result.change_points.to_pylist() if r["metric"] != "request_count"] == []


def _warehouse(tmp_path: Path, table: pa.Table, versions: list[dict]) -> Path:
    wh = tmp_path / "warehouse"
    wh.mkdir()
    con = duckdb.connect(str(wh / "tracehouse.duckdb"))
    con.execute("create schema marts")
    con.register("md", table)
    con.execute("create table marts.metric_daily as select * from md")
    vt = pa.Table.from_pylist(versions)
    con.register("dv", vt)
    con.execute("create table marts.dim_versions as select * from dv")
    con.close()
    return wh


def test_job_writes_publishes_and_scores(tmp_path: Path) -> None:
    table = metric_daily(
        days=42, traffic=2000.0, seed=21,
        shifts=(Shift("required_tool_missing_rate", 20, 27, 0.2, route="standard"),
                Shift("citation_mismatch_rate", 12, 42, 0.08)),
    )
    versions = dim_versions([
        ("route_policy_version", "rp-v6", "all", _at(19, 15)),
        ("route_policy_version", "rp-v7", "all", _at(26, 16)),
        ("validator_version", "cite-v4", "validator_name=citation_check", _at(11, 10)),
        ("release_sha", "abc", "all", _at(19, 15)),
    ])
    wh = _warehouse(tmp_path, table, versions)
    result = run_detection(wh, "run-1")
    assert result.series_checked > 0
    publish(wh, "run-1")
    cps = duckdb.sql(
        f"select * from read_parquet('{wh / 'marts' / 'change_points.parquet'}') order by change_at"
    ).to_arrow_table()
    assert cps.schema.names == CHANGE_POINTS_SCHEMA.names
    rows = cps.to_pylist()
    assert [(r["metric"], r["segment_key"].split("=")[0], r["change_at"].date(), r["direction"])
            for r in rows] == [
        ("citation_mismatch_rate", "all", _at(12).date(), "up"),
        ("required_tool_missing_rate", rows[1]["segment_key"].split("=")[0], _at(20).date(), "up"),
        ("required_tool_missing_rate", rows[2]["segment_key"].split("=")[0], _at(27).date(),
         "down"),
    ]
    assert rows[1]["segment_key"] in ("route_name=standard", "model_name=nimbus-pro")
    assert rows[1]["suspected_causes"][0].startswith("route_policy_version=rp-v6 first seen")
    assert rows[0]["suspected_causes"] == ["validator_version=cite-v4 first seen 2026-01-12T10:00Z"]
    assert all(r["detected_by"] == "pelt-mbic-robust" and r["run_id"] == "run-1" for r in rows)
    alerts = duckdb.sql(
        f"select * from read_parquet('{wh / 'marts' / 'alerts.parquet'}')").to_arrow_table()
    assert alerts.schema.names == ALERTS_SCHEMA.names
    assert {"no_tool_for_required", "citation_mismatch_rising"} == set(
        alerts.column("rule").to_pylist())
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps([
        {"name": "route_downgrade-1", "start_time": "2026-01-21T00:00:00Z",
         "end_time": "2026-01-28T00:00:00Z", "segment": "route_name=standard",
         "cause": "route_policy_version=rp-v6", "metrics": ["required_tool_missing_rate"],
         "direction": {"required_tool_missing_rate": "up"}},
        {"name": "citation_mismatch-1", "start_time": "2026-01-13T00:00:00Z", "end_time": None,
         "segment": "all", "cause": "validator_version=cite-v4",
         "metrics": ["citation_mismatch_rate"], "direction": {"citation_mismatch_rate": "up"}},
    ]))
    s = evaluate_warehouse(wh, truth)
    assert (s.recall, s.precision, s.attribution) == (1.0, 1.0, 1.0)
    assert s.series_judged == result.series_checked
    assert s.days == 42


def test_job_without_series_is_skipped(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    duckdb.connect(str(wh / "tracehouse.duckdb")).close()
    result = run_detection(wh, "r")
    assert result.skipped_reason and result.change_points.num_rows == 0


def test_panel_pivot_is_dense_and_aligned() -> None:
    table = metric_daily(days=15, seed=1)
    panel = panel_from_table(table, "day")
    assert panel.value.shape == (panel.metrics.size, 15)
    r = panel.index_of()[("request_count", "all")]
    assert np.all(panel.value[r] == panel.n[r])
    assert panel.period_at(0) == START and panel.period_at(14) == START + 14 * DAY
    assert panel.periods.dtype == np.int64
    assert datetime(2026, 1, 1, tzinfo=UTC) == panel.period_at(0)
