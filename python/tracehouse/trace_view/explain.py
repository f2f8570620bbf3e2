"""Plain-sentence findings: what went wrong in a trace, most telling first."""

from __future__ import annotations

from tracehouse.trace_view.fields import _ms
from tracehouse.trace_view.model import TraceView, _first, _list, _num, _spans


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
