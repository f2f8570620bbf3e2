"""The alert rules: actionable readings of the change points, as the `alerts` mart.

Each rule reads the distinct changes (after dedup, with suspected causes) and raises at most one
alert per change it matches. The rules (docs/detection.md explains each):

* `no_tool_for_required`: `required_tool_missing_rate` up.
* `retrieval_drop`: `retrieval_zero_result_rate` up, `retrieval_hit_rate` or
  `retrieval_score_mean` down; "after index rollout" when a retrieval component version
  (index, retriever, embedding, reranker) is a suspected cause.
* `truncation_after_template_change`: `context_truncation_rate` up; names the template change
  (`prompt_version`, `context_policy_version`) when one is a suspected cause.
* `route_shift_to_smaller_model`: `model_share` up for a model cheaper per request than the
  average (or down for a dearer one) while a quality metric worsens in an overlapping segment
  within 2 days.
* `citation_mismatch_rising`: `citation_mismatch_rate` up.
* `tool_p95_rising`: `latency_p95_ms` up in a `tool_name=` segment, or in `span_type=tool_call`,
  localised to the tool whose timeouts or errors rose at the same time.
* `cost_per_successful_task_rising`: `cost_per_successful_task_usd` up by at least 10%.

Severity from the size of the move and the traffic it touches (`share`, the segment's share of
the metric's denominator): `critical` if |relative change| >= 50% on >= 20% of traffic,
`warning` if >= 20% on >= 5% of traffic or >= 50% on any, else `info`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa

from tracehouse.contract.schemas import TIMESTAMP
from tracehouse.detect.attribution import cause_name
from tracehouse.detect.changes import Change
from tracehouse.detect.evidence import top_group
from tracehouse.detect.segments import ALL, overlaps, parse_segment

ALERTS_SCHEMA = pa.schema(
    [
        pa.field("alert_id", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("metric", pa.string()),
        pa.field("grain", pa.string()),
        pa.field("segment_key", pa.string()),
        pa.field("change_at", TIMESTAMP),
        pa.field("value_before", pa.float64()),
        pa.field("value_after", pa.float64()),
        pa.field("relative_change", pa.float64()),
        pa.field("traffic_share", pa.float64()),
        pa.field("message", pa.string()),
        pa.field("suspected_causes", pa.list_(pa.string())),
        pa.field("run_id", pa.string()),
    ]
)
SEVERITIES = ("critical", "warning", "info")
RETRIEVAL_DIMS = ("index_version", "retriever_version", "embedding_version", "reranker_version")
TEMPLATE_DIMS = ("prompt_version", "context_policy_version", "template_version")
QUALITY_WORSE = {
    "task_success_rate": "down",
    "thumbs_down_rate": "up",
    "escalation_rate": "up",
    "regenerate_rate": "up",
    "required_tool_missing_rate": "up",
    "error_rate": "up",
}
TOOL_TROUBLE = ("tool_timeout_rate", "tool_error_rate")
NEAR = timedelta(days=2)
MATERIAL_COST_RISE = 0.10


@dataclass(frozen=True)
class Alert:
    """One alert: which rule, how bad, and a one-line message."""

    rule: str
    severity: str
    change: Change
    traffic_share: float
    message: str


def severity(relative_change: float, share: float) -> str:
    """Return `critical`, `warning` or `info` from the move's size and its traffic share."""
    m = abs(relative_change) if math.isfinite(relative_change) else 0.0
    s = share if math.isfinite(share) else 0.0
    if m >= 0.5 and s >= 0.2:
        return "critical"
    if (m >= 0.2 and s >= 0.05) or m >= 0.5:
        return "warning"
    return "info"


def format_value(metric: str, value: float) -> str:
    """Return a value in the metric's natural unit."""
    if not math.isfinite(value):
        return "n/a"
    if metric.endswith("_rate") or metric == "model_share":
        return f"{value:.1%}"
    if metric.endswith("_usd"):
        return f"${value:.4f}"
    if metric.endswith("_ms"):
        return f"{value:,.0f} ms"
    if metric == "request_count":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def describe(c: Change) -> str:
    """Return `metric before -> after (+x%) in segment from <date>`."""
    rel = c.relative_change
    pct = f" ({rel:+.0%})" if math.isfinite(rel) else ""
    at_midnight = (c.change_at.hour, c.change_at.minute) == (0, 0)
    located = c.grain != "day" or not at_midnight  # a daily change located to the hour
    when = c.change_at.strftime("%Y-%m-%dT%H:%MZ" if located else "%Y-%m-%d")
    return (
        f"{c.metric} {format_value(c.metric, c.value_before)} -> "
        f"{format_value(c.metric, c.value_after)}{pct} in {c.segment_key} from {when}"
    )


def _cause_with(c: Change, dims: Sequence[str]) -> str | None:
    """The first suspect (or one tied with it) of one of these dimensions, if any."""
    top = set(top_group(c.suspected_causes))
    for cause in c.suspected_causes:
        if cause_name(cause) in top and cause_name(cause).split("=", 1)[0] in dims:
            return cause
    return None


def _suffix(c: Change) -> str:
    return f"; suspected: {c.suspected_causes[0]}" if c.suspected_causes else ""


def _near(a: Change, b: Change) -> bool:
    return abs(a.change_at - b.change_at) <= NEAR


def _share(c: Change, traffic: dict[str, float]) -> float:
    if math.isfinite(c.share):
        return c.share
    if c.segment_key == ALL:
        return 1.0
    return traffic.get(c.segment_key, math.nan)


