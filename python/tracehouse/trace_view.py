"""The request drill-down: one trace, its span tree as a timeline, and every decision it made.

:func:`load_trace` reads one trace from the warehouse (read-only DuckDB: ``marts.fct_requests``,
``marts.fct_spans``, and the feedback and annotation events of the staging views), :func:`explain`
says in plain sentences what went wrong (the relevant chunk lost at rerank, the required tool
never called, the context truncated, the validator that blocked), :func:`render_console` prints
it with rich (a waterfall scaled to the root's duration, then the decision fields of each span),
and :func:`render_html` writes the same as a standalone page (inline CSS, no scripts).
:func:`find_traces` lists traces by filters, most suspicious first, to find one to open.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from tracehouse.redaction import mask_text
from tracehouse.review.trace_section import annotation_extras, annotation_head
from tracehouse.warehouse import MARTS_SCHEMA, warehouse_db

Row = dict[str, Any]

FEEDBACK_RELATIONS = ("marts.fct_feedback", "staging.stg_lake__feedback")
ANNOTATION_RELATIONS = ("marts.fct_annotations", "staging.stg_lake__annotations")


class TraceNotFoundError(LookupError):
    """No trace with that id (or id prefix) in the warehouse."""


@dataclass
class ChunkStep:
    """Where one chunk went: retrieved (rank), selected by rerank, included or excluded (why)."""

    chunk_id: str
    relevant: bool
    retrieved_rank: int | None
    selected_rank: int | None
    included: bool
    excluded_reason: str | None

    @property
    def lost_at(self) -> str | None:
        """The stage that lost a relevant chunk, or None if it reached the model."""
        if self.included:
            return None
        if self.retrieved_rank is None:
            return "retrieval"
        if self.selected_rank is None and not self.excluded_reason:
            return "rerank"
        return "context_assembly"


@dataclass
class TraceView:
    """One trace: its request row, spans (tree order), feedback, annotations, and chunk journey."""

    trace_id: str
    request: Row
    spans: list[Row]  # in tree order, each with "depth"
    feedback: list[Row] = field(default_factory=list)
    annotations: list[Row] = field(default_factory=list)
    chunks: list[ChunkStep] = field(default_factory=list)

    @property
    def root(self) -> Row | None:
        """The root span, if it landed."""
        return next((s for s in self.spans if s.get("parent_span_id") is None), None)

    @property
    def duration_ms(self) -> float:
        """Wall time of the trace: the root's duration, else the span extent."""
        root = self.root
        if root and root.get("duration_ms"):
            return float(root["duration_ms"])
        ends = [(_num(s.get("offset_ms")) or 0) + (_num(s.get("duration_ms")) or 0)
                for s in self.spans]
        return max(ends, default=0.0) or 1.0


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _relation_exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    schema, name = relation.split(".")
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()[0])  # type: ignore[index]


