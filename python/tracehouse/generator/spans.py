"""Span rows of one simulated day: one Arrow table per stage slot, concatenated.

Every column is built vectorised from :class:`~tracehouse.generator.traces.DayTraces`; the
``attributes`` JSON of each span type is encoded by polars from typed columns, so the keys are
exactly the contract's ``ATTRIBUTE_KEYS`` of that type.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tracehouse.contract.schemas import ARTIFACT_REF, ATTRIBUTE_KEYS, SPAN_STATUSES, SPANS_SCHEMA
from tracehouse.generator.ids import (
    fixed_strings,
    hex_ids,
    hex_matrix,
    labels,
    list_array,
    mix64,
    ragged,
    timestamps,
)
from tracehouse.generator.traces import (
    ENTRYPOINTS,
    EXCLUSION_CODES,
    INTENT_NAMES,
    LOCALES,
    MODEL,
    N_SLOTS,
    SLOT,
    SLOTS,
    TASK,
    DayTraces,
)
from tracehouse.generator.world import (
    EMBEDDING_MODEL,
    MODEL_NAMES,
    MODELS,
    RERANKER_MODEL,
    ROUTE_NAMES,
    SERVICE_BY_SPAN_TYPE,
    TASK_TYPES,
    TOOL_NAMES,
    TOOLS,
    TOOLS_AVAILABLE,
    World,
    price_arrays,
)

FINAL_STATUS_NAMES: Final = ("success", "degraded", "blocked", "failed")
QUERY_TEMPLATES: Final = {
    "account_issue": "I can't log in to my account since the email change [EMAIL]",
    "order_issue": "Where is my order [ORDER_ID]? It says shipped but nothing arrived",
    "how_to": "How do I add a teammate to the workspace?",
    "bug_report": "The export button crashes the page when I pick CSV",
    "product_question": "Does the Pro plan include SSO and audit logs?",
    "policy_question": "What is your data retention policy for deleted projects?",
    "invoice_question": "Why was I charged twice on invoice [INVOICE_ID]?",
    "refund_request": "I want a refund for the annual plan I bought by mistake",
    "plan_change": "Can I downgrade to monthly billing mid-cycle?",
    "summarize_ticket": "Summarize ticket [TICKET_ID] for the handover",
    "summarize_thread": "Give me the gist of this email thread with [PERSON]",
    "extract_invoice_fields": "Extract the totals and due date from the attached invoice",
    "extract_contact": "Pull the contact details out of this signature block",
}
INTENT_LIST: Final = tuple(i for names in INTENT_NAMES for i in names)
INTENT_OFFSET: Final = np.cumsum([0, *[len(x) for x in INTENT_NAMES]])[:-1]
RETRIEVER_TYPE: Final = {"support": "hybrid", "billing": "hybrid", "qa": "vector",
                         "summarization": "keyword", "extraction": "keyword"}
SOURCE_TYPES: Final = ("kb_article", "policy_doc", "release_note", "ticket_history")
PRIVACY: Final = {"request": ["tier2", "contains_user_text", "pii_masked"],
                  "query_rewrite": ["tier2", "pii_masked"], "llm": ["tier3", "contains_user_text"],
                  "tool_call": ["tier2", "ids_hashed"]}
ERROR_KINDS: Final = ("invalid_args", "dependency_down", "rate_limit")
_POW10: Final = 10 ** np.arange(4, -1, -1)
CHILD_ENVELOPE_NULL: Final = 0.03  # share of child spans from an old SDK without the envelope


def chunk_ids(codes: np.ndarray) -> pa.Array:
    """Chunk id text of integer chunk codes: ``doc-00042#c07``."""
    codes = np.asarray(codes, np.int64)
    if codes.size and codes.min() >= 0 and codes.max() < 100_000 * 64:  # fixed width: numpy
        text = np.empty((codes.size, 13), np.uint8)
        text[:, :4] = np.frombuffer(b"doc-", np.uint8)
        text[:, 4:9] = 48 + (codes // 64)[:, None] // _POW10[None, :] % 10
        text[:, 9:11] = np.frombuffer(b"#c", np.uint8)
        text[:, 11] = 48 + (codes % 64) // 10
        text[:, 12] = 48 + (codes % 64) % 10
        return fixed_strings(text)
    doc = pc.utf8_lpad(pc.cast(pa.array(codes // 64), pa.string()), 5, "0")
    chunk = pc.utf8_lpad(pc.cast(pa.array(codes % 64), pa.string()), 2, "0")
    return pc.binary_join_element_wise("doc-", doc, "#c", chunk, "")


def const_lists(values: list[str], n: int) -> pa.ListArray:
    """``n`` copies of the same list of strings."""
    k = len(values)
    offsets = np.arange(n + 1, dtype=np.int32) * k
    flat = pa.array(values, pa.string()).take(pa.array(np.tile(np.arange(k), n)))
    return list_array(offsets, flat)


def encode(span_type: str, cols: dict[str, Any], n: int) -> pa.Array:
    """The ``attributes`` JSON objects of ``n`` spans, keys in the contract's order."""
    keys = ATTRIBUTE_KEYS[span_type]
    unknown = set(cols) - set(keys)
    if unknown:
        raise KeyError(f"not contract keys of {span_type}: {sorted(unknown)}")
    series, exprs = [], []
    for key in keys:
        val = cols.get(key)
        if val is None or isinstance(val, (str, int, float, bool)):
            exprs.append(pl.lit(val).alias(key))
        else:
            series.append(pl.Series(key, val))
            exprs.append(pl.col(key))
    df = pl.DataFrame(series) if series else pl.DataFrame({"_": np.zeros(n)})
    out = df.select(pl.struct(exprs).struct.json_encode().alias("a")).to_series()
    return out.to_arrow().cast(pa.string())


def _r(x: np.ndarray, digits: int) -> np.ndarray:
    return np.round(np.asarray(x, float), digits)


class SpanBuilder:
    """Builds the span rows of one day from its simulated state."""

    def __init__(self, world: World, tr: DayTraces) -> None:
        self.world, self.tr = world, tr
        v, n = tr.v, tr.n
        seed, dayk = world.seed, tr.day.toordinal()
        t0 = v["t0"]
        # Fixed-width ids are kept as text matrices: a slot's ids are a row selection.
        self.trace_id = hex_matrix(mix64(seed, 1, dayk, v["idx"]), mix64(seed, 2, dayk, v["idx"]))
        self.span_words = {
            s: mix64(seed, 3, dayk, v["idx"], s) for s in range(N_SLOTS)
        }
        self.parent_ids = {s: hex_matrix(self.span_words[s])
                           for s in (0, SLOT["tool_planning"])}
        self.request_id = hex_matrix(mix64(seed, 4, dayk, v["idx"]), prefix="req_")
        convo = mix64(seed, 5, v["tenant"], v["user"], dayk, v["idx"] % 3)
        self.conversation_id = hex_matrix(convo, prefix="conv_")
        self.session_id = hex_matrix(mix64(seed, 6, v["tenant"], v["user"], dayk),
                                     prefix="sess_")
        self.user_hash = hex_matrix(mix64(seed, 7, v["tenant"], v["user"]))
        tl = world.timelines
        self.tenant = labels(world.tenant_ids, v["tenant"])
        self.release = labels(tl["release_sha"].values, tl["release_sha"].index_at(t0))
        self.app_version = labels(tl["app_version"].values, tl["app_version"].index_at(t0))
        self.task = labels(TASK_TYPES, v["task"])
        self.route = labels(ROUTE_NAMES, v["route"])
        prompt_vals: list[str] = []
        prompt_idx = np.zeros(n, np.int64)
        for ti, task in enumerate(TASK_TYPES):
            line = tl[f"prompt_version:{task}"]
            m = v["task"] == ti
            prompt_idx[m] = len(prompt_vals) + line.index_at(t0[m])
            prompt_vals.extend(line.values)
        self.prompt = labels(prompt_vals, prompt_idx)
        self.retriever = labels(tl["retriever_version"].values,
                                tl["retriever_version"].index_at(t0), v["has_retrieval"])
        self.experiments = list_array(
            np.concatenate([[0], np.cumsum(v["in_experiment"])]).astype(np.int32),
            pa.array(["exp-citation-ui-b"] * int(v["in_experiment"].sum()), pa.string()),
        )
        self.rng = np.random.default_rng([seed, dayk, 99])

    def version(self, key: str, idx: np.ndarray) -> pa.Array:
        """The label of timeline ``key`` in force at the roots of traces ``idx``."""
        line = self.world.timelines[key]
        return labels(line.values, line.index_at(self.tr["t0"][idx]))

    def span_id(self, slot: int, idx: np.ndarray) -> pa.Array:
        if slot in self.parent_ids:
            return fixed_strings(self.parent_ids[slot][idx])
        return hex_ids(self.span_words[slot][idx])

    def envelope(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        """Envelope columns of the spans of ``slot`` for traces ``idx``."""
        v = self.tr.v
        span_type = SLOTS[slot][1]
        n = len(idx)
        take = pa.array(idx)
        start, end = v["start"][idx, slot], v["end"][idx, slot]
        keep = None if slot == 0 else self.rng.random(n) >= CHILD_ENVELOPE_NULL
        parent: pa.Array
        if slot == 0:
            parent = pa.nulls(n, pa.string())
        elif span_type == "tool_call":
            parent = self.span_id(SLOT["tool_planning"], idx)
        else:
            parent = self.span_id(0, idx)

        def env(arr: pa.Array) -> pa.Array:
            a = arr.take(take)
            return a if keep is None else pc.if_else(pa.array(keep), a, pa.scalar(None, a.type))

        return {
            "schema_version": pa.repeat("1", n),
            "event_time": timestamps(start),
            "end_time": timestamps(end),
            "duration_ms": pa.array((end - start) / 1000.0),
            "ingest_time": timestamps(v["ingest_us"][idx]),
            "trace_id": fixed_strings(self.trace_id[idx]),
            "span_id": self.span_id(slot, idx),
            "parent_span_id": parent,
            "request_id": fixed_strings(self.request_id[idx]),
            "conversation_id": fixed_strings(self.conversation_id[idx]),
            "session_id": fixed_strings(self.session_id[idx]),
            "user_id_hash": fixed_strings(self.user_hash[idx]),
            "tenant_id": self.tenant.take(take),
            "environment": pa.repeat("prod", n),
            "service_name": pa.repeat(SERVICE_BY_SPAN_TYPE[span_type], n),
            "app_version": self.app_version.take(take),
            "release_sha": self.release.take(take),
            "span_type": pa.repeat(span_type, n),
            "task_type": env(self.task),
            "route_name": env(self.route),
            "prompt_version": env(self.prompt),
            "retriever_version": env(self.retriever),
            "experiment_ids": self.experiments.take(take),
            "privacy_tags": const_lists(PRIVACY.get(span_type, ["tier1"]), n),
            "status": pa.repeat("ok", n),
        }

    # ---------------------------------------------------------------- per span type

    def build(self) -> pa.Table:
        """All span rows of the day, in the contract's schema."""
        present = self.tr["present"]
        parts = []
        for slot in range(N_SLOTS):
            idx = np.nonzero(present[:, slot])[0]
            if len(idx) == 0:
                continue
            cols = self.envelope(slot, idx)
            cols.update(self._slot(slot, idx))
            n = len(idx)
            parts.append(
                pa.table([cols.get(f.name, pa.nulls(n, f.type)) for f in SPANS_SCHEMA],
                         schema=SPANS_SCHEMA)
            )
        return pa.concat_tables(parts)

    def _slot(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        method = getattr(self, f"_{SLOTS[slot][1]}")
        cols: dict[str, Any] = method(slot, idx)
        return cols

    def _request(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        intent_flat = INTENT_OFFSET[v["task"][idx]] + v["intent"][idx]
        queries = [QUERY_TEMPLATES[i] for i in INTENT_LIST]
        status = v["root_status"][idx]
        flags = pl.DataFrame({
            "citation_ui": pl.Series(np.where(v["in_experiment"][idx], "b", "a")),
            "reranker_shadow": pl.Series(v["tenant"][idx] % 5 == 0),
        }).select(pl.struct(pl.all())).to_series()
        return {
            "operation_name": labels([f"{e}_request" for e in ENTRYPOINTS], v["entry"][idx]),
            "status": labels(SPAN_STATUSES, status),
            "error_type": labels(["", "provider_error", "request_timeout", "", ""], status,
                                 (status == 1) | (status == 2)),
            "attributes": encode("request", {
                "entrypoint": labels(ENTRYPOINTS, v["entry"][idx]),
                "locale": labels(LOCALES, v["locale"][idx]),
                "user_query_redacted": labels(queries, intent_flat),
                "final_status": labels(FINAL_STATUS_NAMES, v["final_status"][idx]),
                "experiment_flags": flags,
            }, n),
        }

    def _classify(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        intent_flat = INTENT_OFFSET[v["task"][idx]] + v["intent"][idx]
        second = INTENT_OFFSET[v["task"][idx]] + (v["intent"][idx] + 1) % np.array(
            [len(x) for x in INTENT_NAMES])[v["task"][idx]]
        lab = np.stack([intent_flat, second], axis=1).ravel()
        c1 = _r(self.rng.uniform(0.55, 0.99, n), 3)
        conf = np.stack([c1, _r((1 - c1) * 0.8, 3)], axis=1).ravel()
        offs = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
        fallback = self.rng.random(n) < 0.02
        return {
            "operation_name": pa.repeat("classify_intent", n),
            "attributes": encode("classify", {
                "classifier_version": self.version("classifier_version", idx),
                "labels": list_array(offs, labels(INTENT_LIST, lab)),
                "confidences": list_array(offs, pa.array(conf)),
                "route_selected": labels(ROUTE_NAMES, v["route"][idx]),
                "policy_id": labels([f"tier-routing-{t}" for t in ("enterprise", "pro", "free")],
                                    v["tier"][idx]),
                "fallback": fallback,
            }, n),
        }

    def _query_rewrite(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        intent_flat = INTENT_OFFSET[v["task"][idx]] + v["intent"][idx]
        rewritten = [QUERY_TEMPLATES[i].lower().rstrip("?") + " (expanded)" for i in INTENT_LIST]
        return {
            "operation_name": pa.repeat("query_rewrite", n),
            "attributes": encode("query_rewrite", {
                "strategy_version": self.version("rewrite_strategy_version", idx),
                "original_query_hash": hex_ids(mix64(self.world.seed, 8, intent_flat,
                                                     v["user"][idx])),
                "rewritten_query_redacted": labels(rewritten, intent_flat),
                "subquery_count": 1 + (self.rng.random(n) < 0.25) + (self.rng.random(n) < 0.08),
                "confidence": _r(self.rng.uniform(0.6, 0.98, n), 3),
            }, n),
        }

    def _embedding(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        hit = v["emb_cache_hit"][idx]
        tokens = v["tok_user"][idx] + 8
        return {
            "operation_name": pa.repeat("embed_query", n),
            "cache_status": labels(["miss", "hit"], hit.astype(int)),
            "cost_usd_estimate": pa.array(np.where(hit, 0.0, _r(tokens * 0.02e-6, 10))),
            "attributes": encode("embedding", {
                "embedding_model": EMBEDDING_MODEL,
                "embedding_version": self.version("embedding_version", idx),
                "input_tokens": tokens,
                "truncated": False,
                "dimension": 1024,
                "cache_hit": hit,
            }, n),
        }

    def _retrieval(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        ret = v["returned"][idx]
        keep = np.arange(v["retrieved"].shape[1])[None, :] < ret[:, None]
        offs, flat = ragged(v["retrieved"][idx], keep)
        mean = self.rng.normal(0.56, 0.06, n)
        has = ret > 0
        rtype = [RETRIEVER_TYPE[t] for t in TASK_TYPES]
        hit = self.rng.random(n) < 0.08
        return {
            "operation_name": labels([f"{t}_search" for t in rtype], v["task"][idx]),
            "cache_status": labels(["miss", "hit"], hit.astype(int)),
            "attributes": encode("retrieval", {
                "retriever_type": labels(rtype, v["task"][idx]),
                "index_version": self.version("index_version", idx),
                "top_k_requested": v["top_k"][idx],
                "top_k_returned": ret,
                "filters": list_array(
                    np.arange(0, 2 * n + 1, 2, dtype=np.int32),
                    labels(["tenant_id", *("locale:" + x for x in LOCALES)],
                           np.stack([np.zeros(n, np.int64), 1 + v["locale"][idx]],
                                    axis=1).ravel()),
                ),
                "acl_filtered_count": v["acl"][idx],
                "score_min": pa.array(_r(mean - self.rng.uniform(0.08, 0.2, n), 3),
                                      mask=~has),
                "score_max": pa.array(_r(mean + self.rng.uniform(0.1, 0.25, n), 3), mask=~has),
                "score_mean": pa.array(_r(mean, 3), mask=~has),
                "chunk_ids": list_array(offs, chunk_ids(flat)),
                "source_types": list_array(offs, labels(SOURCE_TYPES, (flat // 7) % 4)),
            }, n),
        }

    def _rerank(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        offs, flat = ragged(v["selected"][idx], v["sel_valid"][idx])
        cand = v["returned"][idx]
        return {
            "operation_name": pa.repeat("rerank_chunks", n),
            "cost_usd_estimate": pa.array(_r(cand * 0.00005, 8)),
            "attributes": encode("rerank", {
                "reranker_model": RERANKER_MODEL,
                "reranker_version": self.version("reranker_version", idx),
                "candidate_count": cand,
                "top_n_selected": v["n_sel"][idx],
                "selected_chunk_ids": list_array(offs, chunk_ids(flat)),
                "changed_rank_positions": (self.rng.random(n) * (v["n_sel"][idx] + 1)).astype(int),
                "score_delta_mean": _r(self.rng.normal(0.08, 0.03, n), 3),
            }, n),
        }

    def _context_assembly(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        code = v["code"][idx]
        sel = v["selected"][idx]
        inc_offs, inc_flat = ragged(sel, code == -1)
        exc_offs, exc_flat = ragged(sel, code >= 0)
        exc_reason = code[code >= 0]
        excluded = pa.StructArray.from_arrays(
            [chunk_ids(exc_flat), labels(EXCLUSION_CODES, exc_reason)], names=["chunk_id", "reason"]
        )
        included = list_array(inc_offs, chunk_ids(inc_flat))
        return {
            "operation_name": pa.repeat("assemble_prompt", n),
            "attributes": encode("context_assembly", {
                "system_prompt_version": self.prompt.take(pa.array(idx)),
                "policy_block_version": self.version("policy_block_version", idx),
                "context_policy": self.version("context_policy_version", idx),
                "token_budget": v["budget"][idx],
                "tokens_system": v["tok_system"][idx],
                "tokens_history": v["tok_history"][idx],
                "tokens_context": v["tok_context"][idx],
                "tokens_tools": v["tok_tools"][idx],
                "tokens_user": v["tok_user"][idx],
                "included_chunk_ids": included,
                "excluded_chunks": list_array(exc_offs, excluded),
                "truncated": v["truncated"][idx],
                "citation_map_ids": included,
            }, n),
        }

    def _model_routing(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        route = v["route"][idx]
        model = v["model"][idx]
        inp, out, _ = price_arrays(model, v["t0"][idx])
        expected = v["in1"][idx] * inp + 300 * out
        reason = np.select(
            [v["downgrade"][idx], v["in_experiment"][idx] & (route == 1),
             route == 2], [0, 3, 0], 2,
        )  # cost, complexity, tenant_tier, experiment, fallback
        cands = ["atlas-large", "nimbus-pro", "nimbus-mini"]
        return {
            "operation_name": pa.repeat("route_model", n),
            "attributes": encode("model_routing", {
                "route_policy_version": self.version("route_policy_version", idx),
                "candidate_models": const_lists(cands, n),
                "selected_model": labels(MODEL_NAMES, model),
                "reason": labels(["cost", "complexity", "tenant_tier", "experiment", "fallback"],
                                 reason),
                "expected_cost_usd": _r(expected, 6),
                "max_tokens": v["max_tokens"][idx],
                "temperature": 0.2,
                "fallback_chain": list_array(
                    np.arange(n + 1, dtype=np.int32),
                    labels(["nimbus-pro", "nimbus-mini", "atlas-small"], route)),
            }, n),
        }

    def _llm(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        p = "1" if SLOTS[slot][0] == "llm1" else "2"
        model = v["model"][idx]
        t = v["t0"][idx]
        inp, out, cached_p = price_arrays(model, t)
        i_tok, o_tok, c_tok = v[f"in{p}"][idx], v[f"out{p}"][idx], v[f"cached{p}"][idx]
        cost = (i_tok - c_tok) * inp + c_tok * cached_p + o_tok * out
        reports = np.array([MODELS[m].reports_cost for m in MODEL_NAMES])[model]
        if p == "1":
            calls = v["n_calls"][idx]
            finish = np.select([v["llm_error"][idx] | v["req_timeout"][idx], calls > 0,
                                v["length1"][idx]], [4, 2, 1], 0)
            status = np.select([v["req_timeout"][idx], v["llm_error"][idx]], [2, 1], 0)
            tools = v["call_tool"][idx]
            tv = v["call_valid"][idx]
            offs, flat = ragged(tools, tv)
            proposed = list_array(offs, labels(TOOL_NAMES, flat))
            reasoning = v["reasoning1"][idx]
        else:
            finish = np.where(v["length2"][idx], 1, 0)
            status = np.zeros(n, np.int64)
            proposed = const_lists([], n)
            reasoning = np.zeros(n, np.int64)
        flagged = self.rng.random(n) < 0.004
        finish = np.where(flagged & (finish == 0), 3, finish)
        sampled = (v["idx"][idx] % 10) == 3
        words = [mix64(self.world.seed, 40 + k, self.tr.day.toordinal(), v["idx"][idx], int(p))
                 for k in range(4)]
        sha = hex_ids(*words)
        art_ids = hex_ids(words[0], prefix="art_")
        uri = pc.binary_join_element_wise("s3://copilot-artifacts/prompts/", art_ids, ".json.zst",
                                          "")
        refs = pa.StructArray.from_arrays(
            [art_ids, pa.repeat("prompt", n), uri, pa.repeat("tier3", n),
             pa.array(i_tok * 4), sha],
            fields=list(ARTIFACT_REF),
        ).filter(pa.array(sampled))
        ref_offs = np.concatenate([[0], np.cumsum(sampled)]).astype(np.int32)
        return {
            "operation_name": pa.repeat("llm_generate", n),
            "status": labels(SPAN_STATUSES, status),
            "error_type": labels(["", "rate_limit", "timeout"], status, status > 0),
            "model_name": labels(MODEL_NAMES, model),
            "model_provider": labels([MODELS[m].provider for m in MODEL_NAMES], model),
            "cache_status": labels(["miss", "hit"], (c_tok > 0).astype(int)),
            "input_tokens": pa.array(i_tok, pa.int64()),
            "output_tokens": pa.array(o_tok, pa.int64()),
            "cost_usd_estimate": pa.array(_r(cost, 8), mask=~reports),
            "artifact_refs": list_array(ref_offs, refs),
            "attributes": encode("llm", {
                "api_mode": labels(["chat", "responses"],
                                   (model <= MODEL["atlas-small"]).astype(int)),
                "pass_index": int(p),
                "temperature": 0.2,
                "max_tokens": v["max_tokens"][idx],
                "cached_tokens": c_tok,
                "reasoning_tokens": reasoning,
                "queue_ms": _r(v[f"queue{p}"][idx], 1),
                "ttft_ms": _r(v[f"ttft{p}"][idx], 1),
                "generation_ms": _r(v[f"gen{p}"][idx], 1),
                "finish_reason": labels(["stop", "length", "tool_calls", "content_filter",
                                         "error"], finish),
                "tool_calls_proposed": proposed,
                "parse_ok": ~(v["format_fail"][idx] & (p == "2")),
                "moderation_flagged": flagged,
                "retry_count": (self.rng.random(n) < 0.03).astype(int),
            }, n),
        }

    def _tool_planning(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        task = v["task"][idx]
        avail = [list(TOOLS_AVAILABLE[t]) for t in TASK_TYPES]
        lengths = np.array([len(a) for a in avail])
        counts = lengths[task]
        offs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        # each task type's tool indices, padded to one width: row-major selection keeps order
        table = np.zeros((len(avail), max(lengths.max(initial=0), 1)), np.int64)
        for t, tools in enumerate(avail):
            table[t, : len(tools)] = [TOOL_NAMES.index(x) for x in tools]
        flat_idx = table[task][np.arange(table.shape[1])[None, :] < counts[:, None]]
        calls = v["n_calls"][idx]
        selected = np.where(calls > 0, v["call_tool"][idx, 0], len(TOOL_NAMES))
        rationale = np.select([calls == 0, task == TASK["billing"]], [0, 1], 2)
        return {
            "operation_name": pa.repeat("plan_tools", n),
            "attributes": encode("tool_planning", {
                "planner_version": self.version("planner_version", idx),
                "tools_available": list_array(offs, labels(TOOL_NAMES, flat_idx)),
                "tool_selected": labels([*TOOL_NAMES, "none"], selected),
                "rationale_category": labels(["no_tool_needed", "needs_billing_data",
                                              "needs_account_data"], rationale),
                "confidence": _r(self.rng.uniform(0.5, 0.97, n), 3),
            }, n),
        }

    def _tool_call(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        s = 0 if SLOTS[slot][0] == "tool_call0" else 1
        tool = v["call_tool"][idx, s]
        to = v["timed_out"][idx, s]
        err = v["call_error"][idx, s]
        kind = v["call_error_kind"][idx, s]
        status = np.select([to, err], [2, 1], 0)
        err_cat = np.where(to, 3, kind)
        tver = np.zeros(n, np.int64)
        tvals: list[str] = []
        for ti, tname in enumerate(TOOL_NAMES):
            line = self.world.timelines[f"tool_version:{tname}"]
            m = tool == ti
            tver[m] = len(tvals) + line.index_at(v["t0"][idx][m])
            tvals.extend(line.values)
        args = pl.DataFrame({
            "account_ref": pl.Series(hex_ids(mix64(self.world.seed, 9, v["tenant"][idx],
                                                   v["user"][idx]), prefix="acct_")),
            "period": pl.Series(np.where(self.rng.random(n) < 0.6, "last_90d", "current_cycle")),
        }).select(pl.struct(pl.all())).to_series()
        result_med = np.array([TOOLS[t].result_bytes_median for t in TOOL_NAMES])[tool]
        return {
            "operation_name": labels([f"tool_call.{t}" for t in TOOL_NAMES], tool),
            "status": labels(SPAN_STATUSES, status),
            "error_type": labels([*ERROR_KINDS, "timeout"], err_cat, to | err),
            "tool_name": labels(TOOL_NAMES, tool),
            "attributes": encode("tool_call", {
                "tool_version": labels(tvals, tver),
                "input_schema_version": "args-v2",
                "args_redacted": args,
                "timeout_ms": v["timeout_ms"][idx, s],
                "retries": v["call_retries"][idx, s],
                "auth_context_type": labels(["service_account", "user_delegated"],
                                            (v["tier"][idx] == 0).astype(int)),
                "result_bytes": pa.array(
                    (result_med * np.exp(self.rng.normal(0, 0.6, n))).astype(np.int64),
                    mask=to | err),
                "error_category": labels([*ERROR_KINDS, "timeout"], err_cat, to | err),
                "dependency": labels([TOOLS[t].dependency for t in TOOL_NAMES], tool),
            }, n),
        }

    def _postprocess(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        name = SLOTS[slot][0].removeprefix("post_")
        passed = np.ones(n, bool)
        status = np.zeros(n, np.int64)
        repair = np.zeros(n, np.int64)
        fallback = np.zeros(n, bool)
        filtered: pa.Array = const_lists([], n)
        total: Any = None
        valid: Any = None
        if name == "policy":
            blocked = v["blocked"][idx]
            passed, status, fallback = ~blocked, np.where(blocked, 3, 0), blocked
            offs = np.concatenate([[0], np.cumsum(blocked)]).astype(np.int32)
            filtered = list_array(offs, labels(["unsafe_advice", "legal_claim"],
                                               (v["idx"][idx][blocked] % 2)))
        elif name == "citation_check":
            total, valid = v["cite_total"][idx], v["cite_valid"][idx]
            passed = valid == total
            status = np.where(passed, 0, 4)
            repair = (~passed).astype(int)
        elif name == "json_schema":
            repair = v["json_repair"][idx].astype(int)
            passed = ~v["format_fail"][idx]
            status = np.where(passed, 0, 1)
        elif name == "pii_filter":
            masked = self.rng.random(n) < 0.07
            offs = np.concatenate([[0], np.cumsum(masked)]).astype(np.int32)
            filtered = list_array(offs, pa.array(["email"] * int(masked.sum()), pa.string()))
        ops = {"policy": "policy_check", "citation_check": "validate_citations",
               "json_schema": "validate_json", "pii_filter": "filter_pii",
               "formatter": "format_answer"}
        return {
            "operation_name": pa.repeat(ops[name], n),
            "status": labels(SPAN_STATUSES, status),
            "error_type": labels(["", "schema_violation"], (status == 1).astype(int),
                                 status == 1),
            "attributes": encode("postprocess", {
                "validator_name": name,
                "validator_version": self.version(f"validator_version:{name}", idx),
                "passed": passed,
                "confidence": _r(self.rng.uniform(0.7, 0.99, n), 3),
                "filtered_categories": filtered,
                "repair_attempts": repair,
                "fallback_triggered": fallback,
                "citations_total": total,
                "citations_valid": valid,
            }, n),
        }

    def _delivery(self, slot: int, idx: np.ndarray) -> dict[str, Any]:
        v, n = self.tr.v, len(idx)
        render_err = self.rng.random(n) < 0.003
        return {
            "operation_name": pa.repeat("stream_response", n),
            "status": labels(SPAN_STATUSES, render_err.astype(int)),
            "error_type": labels(["", "client_render_error"], render_err.astype(int), render_err),
            "attributes": encode("delivery", {
                "stream_started_ms": _r(v["stream_started"][idx], 1),
                "first_token_shown_ms": _r(v["first_shown"][idx], 1),
                "stream_completed": ~v["failed"][idx] & (self.rng.random(n) > 0.005),
                "client_render_error": render_err,
            }, n),
        }


def build_spans(world: World, tr: DayTraces) -> pa.Table:
    """The span rows of one simulated day, exactly in ``SPANS_SCHEMA``."""
    return SpanBuilder(world, tr).build()

