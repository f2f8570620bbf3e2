"""Formatting and the decision fields shown for each span type, header, feedback and labels."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from tracehouse.redaction import mask_text
from tracehouse.review.trace_section import annotation_extras, annotation_head
from tracehouse.trace_view.model import Row, TraceView, _list, _num


def _ms(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "-"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def _usd(value: Any) -> str:
    v = _num(value)
    return "-" if v is None else f"${v:.5f}"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value) if value else "[]"
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def _redact(value: Any) -> str:
    """Free text as displayed: masked again, whatever the producer did."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return mask_text(text).text


def _tokens_by_section(s: Row) -> str:
    parts = [(k.removeprefix("tokens_"), _num(s.get(k))) for k in
             ("tokens_system", "tokens_history", "tokens_context", "tokens_tools", "tokens_user")]
    known = [(k, int(v)) for k, v in parts if v is not None]
    shown = [f"{k} {v:,}" for k, v in known]
    total = sum(v for _, v in known)
    if not shown:
        return ""
    budget = _num(s.get("token_budget"))
    tail = f" = {total:,}" + (f" of budget {int(budget):,}" if budget else "")
    return " + ".join(shown) + tail


def _excluded(s: Row) -> str:
    items = [e for e in _list(s.get("excluded_chunks")) if isinstance(e, dict)]
    return ", ".join(f"{e.get('chunk_id')} ({e.get('reason')})" for e in items)


Field = tuple[str, Callable[[Row], Any]]


def _k(key: str) -> Callable[[Row], Any]:
    def get(span: Row) -> Any:
        return span.get(key)

    get.raw = True  # type: ignore[attr-defined]  # a real False ("no") is a value to show
    return get