def _tool_rule(c: Change, changes: Sequence[Change]) -> tuple[str, str] | None:
    seg = parse_segment(c.segment_key)
    if "tool_name" in seg:
        return "tool_p95_rising", f"p95 latency of tool {seg['tool_name']} rising: {describe(c)}"
    if seg.get("span_type") != "tool_call":
        return None
    tools = sorted({
        parse_segment(q.segment_key)["tool_name"] for q in changes
        if q.metric in TOOL_TROUBLE and q.direction == "up" and _near(q, c)
        and "tool_name" in parse_segment(q.segment_key)
    })
    if len(tools) == 1:
        return ("tool_p95_rising",
                f"p95 latency of tool {tools[0]} rising (its timeouts/errors rose too): "
                f"{describe(c)}")
    where = f"tools {', '.join(tools)}" if tools else "tool calls (not localised to a tool)"
    return "tool_p95_rising", f"p95 latency of {where} rising: {describe(c)}"


def _route_rule(
    c: Change, changes: Sequence[Change], model_cost: dict[str, float]
) -> tuple[str, str] | None:
    avg = model_cost.get(ALL, math.nan)
    cost = model_cost.get(c.segment_key, math.nan)
    if not (math.isfinite(avg) and math.isfinite(cost)):
        return None
    smaller = (c.direction == "up" and cost < avg) or (c.direction == "down" and cost > avg)
    worse = [
        q for q in changes
        if QUALITY_WORSE.get(q.metric) == q.direction and _near(q, c)
        and overlaps(q.segment_key, c.segment_key)
    ]
    if not (smaller and worse):
        return None
    w = max(worse, key=lambda q: q.score)
    return ("route_shift_to_smaller_model",
            f"Traffic shifting toward smaller models with worse quality: {describe(c)}; "
            f"with {describe(w)}")


def _rule(
    c: Change, changes: Sequence[Change], model_cost: dict[str, float]
) -> tuple[str, str] | None:
    """Return (rule, message) if a rule matches this change (the message without causes)."""
    m, d = c.metric, c.direction
    if m == "required_tool_missing_rate" and d == "up":
        return ("no_tool_for_required",
                f"No-tool answers rising where a tool is required: {describe(c)}")
    if (m == "retrieval_zero_result_rate" and d == "up") or (
        m in ("retrieval_hit_rate", "retrieval_score_mean") and d == "down"
    ):
        rollout = _cause_with(c, RETRIEVAL_DIMS)
        after = f" after index rollout {cause_name(rollout)}" if rollout else ""
        return "retrieval_drop", f"Retrieval results dropping{after}: {describe(c)}"
    if m == "context_truncation_rate" and d == "up":
        template = _cause_with(c, TEMPLATE_DIMS)
        after = f" after template change {cause_name(template)}" if template else ""
        return "truncation_after_template_change", f"Prompt truncation rising{after}: {describe(c)}"
    if m == "model_share" and "model_name" in parse_segment(c.segment_key):
        return _route_rule(c, changes, model_cost)
    if m == "citation_mismatch_rate" and d == "up":
        return "citation_mismatch_rising", f"Citation mismatch rising: {describe(c)}"
    if m == "latency_p95_ms" and d == "up":
        return _tool_rule(c, changes)
    material = c.relative_change >= MATERIAL_COST_RISE
    if m == "cost_per_successful_task_usd" and d == "up" and material:
        return "cost_per_successful_task_rising", f"Cost per successful task rising: {describe(c)}"
    return None


def find_alerts(
    changes: Sequence[Change],
    *,
    traffic_share: dict[str, float] | None = None,
    model_cost: dict[str, float] | None = None,
) -> list[Alert]:
    """Return the alerts the rules raise on these changes, most severe first."""
    traffic_share = traffic_share or {}
    model_cost = model_cost or {}
    out = []
    for c in changes:
        hit = _rule(c, changes, model_cost)
        if hit is None:
            continue
        share = _share(c, traffic_share)
        message = hit[1] + _suffix(c)
        out.append(Alert(hit[0], severity(c.relative_change, share), c, share, message))
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(out, key=lambda a: (rank[a.severity], a.change.change_at, a.rule))


def alerts_table(alerts: Sequence[Alert], run_id: str) -> pa.Table:
    """Return the `alerts` mart rows."""
    rows = []
    for a in alerts:
        c = a.change
        key = f"{a.rule}|{c.metric}|{c.grain}|{c.segment_key}|{c.change_at.isoformat()}"
        rows.append(
            {
                "alert_id": hashlib.sha1(key.encode()).hexdigest()[:16],
                "rule": a.rule,
                "severity": a.severity,
                "metric": c.metric,
                "grain": c.grain,
                "segment_key": c.segment_key,
                "change_at": c.change_at,
                "value_before": c.value_before,
                "value_after": c.value_after,
                "relative_change": c.relative_change,
                "traffic_share": a.traffic_share,
                "message": a.message,
                "suspected_causes": list(c.suspected_causes),
                "run_id": run_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=ALERTS_SCHEMA)


def evaluate_alerts(
    changes: Sequence[Change],
    *,
    run_id: str,
    traffic_share: dict[str, float] | None = None,
    model_cost: dict[str, float] | None = None,
) -> pa.Table:
    """Return the `alerts` mart for these changes."""
    return alerts_table(
        find_alerts(changes, traffic_share=traffic_share, model_cost=model_cost), run_id
    )


def alert_lines(alerts: pa.Table, limit: int = 20) -> list[str]:
    """Return printable lines, one per alert (most severe first), for the end of a run."""
    rows = alerts.to_pylist()
    lines = [f"[{r['severity'].upper():<8}] {r['message']}" for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more in marts/alerts.parquet")
    return lines
