"""Attribution by evidence (`detect.evidence`), hour location (`detect.locate`) and the scoring
of what a person reads (`detect.evaluate`: top-1, location error, time to alert)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from tracehouse.detect.attribution import Version, candidates
from tracehouse.detect.changes import Change
from tracehouse.detect.evaluate import DetectionScore, Incident, alert_time, score
from tracehouse.detect.evidence import ranked_causes, release_order, top_group
from tracehouse.detect.locate import refine

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CHANGE = T0 + timedelta(days=4, hours=13)


def _requests(seed: int = 0, *, canary: bool, companion_gap_min: float = 10.0,
              companion_canary: bool = False, late_min: float = 0.0) -> pa.Table:
    """Eight days of traces: a cause (`retriever_version=ret-v4`) that raises the citation
    mismatch rate 4% -> 30%, a harmless `index_version=idx-9` shipped `companion_gap_min`
    minutes before it, a harmless prompt the day before, and a release per deploy. `canary`:
    the cause reaches 15% of the traffic for 6 hours first; `companion_canary`: the index
    reaches 25% for 6 hours first (its own draw)."""
    rng = np.random.default_rng(seed)
    n = 8 * 2400
    t = np.sort(rng.uniform(0, 8 * 86400, n))
    at = (CHANGE - T0).total_seconds() + late_min * 60  # the cause ships `late_min` late
    comp = at - companion_gap_min * 60
    u = rng.random(n)
    u2 = rng.random(n)
    on_cause = (t >= at) & ((t >= at + 6 * 3600) | (u < 0.15) if canary else True)
    on_comp = (t >= comp) & ((t >= comp + 6 * 3600) | (u2 < 0.25) if companion_canary
                             else True)
    prompt_new = t >= at - 86400
    bad = rng.random(n) < np.where(on_cause, 0.30, 0.04)
    release = np.where(on_cause, "rel-c", np.where(prompt_new, "rel-b", "rel-a"))
    return pa.table({
        "event_time": pa.array([T0 + timedelta(seconds=float(x)) for x in t],
                               pa.timestamp("us", tz="UTC")),
        "task_type": np.where(u < 0.5, "qa", "support"),
        "route_name": np.full(n, "standard"),
        "model_name": np.full(n, "nimbus-pro"),
        "retriever_version": np.where(on_cause, "ret-v4", "ret-v3"),
        "index_version": np.where(on_comp, "idx-9", "idx-8"),
        "prompt_version": np.where(prompt_new, "qa-v10", "qa-v9"),
        "release_sha": release,
        "app_version": release,
        "validator_versions": pa.array([["citation_check=cite-v3"]] * n),
        "tool_versions": pa.array([[]] * n, pa.list_(pa.string())),
        "tools_called": pa.array([[]] * n, pa.list_(pa.string())),
        "is_citation_mismatch": bad,
        "has_citation_check": np.ones(n, bool),
    })


def _versions() -> list[Version]:
    at = CHANGE
    return [
        Version("retriever_version", "ret-v4", "all", at),
        Version("index_version", "idx-9", "all", at - timedelta(minutes=10)),
        Version("prompt_version", "qa-v10", "task_type=qa", at - timedelta(days=1)),
        Version("release_sha", "rel-a", "all", T0),
        Version("release_sha", "rel-b", "all", at - timedelta(days=1)),
        Version("release_sha", "rel-c", "all", at),
    ]


def _con(table: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("create schema marts")
    con.register("_t", table)
    con.execute("create table marts.fct_requests as select * from _t")
    return con


def _causes(table: pa.Table, change_at: datetime) -> list[str]:
    versions = _versions()
    cands = candidates("all", change_at, versions, metric="citation_mismatch_rate")
    return ranked_causes(_con(table), "citation_mismatch_rate", "all", change_at,
                         ranked_candidates=cands, releases=release_order(versions))


def test_canary_puts_the_cause_first_with_its_evidence() -> None:
    # the detector dates the step at full rollout, 6 h after the canary started
    causes = _causes(_requests(canary=True), CHANGE + timedelta(hours=6))
    top = top_group(causes)
    assert "retriever_version=ret-v4" in top
    assert "index_version=idx-9" not in top and "prompt_version=qa-v10" not in top
    first = causes[0]
    assert " first seen " in first and "with (n=" in first and "without (n=" in first
    # the canary's own hours support it; the size is read from the surer before/after estimate
    assert first.endswith("| the same hours supports it")
    with_rate = float(first.split(" with (n=")[0].rsplit(" ", 1)[1])
    without_rate = float(first.split(" without (n=")[0].rsplit(" ", 1)[1])
    assert 0.25 < with_rate < 0.35 and 0.02 < without_rate < 0.07


def test_a_harmless_canary_that_shows_no_difference_ranks_last() -> None:
    # the index is the canary (25% for 6 h, from 10 minutes before the cause); the cause ships
    # to everyone at once: in the index's canary hours, traces with and without it are alike
    # (a draw can itself put a 2-sigma difference between the canary traces and the others:
    # of fixture seeds 0-11, seed 3 does, and the index is then "supported"; ~2% of draws do)
    causes = _causes(_requests(1, canary=False, companion_canary=True),
                     CHANGE + timedelta(hours=2))
    assert "retriever_version=ret-v4" in top_group(causes)
    index = next(c for c in causes if c.startswith("index_version=idx-9"))
    assert "in the same hours" in index
    assert causes.index(index) == len(causes) - 1  # below every suspect without such evidence


def test_versions_shipped_together_are_a_tie_and_minutes_apart_are_told_apart() -> None:
    # the cause's release travels with it on every trace: one tied group
    causes = _causes(_requests(canary=False, companion_gap_min=45), CHANGE)
    top = top_group(causes)
    assert {"retriever_version=ret-v4", "release_sha=rel-c"} <= set(top)
    assert "index_version=idx-9" not in top  # 45 minutes of traffic tell them apart
    assert "#1 tied" in causes[0]


def test_without_trace_data_the_prior_order_is_kept() -> None:
    versions = _versions()
    cands = candidates("all", CHANGE, versions, metric="citation_mismatch_rate")
    causes = ranked_causes(None, "citation_mismatch_rate", "all", CHANGE,
                           ranked_candidates=cands, releases=release_order(versions))
    assert causes and "|" not in causes[0]
    assert top_group(causes) == [causes[0].split(" first seen ")[0]]


def _hourly_step(start_hour: int, rate_before: float, rate_after: float, per_hour: float,
                 seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hours = 10 * 24
    periods = np.array([int((T0 + timedelta(hours=h)).timestamp() * 1e6) for h in range(hours)])
    n = rng.poisson(per_hour, hours).astype(float)
    p = np.where(np.arange(hours) >= start_hour, rate_after, rate_before)
    value = rng.binomial(n.astype(int), p) / np.maximum(n, 1)
    return periods, value, n


def test_a_daily_change_is_located_to_the_hour() -> None:
    start = 5 * 24 + 14  # 14:00 on day 5: the daily change is dated day 6
    periods, value, n = _hourly_step(start, 0.04, 0.12, 120)
    c = Change("citation_mismatch_rate", "day", "all", T0 + timedelta(days=6), 0.04, 0.12, 9.0)
    at = refine(c, periods, value, n)
    assert at is not None
    assert abs((at - (T0 + timedelta(hours=start))).total_seconds()) <= 2 * 3600


def test_no_location_without_the_traffic_or_against_the_direction() -> None:
    periods, value, n = _hourly_step(5 * 24 + 14, 0.04, 0.12, 3)
    c = Change("citation_mismatch_rate", "day", "all", T0 + timedelta(days=6), 0.04, 0.12, 9.0)
    assert refine(c, periods, value, n) is None  # 3 requests an hour cannot say it
    periods, value, n = _hourly_step(5 * 24 + 14, 0.12, 0.04, 120)
    assert refine(c, periods, value, n) is None  # the hourly step goes down, the change up


def test_score_counts_top1_location_and_time_to_alert() -> None:
    start = T0 + timedelta(days=4, hours=10)
    inc = Incident("cite-1", start, None, "retriever_version=ret-v4",
                   [("all", {"citation_mismatch_rate": "up"})],
                   full=start + timedelta(hours=5))
    causes = ["index_version=idx-9 first seen x | #1 | r", "retriever_version=ret-v4 first "
              "seen x | #2 | r"]
    cp = {"metric": "citation_mismatch_rate", "segment_key": "all", "direction": "up",
          "grain": "day", "change_at": start + timedelta(hours=7), "score": 12.0,
          "suspected_causes": causes}
    s = score([cp], [inc], lake_end=T0 + timedelta(days=20), series_judged=10, days=20)
    row = s.incidents[0]
    assert row.found and row.cause_listed and not row.attributed  # listed, but not first
    assert row.location_error_hours == 2.0  # two hours after the canary reached everyone
    assert alert_time(cp) == T0 + timedelta(days=7)
    assert row.time_to_alert_hours == (T0 + timedelta(days=7) - start).total_seconds() / 3600
    cp["suspected_causes"] = [causes[0].replace("#1", "#1 tied"),
                              causes[1].replace("#2", "#1 tied")]
    assert score([cp], [inc], lake_end=T0 + timedelta(days=20), series_judged=10,
                 days=20).attribution == 1.0  # the tied group holds the cause


def test_a_change_found_at_both_grains_is_reported_once() -> None:
    from tracehouse.detect.job import merge_grains

    at = T0 + timedelta(days=5)
    day = Change("tool_timeout_rate", "day", "tool_name=billing_lookup", at, 0.01, 0.3, 20.0)
    same = Change("tool_timeout_rate", "hour", "tool_name=billing_lookup",
                  at - timedelta(hours=10), 0.01, 0.3, 20.0)
    broad = Change("tool_timeout_rate", "hour", "all", at - timedelta(hours=10), 0.01, 0.1, 9.0)
    other = Change("tool_timeout_rate", "day", "tool_name=order_status", at, 0.01, 0.3, 20.0)
    kept = merge_grains([day, same, broad, other])
    # the hourly one in the same segment replaces the daily one; the broad early alert and a
    # change in another segment stay
    assert kept == [same, broad, other]


def test_hourly_percentiles_need_their_tail() -> None:
    from tracehouse.detect.job import DetectConfig, Panel, hourly_eligible

    n = np.array([[150.0] * 48, [250.0] * 48, [150.0] * 48, [150.0] * 48])
    panel = Panel("hour", np.arange(48, dtype=np.int64),
                  np.array(["latency_p95_ms", "latency_p95_ms", "latency_p50_ms",
                            "cost_per_request_usd"], dtype=object),
                  np.array(["all"] * 4, dtype=object), np.ones((4, 48)), n)
    # p95 on 150 an hour: 7.5 beyond it, not judged; on 250: judged; p50 on 150: judged;
    # cost is not a fast operational metric
    assert hourly_eligible(panel, DetectConfig()).tolist() == [False, True, True, False]


def test_a_change_point_finds_only_the_incident_it_belongs_to() -> None:
    # a route downgrade is under way when a global reranker degradation starts a day later
    t = T0 + timedelta(days=3, hours=15)
    route = Incident("route_downgrade-1", t, t + timedelta(days=5), "model_name=atlas-small",
                     [("route_name=standard", {"cost_per_request_usd": "down"}),
                      ("model_name=nimbus-pro", {"model_share": "down"})])
    rerank = Incident("reranker_degradation-1", t + timedelta(days=1, hours=19),
                      t + timedelta(days=5), "retriever_version=ret-v4",
                      [("all", {"retrieval_hit_rate": "down", "thumbs_down_rate": "up"})])
    creep = Incident("cost_creep-1", t + timedelta(days=2), t + timedelta(days=9),
                     "retriever_version=ret-v6", [("all", {"cost_per_request_usd": "up"})])
    end = T0 + timedelta(days=20)

    def run(metric: str, segment: str, at: datetime) -> DetectionScore:
        cp = {"metric": metric, "segment_key": segment, "direction": "up", "grain": "day",
              "change_at": at, "score": 9.0, "suspected_causes": []}
        return score([cp], [route, rerank, creep], lake_end=end, series_judged=10, days=20)

    def found(s: DetectionScore, inc: Incident) -> bool:
        return next(i for i in s.incidents if i.name == inc.name).found

    # a thumbs-down rise located 29 hours before the reranker started cannot be its onset
    early = run("thumbs_down_rate", "route_name=standard", t + timedelta(hours=14))
    assert not found(early, rerank)
    assert found(run("thumbs_down_rate", "all", rerank.start + timedelta(hours=3)), rerank)
    # a cost rise in the downgraded route's model: the route downgrade lists that segment, but
    # predicts cost going down; the cost creep predicts it going up, so it owns the change
    rise = run("cost_per_request_usd", "model_name=nimbus-pro", creep.start)
    assert found(rise, creep)
    row = next(i for i in rise.incidents if i.name == creep.name)
    assert row.alert_grain == "day"
    assert rise.time_to_alert_by_grain() == {"day": row.time_to_alert_hours}


def test_an_hour_where_two_versions_ship_is_no_same_hours_evidence() -> None:
    # the harmless index ships at 13:25, the cause at 13:39, both to everyone: within 13:00-14:00
    # the traces with the index include the cause's, those without do not; comparing them
    # would pin the cause's effect on the index
    causes = _causes(_requests(2, canary=False, companion_gap_min=14, late_min=39),
                     CHANGE + timedelta(hours=1))
    assert "retriever_version=ret-v4" in top_group(causes)
    index = next(c for c in causes if c.startswith("index_version=idx-9"))
    assert "in the same hours" not in index and "supports it" not in index