DECISION_FIELDS: dict[str, list[Field]] = {
    "request": [
        ("entrypoint", _k("entrypoint")), ("user query", lambda s: s.get("user_query_redacted")
                                            and _redact(s["user_query_redacted"])),
        ("final status", _k("final_status")), ("locale", _k("locale")),
    ],
    "classify": [
        ("labels", _k("labels")), ("confidences", _k("confidences")),
        ("route selected", _k("route_selected")), ("policy", _k("policy_id")),
        ("fallback", _k("fallback")), ("classifier", _k("classifier_version")),
    ],
    "query_rewrite": [
        ("strategy", _k("strategy_version")),
        ("rewritten", lambda s: s.get("rewritten_query_redacted")
         and _redact(s["rewritten_query_redacted"])),
        ("subqueries", _k("subquery_count")), ("confidence", _k("confidence")),
    ],
    "embedding": [
        ("model", _k("embedding_model")), ("version", _k("embedding_version")),
        ("input tokens", _k("input_tokens")), ("truncated", _k("truncated")),
        ("cache hit", _k("cache_hit")),
    ],
    "retrieval": [
        ("retriever", _k("retriever_type")), ("index", _k("index_version")),
        ("top k", lambda s: s.get("top_k_requested") is not None
         and f"{s.get('top_k_returned')} returned of {s.get('top_k_requested')} requested"),
        ("scores", lambda s: _num(s.get("score_mean")) is not None
         and f"min {_fmt(s.get('score_min'))} / mean {_fmt(s.get('score_mean'))} / "
             f"max {_fmt(s.get('score_max'))}"),
        ("ACL filtered", _k("acl_filtered_count")), ("filters", _k("filters")),
        ("candidates", _k("chunk_ids")),
    ],
    "rerank": [
        ("reranker", lambda s: s.get("reranker_model") and
         f"{s.get('reranker_model')} {s.get('reranker_version') or ''}".strip()),
        ("selected", lambda s: s.get("top_n_selected") is not None
         and f"{s.get('top_n_selected')} of {s.get('candidate_count')} candidates"),
        ("selected chunks", _k("selected_chunk_ids")),
        ("rank changes", _k("changed_rank_positions")),
    ],
    "context_assembly": [
        ("tokens by section", _tokens_by_section), ("truncated", _k("truncated")),
        ("included chunks", _k("included_chunk_ids")), ("excluded", _excluded),
        ("policy", _k("context_policy")), ("system prompt", _k("system_prompt_version")),
    ],
    "model_routing": [
        ("selected model", _k("selected_model")), ("reason", _k("reason")),
        ("candidates", _k("candidate_models")), ("fallback chain", _k("fallback_chain")),
        ("expected cost", lambda s: _num(s.get("expected_cost_usd")) is not None
         and _usd(s.get("expected_cost_usd"))),
        ("policy", _k("route_policy_version")),
    ],
    "llm": [
        ("model", lambda s: s.get("model_name") and
         f"{s.get('model_name')} ({s.get('model_provider') or '?'})"),
        ("pass", _k("pass_index")),
        ("tokens", lambda s: _num(s.get("input_tokens")) is not None
         and f"in {int(s['input_tokens']):,} (cached {int(_num(s.get('cached_tokens')) or 0):,})"
             f" / out {int(_num(s.get('output_tokens')) or 0):,}"),
        ("finish", _k("finish_reason")), ("ttft", lambda s: _num(s.get("ttft_ms")) is not None
                                          and _ms(s.get("ttft_ms"))),
        ("tool calls proposed", _k("tool_calls_proposed")), ("parse ok", _k("parse_ok")),
        ("retries", _k("retry_count")), ("moderation flagged", _k("moderation_flagged")),
    ],
    "tool_planning": [
        ("selected", _k("tool_selected")), ("available", _k("tools_available")),
        ("rationale", _k("rationale_category")), ("confidence", _k("confidence")),
    ],
    "tool_call": [
        ("tool", lambda s: s.get("tool_name") and
         f"{s.get('tool_name')} {s.get('tool_version') or ''}".strip()),
        ("arguments", lambda s: s.get("args_redacted") is not None and _redact(s["args_redacted"])),
        ("error", lambda s: (s.get("error_category") or s.get("error_type")) and
         f"{s.get('error_category') or s.get('error_type')}"
         + (f": {_redact(s['error_message_redacted'])}" if s.get("error_message_redacted")
            else "")),
        ("retries", _k("retries")), ("timeout", lambda s: s.get("timeout_ms") is not None
                                     and _ms(s.get("timeout_ms"))),
        ("dependency", _k("dependency")), ("result bytes", _k("result_bytes")),
    ],
    "postprocess": [
        ("validator", lambda s: s.get("validator_name") and
         f"{s.get('validator_name')} {s.get('validator_version') or ''}".strip()),
        ("passed", _k("passed")), ("filtered", _k("filtered_categories")),
        ("repairs", _k("repair_attempts")), ("fallback", _k("fallback_triggered")),
        ("citations", lambda s: s.get("citations_total") is not None
         and f"{s.get('citations_valid')} valid of {s.get('citations_total')}"),
    ],
    "delivery": [
        ("stream started", lambda s: s.get("stream_started_ms") is not None
         and _ms(s.get("stream_started_ms"))),
        ("first token shown", lambda s: s.get("first_token_shown_ms") is not None
         and _ms(s.get("first_token_shown_ms"))),
        ("completed", _k("stream_completed")), ("render error", _k("client_render_error")),
    ],
}


# Fields shown only when they say something happened (a retry, a fallback, a flag raised).
ONLY_IF_NOTABLE = frozenset({"repairs", "fallback", "retries", "moderation flagged",
                             "render error", "ACL filtered", "cache hit", "rank changes"})


def decision_fields(span: Row) -> list[tuple[str, str]]:
    """(label, value) pairs of the span's decision fields that it reports."""
    out = []
    for label, get in DECISION_FIELDS.get(str(span.get("span_type")), []):
        try:
            value = get(span)
        except (TypeError, ValueError, KeyError):
            value = None
        if value is None or (value is False and not getattr(get, "raw", False)):
            continue
        if label in ONLY_IF_NOTABLE and (value is False or value == 0):
            continue
        if label == "truncated" and span.get("span_type") == "embedding" and value is False:
            continue
        if isinstance(value, list) and not value:
            continue
        text = _fmt(value)
        if text:
            out.append((label, text))
    if span.get("status") not in (None, "ok") and span.get("span_type") != "tool_call":
        err = span.get("error_type") or ""
        msg = span.get("error_message_redacted")
        out.append(("error", f"{span.get('status')} {err}".strip()
                    + (f": {_redact(msg)}" if msg else "")))
    return out


