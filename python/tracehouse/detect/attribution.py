"""Suspected causes of a change: the versions first seen close to it, in its segment or overall.

Rule (documented in docs/detection.md):

* A candidate is a row of `marts.dim_versions` whose `first_seen_at` falls in the window
  `[change_at - 2 periods, change_at + 1 period)`. `change_at` is the start of the first period
  of the new regime, so for daily series this covers a deploy on the day before, on the day
  of, or (when a late-evening deploy only moved the next day) two days before the change.
* Its scope must overlap the change's segment: the same segment, `all`, or a segment that can
  share traffic with it (`validator_name=policy` for a change in `task_type=support`).
* Ranking: first by distance between `first_seen_at` and `change_at` in whole periods (within
  one period of the change before one to two periods away); then the **pipeline stage** the
  metric measures (`STAGE_DIMENSIONS`: a guardrail block rate is produced by the validators, a
  retrieval hit rate by the retriever, index, embedding and reranker, a stage's latency by that
  stage's component): versions of those components before other specific components, and
  whole-deploy identifiers (`release_sha`, `app_version`, which change at every deploy) last;
  then same segment, then `all`, then other overlapping scopes; then by exact distance; then by
  name. The stage prior is the article's causality chain (a version can only move a metric
  through the stage that uses it); it only orders versions first seen equally close to the
  change, i.e. the components of one deploy. A version listed under several scopes is named
  once, at its best rank. At most `MAX_CAUSES` (6) are listed: about one deploy and a half.
* Each cause reads `<version_dimension>=<version_value> first seen <first_seen_at, ISO UTC>`,
  e.g. `prompt_version=sup-v6 first seen 2026-01-14T06:00Z`; "first seen" is the time of the
  first request in that scope that carried the version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tracehouse.detect.segments import ALL, overlaps

#: Version dimensions that change at every deploy: named only after specific components.
GENERIC_DIMENSIONS = frozenset({"release_sha", "app_version", "release", "deployment_id"})
#: Version dimensions of the pipeline stage(s) that produce each metric (the domain prior).
_RETRIEVAL = frozenset({"retriever_version", "index_version", "embedding_version",
                        "reranker_version", "rewrite_strategy_version"})
_PROMPT = frozenset({"prompt_version", "system_prompt_version", "context_policy_version"})
_ROUTING = frozenset({"model_name", "route_policy_version"})
_VALIDATORS = frozenset({"validator_version", "policy_block_version"})
_TOOLS = frozenset({"tool_version"})
STAGE_DIMENSIONS: dict[str, frozenset[str]] = {
    "guardrail_block_rate": _VALIDATORS,
    "citation_mismatch_rate": _VALIDATORS | _PROMPT | _ROUTING,
    "retrieval_hit_rate": _RETRIEVAL,
    "retrieval_zero_result_rate": _RETRIEVAL,
    "retrieval_score_mean": _RETRIEVAL,
    "context_truncation_rate": _PROMPT,
    "required_tool_missing_rate": _ROUTING | _PROMPT | frozenset({"planner_version"}),
    "tool_call_rate": _ROUTING | _PROMPT | frozenset({"planner_version"}),
    "tool_error_rate": _TOOLS,
    "tool_timeout_rate": _TOOLS,
    "cost_per_request_usd": _ROUTING | _RETRIEVAL | _PROMPT,
    "cost_per_successful_task_usd": _ROUTING | _RETRIEVAL | _PROMPT,
    "cost_usd_total": _ROUTING | _RETRIEVAL | _PROMPT,
    "model_share": _ROUTING,
    "format_parse_failure_rate": _VALIDATORS | _PROMPT | _ROUTING,
}
#: Latency in a `span_type=` segment: the components of that stage.
SPAN_STAGE_DIMENSIONS: dict[str, frozenset[str]] = {
    "classify": frozenset({"classifier_version"}),
    "query_rewrite": frozenset({"rewrite_strategy_version"}),
    "embedding": frozenset({"embedding_version"}),
    "retrieval": frozenset({"retriever_version", "index_version", "embedding_version"}),
    "rerank": frozenset({"reranker_version", "retriever_version", "index_version"}),
    "context_assembly": frozenset({"context_policy_version"}),
    "model_routing": frozenset({"route_policy_version"}),
    "llm": _ROUTING | _PROMPT,
    "tool_planning": _TOOLS | frozenset({"planner_version"}),
    "tool_call": _TOOLS,
    "postprocess": _VALIDATORS,
}
LATENCY_METRICS = frozenset({"latency_p50_ms", "latency_p95_ms"})


def stage_dimensions(metric: str | None, segment_key: str) -> frozenset[str]:
    """Return the version dimensions of the stage(s) that produce `metric` in this segment."""
    if metric is None:
        return frozenset()
    if metric in LATENCY_METRICS:
        for part in segment_key.split("|"):
            dim, _, value = part.partition("=")
            if dim == "span_type":
                return SPAN_STAGE_DIMENSIONS.get(value, frozenset())
            if dim == "tool_name":
                return _TOOLS
        return frozenset()
    return STAGE_DIMENSIONS.get(metric, frozenset())


def _stage_rank(dimension: str, stage: frozenset[str]) -> int:
    """0: a component of the metric's stage; 1: another specific component; 2: whole deploy."""
    if dimension in GENERIC_DIMENSIONS:
        return 2
    return 0 if dimension in stage else 1


