"""The ``attributes`` JSON of one span: the contract's extension keys of its span type.

One builder per span type reads the conventions' attributes (``docs/otlp.md`` has the table);
then every ``tracehouse.<key>`` of the type's contract keys is typed, redacted and wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tracehouse.contract.schemas import ATTRIBUTE_KEYS, VALIDATOR_NAMES
from tracehouse.otlp.coerce import as_float, as_int, as_json, as_list, coerce, first
from tracehouse.otlp.conventions import (
    FINISH_REASON_SYNONYMS,
    SpanView,
    genai_tool_calls,
    indexed,
    indexed_tool_calls,
)
from tracehouse.redaction import Redactor


@dataclass
class SpanFacts:
    """What the attribute builders need beyond the span: decided once in the mapper."""

    span_type: str
    is_root: bool
    status: str
    error_category: str | None
    model: str | None  # already redacted
    tool_name: str | None
    input_tokens: int | None
    query_preview: bool  # may tier-3 input.value give user_query_redacted (opt-in)?


def _llm(s: SpanView, out: dict[str, Any], tags: set[str], red: Redactor) -> None:
    inv = as_json(s.a.get("llm.invocation_parameters"))
    inv = inv if isinstance(inv, dict) else {}
    op = s.a.get("gen_ai.operation.name")
    if op in ("chat", "text_completion", "generate_content"):
        out["api_mode"] = op
    out["temperature"] = as_float(first(s.a.get("gen_ai.request.temperature"),
                                        inv.get("temperature")))
    out["max_tokens"] = as_int(first(
        s.a.get("gen_ai.request.max_tokens"), inv.get("max_tokens"),
        inv.get("max_completion_tokens"), inv.get("max_output_tokens"),
    ))
    out["cached_tokens"] = as_int(s.get("gen_ai.usage.cache_read.input_tokens",
                                        "llm.token_count.prompt_details.cache_read"))
    out["reasoning_tokens"] = as_int(s.get("gen_ai.usage.reasoning.output_tokens",
                                           "llm.token_count.completion_details.reasoning"))
    reasons = as_list(s.get("gen_ai.response.finish_reasons", "llm.finish_reason"))
    if not reasons:
        reasons = indexed(s.a, "llm.output_messages", "message.finish_reason")
    if reasons:
        normalized = FINISH_REASON_SYNONYMS.get(str(reasons[0]).lower())
        out["finish_reason"] = normalized
        if normalized == "content_filter":
            out["moderation_flagged"] = True
    names = [n for n in indexed_tool_calls(s.a) if n]
    if not names:
        names = genai_tool_calls(s.a.get("gen_ai.output.messages"))
    if names:
        out["tool_calls_proposed"] = [red.metadata(n, tags) for n in names]


def _retrieval(s: SpanView, out: dict[str, Any], tags: set[str], red: Redactor) -> None:
    ids = indexed(s.a, "retrieval.documents", "document.id")
    scores = indexed(s.a, "retrieval.documents", "document.score")
    if not ids:
        docs = as_json(s.a.get("gen_ai.retrieval.documents"))
        if isinstance(docs, list):
            ids = [d.get("id") for d in docs if isinstance(d, dict)]
            scores = [d.get("score") for d in docs if isinstance(d, dict)]
    nums = [f for f in (as_float(x) for x in scores) if f is not None]
    if ids or "retrieval.documents.0.document.content" in s.a or nums:
        out["top_k_returned"] = len(ids)
    if ids:
        out["chunk_ids"] = [red.safe_identifier(i, tags) for i in ids if i is not None]
    if nums:
        out["score_min"], out["score_max"] = min(nums), max(nums)
        out["score_mean"] = sum(nums) / len(nums)
    out["top_k_requested"] = as_int(s.get("gen_ai.request.top_k"))


def _rerank(s: SpanView, out: dict[str, Any], tags: set[str], red: Redactor) -> None:
    in_ids = indexed(s.a, "reranker.input_documents", "document.id")
    in_scores = indexed(s.a, "reranker.input_documents", "document.score")
    out_ids = indexed(s.a, "reranker.output_documents", "document.id")
    out_scores = indexed(s.a, "reranker.output_documents", "document.score")
    out["reranker_model"] = red.metadata(s.get("reranker.model_name"), tags)
    if in_ids:
        out["candidate_count"] = len(in_ids)
    if out_ids:
        out["top_n_selected"] = len(out_ids)
        out["selected_chunk_ids"] = [red.safe_identifier(i, tags) for i in out_ids]
    else:
        out["top_n_selected"] = as_int(s.get("reranker.top_k"))
    if in_ids and out_ids:
        pos = {d: i for i, d in enumerate(in_ids)}
        out["changed_rank_positions"] = sum(
            1 for i, d in enumerate(out_ids) if pos.get(d, -1) != i
        )
        before = dict(zip(in_ids, in_scores, strict=False))
        deltas = [
            a - b
            for d, sc in zip(out_ids, out_scores, strict=False)
            if (a := as_float(sc)) is not None and (b := as_float(before.get(d))) is not None
        ]
        if deltas:
            out["score_delta_mean"] = sum(deltas) / len(deltas)


def _embedding(s: SpanView, out: dict[str, Any], facts: SpanFacts) -> None:
    out["embedding_model"] = facts.model
    out["dimension"] = as_int(s.get("gen_ai.embeddings.dimension.count"))
    out["input_tokens"] = facts.input_tokens


def _tool_call(s: SpanView, out: dict[str, Any], tags: set[str], red: Redactor,
               facts: SpanFacts) -> None:
    is_oi_tool = s.a.get("openinference.span.kind") == "TOOL"
    args = first(s.th("args"), s.a.get("gen_ai.tool.call.arguments"),
                 s.a.get("tool_call.function.arguments"))
    if args is None and is_oi_tool:
        args = s.a.get("input.value")
    if args is not None:
        parsed = as_json(args) if isinstance(args, str) else args
        out["args_redacted"] = red.tool_args(
            parsed if parsed is not None else args, tags, tool_name=facts.tool_name
        )
    result = first(s.a.get("gen_ai.tool.call.result"),
                   s.a.get("output.value") if is_oi_tool else None)
    if result is not None:
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        out["result_bytes"] = len(text.encode("utf-8"))
    if facts.status != "ok":
        out["error_category"] = facts.error_category


def _postprocess(s: SpanView, out: dict[str, Any], facts: SpanFacts) -> None:
    if s.raw.name in VALIDATOR_NAMES:
        out["validator_name"] = s.raw.name
    out["passed"] = facts.status == "ok"


def _request(s: SpanView, out: dict[str, Any], tags: set[str], red: Redactor,
             facts: SpanFacts) -> None:
    """``user_query_redacted``: from ``tracehouse.user_query`` (tier 2, sent for this purpose).

    The root's ``gen_ai.retrieval.query.text`` / ``input.value`` are tier-3 content and give a
    masked preview only when the operator opted in (``TRACEHOUSE_QUERY_PREVIEW=1``).
    """
    query = s.th("user_query")
    if query is None and facts.is_root and facts.query_preview:
        query = first(s.a.get("gen_ai.retrieval.query.text"), s.a.get("input.value"))
    if query is not None:
        out["user_query_redacted"] = red.free_text(query, tags)


def _tracehouse_keys(s: SpanView, span_type: str, out: dict[str, Any], tags: set[str],
                     red: Redactor) -> None:
    """``tracehouse.<key>`` for every extension key of the span type, typed and redacted."""
    for key, kind in ATTRIBUTE_KEYS[span_type].items():
        raw = s.th(key)
        if raw is None:
            continue
        if key == "args_redacted":
            continue  # handled with the allow-list in _tool_call
        if key.endswith("_redacted"):
            value: Any = red.free_text(raw, tags)
        elif key.endswith("_hash"):
            value = red.id_hash_column(raw)
        else:
            value = coerce(kind, raw, lambda x: red.metadata(x, tags),
                           lambda doc: red.json_value(doc, tags))
        if value is not None:
            out[key] = value


def type_attributes(s: SpanView, facts: SpanFacts, tags: set[str],
                    red: Redactor) -> dict[str, Any]:
    """The span's ``attributes`` object: its type's keys, without nulls."""
    out: dict[str, Any] = {}
    t = facts.span_type
    if t == "llm":
        _llm(s, out, tags, red)
    elif t == "retrieval":
        _retrieval(s, out, tags, red)
    elif t == "rerank":
        _rerank(s, out, tags, red)
    elif t == "embedding":
        _embedding(s, out, facts)
    elif t == "tool_call":
        _tool_call(s, out, tags, red, facts)
    elif t == "postprocess":
        _postprocess(s, out, facts)
    elif t == "request":
        _request(s, out, tags, red, facts)
    _tracehouse_keys(s, t, out, tags, red)
    return {k: v for k, v in out.items() if v is not None}