def _span_label(s: Row) -> str:
    name = str(s.get("operation_name") or s.get("span_type"))
    t = s.get("span_type")
    if t == "tool_call" and s.get("tool_name") and str(s["tool_name"]) not in name:
        name += f" [{s['tool_name']}]"
    if t == "llm" and s.get("model_name"):
        name += f" [{s['model_name']}]"
    if t == "postprocess" and s.get("validator_name") and str(s["validator_name"]) not in name:
        name += f" [{s['validator_name']}]"
    return name


def _header_fields(view: TraceView) -> list[tuple[str, str]]:
    r = view.request
    versions = ", ".join(
        f"{k}={r[k]}" for k in ("release_sha", "prompt_version", "retriever_version",
                                "reranker_version", "index_version", "route_policy_version")
        if r.get(k)
    )
    fields = [
        ("started", _fmt(r.get("event_time"))),
        ("tenant / task", f"{r.get('tenant_id')} / {r.get('task_type')}"
                          + (f" ({r.get('intent')})" if r.get("intent") else "")),
        ("route / model", f"{r.get('route_name')} / {r.get('model_name')} "
                          f"({r.get('model_provider') or '?'})"
                          + (f", routed for {r.get('routing_reason')}"
                             if r.get("routing_reason") else "")),
        ("versions", versions),
        ("status", f"{r.get('status')} / final {r.get('final_status') or '-'}"
                   + ("  (successful task)" if r.get("is_successful_task") else
                      "  (not a successful task)")),
        ("duration / cost", f"{_ms(view.duration_ms)} / {_usd(r.get('cost_usd'))}"),
        ("tokens", f"in {int(_num(r.get('input_tokens')) or 0):,} / out "
                   f"{int(_num(r.get('output_tokens')) or 0):,}"),
        ("failure tags", _fmt(r.get("failure_tags")) or "none"),
        ("failure category", str(r.get("failure_category") or "none (not labelled as failed)")),
    ]
    return [(k, v) for k, v in fields if v]


def _feedback_lines(view: TraceView) -> list[str]:
    lines = []
    for f in view.feedback:
        value = f" value {f['value']:g}" if _num(f.get("value")) is not None else ""
        comment = f" \"{_redact(f['comment_redacted'])}\"" if f.get("comment_redacted") else ""
        lines.append(f"{_fmt(f.get('event_time'))}  {f.get('feedback_type')}{value}{comment}"
                     f" ({f.get('source') or '?'})")
    return lines


def _annotation_lines(view: TraceView) -> list[str]:
    lines = []
    for a in view.annotations:
        scores = ", ".join(f"{k} {a[k]:.2f}" for k in
                           ("correctness", "groundedness", "citation_quality", "completeness")
                           if _num(a.get(k)) is not None)
        extra = []
        if a.get("tool_use_correct") is not None:
            extra.append(f"tool use correct: {_fmt(a['tool_use_correct'])}")
        if a.get("policy_compliant") is not None:
            extra.append(f"policy compliant: {_fmt(a['policy_compliant'])}")
        if _list(a.get("required_tools")):
            extra.append(f"required tools: {_fmt(_list(a['required_tools']))}")
        if _list(a.get("relevant_chunk_ids")):
            extra.append(f"relevant chunks: {_fmt(_list(a['relevant_chunk_ids']))}")
        if a.get("eval_dataset_id") and a.get("annotation_kind") in (None, "label"):
            extra.append(f"promoted to eval set {a['eval_dataset_id']}")
        extra += annotation_extras(a)  # review workflow: notes, reasons, eval results
        lines.append(f"{_fmt(a.get('label_time'))}  {annotation_head(a)}"
                     + (f"; {scores}" if scores else "") + ("; " + "; ".join(extra)
                                                            if extra else ""))
    return lines