#: At most this many causes per change.
MAX_CAUSES = 6
#: Window around `change_at`, in periods of the series' grain.
PERIODS_BEFORE = 2
PERIODS_AFTER = 1
GRAIN_PERIOD = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


@dataclass(frozen=True)
class Version:
    """One row of `dim_versions` that attribution uses."""

    dimension: str
    value: str
    scope_key: str
    first_seen_at: datetime


def versions_from_rows(rows: Sequence[dict[str, Any]]) -> list[Version]:
    """Return `Version`s from `dim_versions` rows (dicts with the mart's column names)."""
    out = []
    for r in rows:
        seen = r.get("first_seen_at")
        if seen is None or r.get("version_value") is None:
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        out.append(
            Version(
                dimension=str(r["version_dimension"]),
                value=str(r["version_value"]),
                scope_key=str(r.get("scope_key") or ALL),
                first_seen_at=seen,
            )
        )
    return out


def format_cause(version: Version) -> str:
    """Return `dim=value first seen YYYY-MM-DDTHH:MMZ`."""
    when = version.first_seen_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return f"{version.dimension}={version.value} first seen {when}"


def cause_name(cause: str) -> str:
    """Return the `dim=value` part of a formatted cause."""
    return cause.split(" first seen ", 1)[0]


def _scope_rank(scope: str, segment: str) -> int | None:
    if scope == segment:
        return 0
    if scope == ALL:
        return 1
    return 2 if overlaps(scope, segment) else None


def prior_key(v: Version, segment_key: str, change_at: datetime, stage: frozenset[str],
              period: timedelta) -> tuple[int, int, int, float, str, str] | None:
    """The timing-and-stage prior's sort key of a candidate (None: its scope cannot apply)."""
    rank = _scope_rank(v.scope_key, segment_key)
    if rank is None:
        return None
    distance = abs((v.first_seen_at - change_at).total_seconds())
    bucket = int(distance // period.total_seconds())
    return (bucket, _stage_rank(v.dimension, stage), rank, distance, v.dimension, v.value)


def candidates(
    segment_key: str,
    change_at: datetime,
    versions: Sequence[Version],
    *,
    grain: str = "day",
    metric: str | None = None,
) -> list[tuple[tuple[int, int, int, float, str, str], Version]]:
    """Return the versions first seen near the change in an overlapping scope, in prior order.

    A version listed under several scopes appears once, at its best prior rank.
    """
    stage = stage_dimensions(metric, segment_key)
    period = GRAIN_PERIOD.get(grain, timedelta(days=1))
    if change_at.tzinfo is None:
        change_at = change_at.replace(tzinfo=UTC)
    lo, hi = change_at - PERIODS_BEFORE * period, change_at + PERIODS_AFTER * period
    best: dict[tuple[str, str], tuple[tuple[int, int, int, float, str, str], Version]] = {}
    for v in versions:
        if not lo <= v.first_seen_at < hi:
            continue
        key = prior_key(v, segment_key, change_at, stage, period)
        if key is None:
            continue
        name = (v.dimension, v.value)
        if name not in best or key < best[name][0]:
            best[name] = (key, v)
    return sorted(best.values(), key=lambda kv: kv[0])


def suspected_causes(
    segment_key: str,
    change_at: datetime,
    versions: Sequence[Version],
    *,
    grain: str = "day",
    limit: int = MAX_CAUSES,
    metric: str | None = None,
) -> list[str]:
    """Return the suspected causes of a change in `segment_key` starting at `change_at`, in the
    timing-and-stage prior's order (the job re-ranks them by evidence: `detect.evidence`).

    With `metric`, versions of the stage that produces it rank first among equally close ones.
    """
    ranked = candidates(segment_key, change_at, versions, grain=grain, metric=metric)
    return [format_cause(v) for _, v in ranked[:limit]]


def attribute(
    changes: Sequence[tuple[str, datetime, str]], versions: Sequence[Version],
    metrics: Sequence[str | None] | None = None,
) -> list[list[str]]:
    """Return the suspected causes of each `(segment_key, change_at, grain)` (of `metrics`)."""
    ms = list(metrics) if metrics is not None else [None] * len(changes)
    return [suspected_causes(s, t, versions, grain=g, metric=m)
            for (s, t, g), m in zip(changes, ms, strict=True)]