def connect(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse database (UTC)."""
    db = warehouse_db(warehouse)
    if not db.is_file():
        raise FileNotFoundError(f"no warehouse database at {db}: run `tracehouse run` first")
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def load_trace(warehouse: Path | str, trace_id: str) -> TraceView:
    """Load one trace (``trace_id`` or a unique prefix of it) from the warehouse."""
    con = connect(warehouse)
    try:
        return load_trace_from(con, trace_id)
    finally:
        con.close()


def load_trace_from(con: duckdb.DuckDBPyConnection, trace_id: str) -> TraceView:
    """:func:`load_trace` on an open connection."""
    trace_id = trace_id.strip().lower()
    matches = _rows(
        con,
        f"SELECT * FROM {MARTS_SCHEMA}.fct_requests WHERE trace_id LIKE ? || '%' LIMIT 2",
        [trace_id],
    )
    if not matches:
        raise TraceNotFoundError(f"no trace {trace_id!r} in marts.fct_requests")
    if len(matches) > 1 and matches[0]["trace_id"] != trace_id:
        raise TraceNotFoundError(f"trace id prefix {trace_id!r} is ambiguous; give more of it")
    request = matches[0]
    tid = request["trace_id"]
    spans = _rows(
        con,
        f"SELECT * FROM {MARTS_SCHEMA}.fct_spans WHERE trace_id = ? "
        "ORDER BY offset_ms NULLS LAST, event_time, span_id",
        [tid],
    )
    feedback: list[Row] = []
    for relation in FEEDBACK_RELATIONS:
        if _relation_exists(con, relation):
            feedback = _rows(con, f"SELECT * FROM {relation} WHERE trace_id = ? "
                                  "ORDER BY event_time", [tid])
            break
    annotations: list[Row] = []
    for relation in ANNOTATION_RELATIONS:
        if _relation_exists(con, relation):
            annotations = _rows(con, f"SELECT * FROM {relation} WHERE trace_id = ? "
                                     "ORDER BY label_time", [tid])
            break
    view = TraceView(tid, request, _tree_order(spans), feedback, annotations)
    view.chunks = chunk_journey(view)
    return view


def _tree_order(spans: list[Row]) -> list[Row]:
    """Spans depth-first from the root(s), children by start; orphans last at depth 0."""
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str | None, list[Row]] = {}
    for s in spans:
        parent = s.get("parent_span_id")
        children.setdefault(parent if parent in by_id else None, []).append(s)
    ordered: list[Row] = []
    seen: set[str] = set()

    def walk(span: Row, depth: int) -> None:
        if span["span_id"] in seen:
            return
        seen.add(span["span_id"])
        ordered.append({**span, "depth": depth})
        for child in children.get(span["span_id"], []):
            walk(child, depth + 1)

    for top in children.get(None, []):
        walk(top, 0)
    for s in spans:  # cycles or anything left over
        if s["span_id"] not in seen:
            ordered.append({**s, "depth": 0})
    return ordered


def _first(view: TraceView, span_type: str) -> Row | None:
    return next((s for s in view.spans if s.get("span_type") == span_type), None)


def _spans(view: TraceView, span_type: str) -> list[Row]:
    return [s for s in view.spans if s.get("span_type") == span_type]


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return list(value) if isinstance(value, list | tuple) else [value]


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def chunk_journey(view: TraceView) -> list[ChunkStep]:
    """Every chunk the trace touched; for the judged-relevant ones, whether and where lost."""
    relevant = [str(c) for c in _list(view.request.get("relevant_chunk_ids"))]
    for a in view.annotations:
        relevant += [str(c) for c in _list(a.get("relevant_chunk_ids")) if str(c) not in relevant]
    retrieved: list[str] = []
    for s in _spans(view, "retrieval"):
        retrieved += [str(c) for c in _list(s.get("chunk_ids")) if str(c) not in retrieved]
    selected: list[str] = []
    rerank_seen = False
    for s in _spans(view, "rerank"):
        rerank_seen = True
        selected += [str(c) for c in _list(s.get("selected_chunk_ids")) if str(c) not in selected]
    included: list[str] = []
    excluded: dict[str, str] = {}
    assembly_seen = False
    for s in _spans(view, "context_assembly"):
        assembly_seen = True
        included += [str(c) for c in _list(s.get("included_chunk_ids"))]
        for e in _list(s.get("excluded_chunks")):
            if isinstance(e, dict) and e.get("chunk_id") is not None:
                excluded[str(e["chunk_id"])] = str(e.get("reason") or "unknown")
    if not rerank_seen:
        selected = list(retrieved)
    if not assembly_seen:
        included = list(selected)
    order = list(dict.fromkeys([*retrieved, *selected, *included, *excluded, *relevant]))
    steps = []
    for c in order:
        steps.append(
            ChunkStep(
                chunk_id=c,
                relevant=c in relevant,
                retrieved_rank=retrieved.index(c) + 1 if c in retrieved else None,
                selected_rank=selected.index(c) + 1 if c in selected else None,
                included=c in included,
                excluded_reason=excluded.get(c),
            )
        )
    return steps


# --------------------------------------------------------------------------------------------
# Explaining
# --------------------------------------------------------------------------------------------


def explain(view: TraceView) -> list[str]:
    """Plain-sentence findings about what went wrong in the trace, most telling first."""
    r = view.request
    out: list[str] = []
    relevant = [c for c in view.chunks if c.relevant]
    if relevant:
        reached = [c for c in relevant if c.included]
        if not reached:
            for c in relevant:
                if c.lost_at == "retrieval":
                    out.append(f"Retrieval miss: relevant chunk {c.chunk_id} was never retrieved.")
                elif c.lost_at == "rerank":
                    out.append(f"Relevant chunk {c.chunk_id} was retrieved (rank "
                               f"{c.retrieved_rank}) but dropped by the reranker.")
                else:
                    why = f" (reason: {c.excluded_reason})" if c.excluded_reason else ""
                    out.append(f"Relevant chunk {c.chunk_id} was selected but excluded at "
                               f"context assembly{why}.")
        else:
            lost = [c for c in relevant if not c.included]
            if lost:
                out.append(f"{len(reached)} of {len(relevant)} relevant chunks reached the model; "
                           + ", ".join(f"{c.chunk_id} lost at {c.lost_at}" for c in lost) + ".")
    for s in _spans(view, "retrieval"):
        if _num(s.get("top_k_returned")) == 0:
            out.append(f"Retrieval returned no results (index {s.get('index_version') or '?'}).")
    missing = [str(t) for t in _list(r.get("missing_required_tools"))]
    if missing or r.get("is_required_tool_missing"):
        called = ", ".join(str(t) for t in _list(r.get("tools_called"))) or "none"
        out.append(f"Required tool {', '.join(missing) or '?'} was never called "
                   f"(tools called: {called}).")
    for s in _spans(view, "tool_call"):
        if s.get("status") not in (None, "ok"):
            err = s.get("error_category") or s.get("error_type") or s.get("status")
            out.append(f"Tool {s.get('tool_name') or s.get('operation_name')} failed: "
                       f"{s.get('status')} ({err}) after {_ms(s.get('duration_ms'))}.")
    for s in _spans(view, "context_assembly"):
        if s.get("truncated"):
            reasons: dict[str, int] = {}
            for e in _list(s.get("excluded_chunks")):
                if isinstance(e, dict):
                    reasons[str(e.get("reason"))] = reasons.get(str(e.get("reason")), 0) + 1
            detail = ", ".join(f"{n} for {k}" for k, n in sorted(reasons.items()))
            budget = _num(s.get("token_budget"))
            out.append(f"Context truncated to the token budget "
                       f"{f'{int(budget):,}' if budget is not None else '?'}"
                       + (f": excluded {detail}." if detail else "."))
    for s in _spans(view, "llm"):
        if s.get("finish_reason") in ("length", "content_filter", "error"):
            out.append(f"LLM pass {s.get('pass_index') or '?'} ({s.get('model_name')}) stopped "
                       f"with finish_reason={s.get('finish_reason')}.")
        if s.get("parse_ok") is False:
            out.append(f"LLM pass {s.get('pass_index') or '?'} output did not parse.")
    for s in _spans(view, "postprocess"):
        name = s.get("validator_name") or s.get("operation_name")
        if s.get("status") == "blocked":
            cats = ", ".join(str(c) for c in _list(s.get("filtered_categories")))
            out.append(f"Validator {name} blocked the answer" + (f" ({cats})." if cats else "."))
        elif s.get("passed") is False:
            out.append(f"Validator {name} failed" + (
                "; fallback triggered." if s.get("fallback_triggered") else "."))
        total, valid = _num(s.get("citations_total")), _num(s.get("citations_valid"))
        if total and valid is not None and valid < total:
            out.append(f"Citations: only {int(valid)} of {int(total)} valid.")
    routing = _first(view, "model_routing")
    if routing and routing.get("reason") == "fallback":
        out.append(f"Model routing fell back to {routing.get('selected_model')}.")
    for s in view.spans:
        if s.get("status") == "timeout" and s.get("span_type") not in ("tool_call",):
            out.append(f"{s.get('span_type')} span {s.get('operation_name')} timed out after "
                       f"{_ms(s.get('duration_ms'))}.")
    fb = [f.get("feedback_type") for f in view.feedback]
    negatives = [t for t in fb if t in ("thumbs_down", "escalation", "regenerate", "rephrase",
                                        "task_abandoned")]
    if negatives:
        out.append("User feedback: " + ", ".join(str(t) for t in negatives) + ".")
    if r.get("failure_category"):
        out.append(f"Labelled by a human as {r['failure_category']}"
                   + (f" (correctness {r['correctness']:.2f})."
                      if _num(r.get("correctness")) is not None else "."))
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------
# Decision fields per span type
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rendering: terminal
# --------------------------------------------------------------------------------------------

STATUS_STYLE = {"ok": "green", "error": "red", "timeout": "red", "blocked": "magenta",
                "degraded": "yellow"}


def _bar(offset: float, duration: float, total: float, width: int) -> tuple[int, int]:
    total = max(total, 1e-9)
    start = min(width - 1, max(0, round(offset / total * width)))
    length = max(1, round(duration / total * width))
    return start, min(length, width - start)


def render_console(view: TraceView, console: Any = None, *, bar_width: int | None = None) -> None:
    """Print the trace with rich: header, findings, waterfall, decisions, chunks, feedback."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    if bar_width is None:  # what is left of the width after the other columns
        label_width = max((len(_span_label(s)) + 2 * int(s.get("depth", 0))
                           for s in view.spans), default=20)
        bar_width = max(16, min(60, console.width - label_width - 56))
    console.rule(f"[bold]trace {view.trace_id}")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for k, v in _header_fields(view):
        head.add_row(k, v)
    console.print(head)

    findings = explain(view)
    console.print()
    console.print("[bold]What went wrong[/bold]" if findings else "[bold]Findings[/bold]")
    for line in findings or ["Nothing unusual found in the spans, feedback or labels."]:
        console.print(f"  - {line}", highlight=False)

    total = view.duration_ms
    table = Table(title=f"Timeline (bars scaled to the request's {_ms(total)})",
                  title_justify="left", show_lines=False, pad_edge=False)
    table.add_column("span", no_wrap=True)
    table.add_column("status", no_wrap=True, min_width=7)
    table.add_column("start", justify="right", no_wrap=True, min_width=7)
    table.add_column("duration", justify="right", no_wrap=True, min_width=8)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("waterfall", no_wrap=True, min_width=bar_width)
    for s in view.spans:
        off, dur = _num(s.get("offset_ms")) or 0.0, _num(s.get("duration_ms")) or 0.0
        start, length = _bar(off, dur, total, bar_width)
        status = str(s.get("status"))
        bar = Text(" " * start)
        bar.append("█" * length, style=STATUS_STYLE.get(status, "white"))
        bar.append(" " * (bar_width - start - length))
        cost = _num(s.get("cost_usd"))
        table.add_row(
            "  " * int(s.get("depth", 0)) + _span_label(s),
            Text(status, style=STATUS_STYLE.get(status, "")),
            _ms(off), _ms(dur), _usd(cost) if cost else "", bar,
        )
    console.print()
    console.print(table)

    console.print()
    console.print("[bold]Decisions, span by span[/bold]")
    for s in view.spans:
        fields = decision_fields(s)
        if not fields:
            continue
        status = str(s.get("status"))
        console.print(
            Text("  " * int(s.get("depth", 0)) + f"{s.get('span_type')}: {_span_label(s)} ")
            + Text(f"({status})", style=STATUS_STYLE.get(status, ""))
        )
        for label, value in fields:
            console.print(f"{'  ' * int(s.get('depth', 0))}    {label}: {value}", highlight=False,
                          soft_wrap=True)

    if view.chunks:
        chunks = Table(title="Chunk journey: retrieved -> selected by rerank -> included in the "
                             "prompt (* judged relevant)", title_justify="left")
        for col in ("chunk", "retrieved", "reranked", "prompt", "lost at"):
            chunks.add_column(col, no_wrap=True)
        for c in view.chunks:
            style = "bold red" if c.relevant and not c.included else (
                "bold green" if c.relevant else "")
            chunks.add_row(
                Text(("* " if c.relevant else "  ") + c.chunk_id, style=style),
                f"#{c.retrieved_rank}" if c.retrieved_rank else "-",
                f"#{c.selected_rank}" if c.selected_rank else "-",
                "included" if c.included else (f"excluded: {c.excluded_reason}"
                                               if c.excluded_reason else "-"),
                Text(c.lost_at or "", style="red") if c.relevant else "",
            )
        console.print()
        console.print(chunks)

    console.print()
    console.print("[bold]Feedback[/bold]")
    for line in _feedback_lines(view) or ["none"]:
        console.print(f"  {line}", highlight=False)
    console.print("[bold]Labels[/bold]")
    for line in _annotation_lines(view) or ["none"]:
        console.print(f"  {line}", highlight=False)


def render_text(view: TraceView, *, width: int = 140) -> str:
    """The console rendering as plain text (no colours)."""
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None, force_terminal=False,
                      file=open("/dev/null", "w"))  # noqa: SIM115, PTH123
    try:
        render_console(view, console)
        return console.export_text()
    finally:
        console.file.close()


# --------------------------------------------------------------------------------------------
# Rendering: HTML
# --------------------------------------------------------------------------------------------

_HTML_COLORS = {"ok": "#2da44e", "error": "#cf222e", "timeout": "#cf222e", "blocked": "#8250df",
                "degraded": "#bf8700"}

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #d0d7de;
         vertical-align: top; }
th { background: #f6f8fa; }
.findings li { margin: .2rem 0; } .findings { background: #fff8c5; padding: .6rem 1.6rem;
       border-radius: 6px; }
.track { position: relative; height: 14px; background: #f6f8fa; min-width: 360px; }
.bar { position: absolute; top: 2px; height: 10px; border-radius: 2px; min-width: 2px; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.lost { color: #cf222e; font-weight: 600; } .kept { color: #1a7f37; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; margin: .3rem 0; }
dt { font-weight: 600; } dd { margin: 0; }
.span { margin: .6rem 0; padding-left: .6rem; border-left: 3px solid #d0d7de; }
"""


def render_html(view: TraceView) -> str:
    """The same drill-down as a standalone HTML page (inline CSS, no scripts)."""
    e = html.escape
    total = view.duration_ms
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>trace {e(view.trace_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>trace <code>{e(view.trace_id)}</code></h1><dl>",
    ]
    for k, v in _header_fields(view):
        parts.append(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>")
    parts.append("</dl><h2>What went wrong</h2><ul class='findings'>")
    for line in explain(view) or ["Nothing unusual found in the spans, feedback or labels."]:
        parts.append(f"<li>{e(line)}</li>")
    parts.append(f"</ul><h2>Timeline</h2><p>Bars are scaled to the request's {e(_ms(total))}; "
                 "colour is the span status (green ok, red error/timeout, purple blocked, "
                 "amber degraded).</p><table><tr><th>span</th><th>status</th>"
                 "<th class='num'>start</th><th class='num'>duration</th><th class='num'>cost</th>"
                 "<th>waterfall</th></tr>")
    for s in view.spans:
        off, dur = _num(s.get("offset_ms")) or 0.0, _num(s.get("duration_ms")) or 0.0
        left = max(0.0, min(100.0, off / max(total, 1e-9) * 100))
        width = max(0.3, min(100.0 - left, dur / max(total, 1e-9) * 100))
        status = str(s.get("status"))
        color = _HTML_COLORS.get(status, "#57606a")
        indent = int(s.get("depth", 0)) * 1.2
        cost = _num(s.get("cost_usd"))
        parts.append(
            f"<tr><td style='padding-left:{indent + .5:.1f}rem'>{e(_span_label(s))}</td>"
            f"<td style='color:{color}'>{e(status)}</td><td class='num'>{e(_ms(off))}</td>"
            f"<td class='num'>{e(_ms(dur))}</td><td class='num'>{e(_usd(cost) if cost else '')}"
            f"</td><td><div class='track'><div class='bar' style='left:{left:.2f}%;"
            f"width:{width:.2f}%;background:{color}'></div></div></td></tr>"
        )
    parts.append("</table><h2>Decisions, span by span</h2>")
    for s in view.spans:
        fields = decision_fields(s)
        if not fields:
            continue
        status = str(s.get("status"))
        parts.append(
            f"<div class='span' style='margin-left:{int(s.get('depth', 0)) * 1.2:.1f}rem'>"
            f"<b>{e(str(s.get('span_type')))}</b>: {e(_span_label(s))} "
            f"<span style='color:{_HTML_COLORS.get(status, '#57606a')}'>({e(status)})</span><dl>"
        )
        for label, value in fields:
            parts.append(f"<dt>{e(label)}</dt><dd>{e(value)}</dd>")
        parts.append("</dl></div>")
    if view.chunks:
        parts.append("<h2>Chunk journey</h2><p>retrieved &rarr; selected by rerank &rarr; "
                     "included in the prompt; judged-relevant chunks marked &#9733;.</p><table>"
                     "<tr><th>chunk</th><th>retrieved</th><th>reranked</th><th>prompt</th>"
                     "<th>lost at</th></tr>")
        for c in view.chunks:
            cls = "lost" if c.relevant and not c.included else ("kept" if c.relevant else "")
            prompt = "included" if c.included else (
                f"excluded: {c.excluded_reason}" if c.excluded_reason else "-")
            parts.append(
                f"<tr><td class='{cls}'>{'&#9733; ' if c.relevant else ''}<code>{e(c.chunk_id)}"
                f"</code></td><td>{e(f'#{c.retrieved_rank}' if c.retrieved_rank else '-')}</td>"
                f"<td>{e(f'#{c.selected_rank}' if c.selected_rank else '-')}</td>"
                f"<td>{e(prompt)}</td>"
                f"<td class='{cls}'>{e(c.lost_at or '') if c.relevant else ''}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Feedback</h2><ul>")
    parts += [f"<li>{e(x)}</li>" for x in _feedback_lines(view) or ["none"]]
    parts.append("</ul><h2>Labels</h2><ul>")
    parts += [f"<li>{e(x)}</li>" for x in _annotation_lines(view) or ["none"]]
    parts.append("</ul></body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Finding traces
# --------------------------------------------------------------------------------------------

VERSION_DIMENSIONS = (
    "release_sha", "app_version", "prompt_version", "retriever_version", "index_version",
    "embedding_version", "reranker_version", "route_policy_version", "classifier_version",
    "planner_version", "system_prompt_version", "model_name", "model_provider", "route_name",
    "tenant_id", "task_type", "intent", "environment",
)

SUSPICION_SQL = """
    (CASE WHEN failure_category IS NOT NULL THEN 4 ELSE 0 END)
    + (CASE WHEN has_thumbs_down THEN 3 ELSE 0 END)
    + (CASE WHEN has_escalation THEN 3 ELSE 0 END)
    + (CASE WHEN is_error THEN 2 ELSE 0 END)
    + (CASE WHEN coalesce(final_status, 'success') <> 'success' THEN 1 ELSE 0 END)
    + coalesce(len(failure_tags), 0)
    + (CASE WHEN is_successful_task THEN 0 ELSE 1 END)
"""


@dataclass
class TraceFilter:
    """Filters of `tracehouse traces`; every one optional."""

    failure_category: str | None = None
    tag: str | None = None
    versions: dict[str, str] = field(default_factory=dict)  # dim -> value
    route: str | None = None
    thumbs_down: bool = False
    day: date | None = None
    limit: int = 20


def find_traces(warehouse: Path | str, filters: TraceFilter) -> list[Row]:
    """Traces matching ``filters``, most suspicious first (labelled failures, thumbs-down,
    escalations, errors, rule-based failure tags), then most expensive."""
    clauses: list[str] = []
    params: list[Any] = []
    if filters.failure_category:
        clauses.append("failure_category = ?")
        params.append(filters.failure_category)
    if filters.tag:
        clauses.append("list_contains(failure_tags, ?)")
        params.append(filters.tag)
    for dim, value in filters.versions.items():
        if dim not in VERSION_DIMENSIONS:
            raise ValueError(
                f"unknown dimension {dim!r}; use one of {', '.join(VERSION_DIMENSIONS)}"
            )
        clauses.append(f'"{dim}" = ?')
        params.append(value)
    if filters.route:
        clauses.append("route_name = ?")
        params.append(filters.route)
    if filters.thumbs_down:
        clauses.append("has_thumbs_down")
    if filters.day:
        clauses.append("trace_date = ?")
        params.append(filters.day)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    con = connect(warehouse)
    try:
        return _rows(
            con,
            f"""
            SELECT trace_id, event_time, route_name, model_name, task_type, status, final_status,
                   failure_category, failure_tags, has_thumbs_down, cost_usd, duration_ms,
                   {SUSPICION_SQL} AS suspicion
            FROM {MARTS_SCHEMA}.fct_requests {where}
            ORDER BY suspicion DESC, cost_usd DESC NULLS LAST, trace_id
            LIMIT {int(filters.limit)}
            """,
            params,
        )
    finally:
        con.close()


def render_trace_list(rows: list[Row], console: Any = None) -> None:
    """Print the result of :func:`find_traces` as a table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{len(rows)} traces, most suspicious first", title_justify="left")
    for col, justify in (("trace_id", "left"), ("started", "left"), ("route / model", "left"),
                         ("task", "left"), ("status", "left"), ("failure category", "left"),
                         ("tags", "left"), ("👎", "center"), ("cost", "right"),
                         ("duration", "right")):
        table.add_column(col, justify=justify,  # type: ignore[arg-type]
                         no_wrap=col in ("trace_id", "cost", "duration"), overflow="fold")
    for r in rows:
        table.add_row(
            r["trace_id"], _fmt(r["event_time"])[:19], f"{r['route_name']} / {r['model_name']}",
            str(r["task_type"]), f"{r['status']}/{r['final_status'] or '-'}",
            str(r["failure_category"] or ""), _fmt(r["failure_tags"]) if r["failure_tags"] else "",
            "yes" if r["has_thumbs_down"] else "", _usd(r["cost_usd"]), _ms(r["duration_ms"]),
        )
    console.print(table)
