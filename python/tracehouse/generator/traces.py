"""Simulate one day of requests of the support copilot: what happened in each trace.

:func:`simulate_day` draws every trace's path through the pipeline (classify -> query_rewrite ->
embedding -> retrieval -> rerank -> context_assembly -> model_routing -> llm -> tool_planning ->
tool_call(s) -> llm -> postprocess validators -> delivery), its timings, tokens and outcomes, all
as numpy arrays with one row per trace (or per trace and stage). The span rows, the feedback and
the annotations are built from this state by their own modules, so that the days before a
generated range can be simulated cheaply for their late feedback without building their spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

import numpy as np

from tracehouse.generator.ids import choice_rows, cumulative, mix64
from tracehouse.generator.traffic import start_times
from tracehouse.generator.world import (
    BASE_TOKEN_BUDGET,
    BASE_TOP_K,
    BASE_TOP_N,
    INTENTS,
    MODEL_NAMES,
    MODELS,
    RAG_TASKS,
    ROUTE_BY_TIER,
    ROUTE_NAMES,
    ROUTES,
    TASK_TYPES,
    TASK_WEIGHTS,
    TIERS,
    TOOL_NAMES,
    TOOL_REQUIREMENTS,
    TOOLS,
    TOOLS_AVAILABLE,
    US_PER_S,
    VALIDATORS,
    World,
    rng_for,
)

# Stage slots, in pipeline order. A trace has at most one span per slot.
SLOTS: Final = (
    ("request", "request"),
    ("classify", "classify"),
    ("query_rewrite", "query_rewrite"),
    ("embedding", "embedding"),
    ("retrieval", "retrieval"),
    ("rerank", "rerank"),
    ("context_assembly", "context_assembly"),
    ("model_routing", "model_routing"),
    ("llm1", "llm"),
    ("tool_planning", "tool_planning"),
    ("tool_call0", "tool_call"),
    ("tool_call1", "tool_call"),
    ("llm2", "llm"),
    *((f"post_{v}", "postprocess") for v in VALIDATORS),
    ("delivery", "delivery"),
)
SLOT: Final = {name: i for i, (name, _) in enumerate(SLOTS)}
N_SLOTS: Final = len(SLOTS)
K_MAX: Final = 20  # largest retrieval depth
N_MAX: Final = 10  # largest rerank selection

ENTRYPOINTS: Final = ("chat", "api", "workflow", "background")
ENTRY_WEIGHTS: Final = (0.70, 0.20, 0.08, 0.02)
LOCALES: Final = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP", "pt-BR")
LOCALE_WEIGHTS: Final = (0.55, 0.12, 0.10, 0.08, 0.07, 0.05, 0.03)
EXCLUSION_CODES: Final = ("budget", "dedupe", "relevance_threshold", "policy")

TASK = {t: i for i, t in enumerate(TASK_TYPES)}
TOOL = {t: i for i, t in enumerate(TOOL_NAMES)}
MODEL = {m: i for i, m in enumerate(MODEL_NAMES)}
ROUTE = {r: i for i, r in enumerate(ROUTE_NAMES)}
INTENT_NAMES: Final = tuple(tuple(name for name, _ in INTENTS[t]) for t in TASK_TYPES)
INTENT_CUM: Final = cumulative([[w for _, w in INTENTS[t]] for t in TASK_TYPES])
ROUTE_CUM: Final = cumulative([ROUTE_BY_TIER[t] for t in TIERS])
ROUTE_MODEL: Final = np.array([MODEL[ROUTES[r]] for r in ROUTE_NAMES])
MAX_INTENTS: Final = INTENT_CUM.shape[1]

# REQUIRED[task, intent, tool]: the tool-requirement rules as a lookup table
REQUIRED: Final = np.zeros((len(TASK_TYPES), MAX_INTENTS, len(TOOL_NAMES)), bool)
for _r in TOOL_REQUIREMENTS:
    _ti = TASK[_r.task_type]
    for _ii, _name in enumerate(INTENT_NAMES[_ti]):
        if _r.intent in ("", _name):
            REQUIRED[_ti, _ii, TOOL[_r.tool_name]] = True
AVAILABLE: Final = np.array(
    [[tool in TOOLS_AVAILABLE[t] for tool in TOOL_NAMES] for t in TASK_TYPES], bool
)
N_AVAILABLE: Final = AVAILABLE.sum(axis=1)
AVAILABLE_IDX: Final = np.array(
    [
        [TOOL[x] for x in TOOLS_AVAILABLE[t]] + [0] * (len(TOOL_NAMES) - len(TOOLS_AVAILABLE[t]))
        for t in TASK_TYPES
    ]
)
SYSTEM_TOKENS: Final = np.array([520, 430, 560, 380, 450])  # per task type's template
P_CALL: Final = np.array([MODELS[m].tool_call_prob for m in MODEL_NAMES])
LATENT: Final = np.array([MODELS[m].latent_failure for m in MODEL_NAMES])
MS_PER_TOKEN: Final = np.array([MODELS[m].ms_per_output_token for m in MODEL_NAMES])
TTFT: Final = np.array([MODELS[m].ttft_ms for m in MODEL_NAMES])
TOOL_MEDIAN: Final = np.array([TOOLS[t].median_ms for t in TOOL_NAMES])
TOOL_TIMEOUT: Final = np.array([TOOLS[t].timeout_ms for t in TOOL_NAMES])
VALIDATOR_MS: Final = {
    "policy": 35.0,
    "citation_check": 18.0,
    "json_schema": 4.0,
    "pii_filter": 16.0,
    "formatter": 3.0,
}


@dataclass
class DayTraces:
    """The simulated state of one day's traces: per-trace arrays in ``v``, all length ``n``."""

    day: date
    n: int
    v: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.v[key]


def _lognormal(
    rng: np.random.Generator, median: float | np.ndarray, sigma: float, size: int | tuple[int, ...]
) -> np.ndarray:
    return np.asarray(median) * np.exp(rng.normal(0.0, sigma, size))


def incident_mask(
    world: World, kind: str, t0: np.ndarray, seg: dict[str, np.ndarray], value: str | None = None
) -> np.ndarray:
    """Traces affected by an active incident of ``kind`` (optionally only with this value)."""
    out = np.zeros(len(t0), bool)
    for inc in world.active_incidents():
        if inc.kind != kind or (value is not None and inc.value != value):
            continue
        m = inc.active(t0)
        if inc.dim in seg:
            m &= seg[inc.dim] == inc.value
        out |= m
    return out


def _population(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """Who sends what (tenant, task, intent, route, entrypoint, locale, user) and the model the
    route serves (a downgraded route serves the small model)."""
    day, n = state["day"], state["n"]
    seed, dayk = world.seed, day.toordinal()
    idx = np.arange(n, dtype=np.int64)
    t0 = start_times(rng, day, n)

    tenant = rng.choice(len(world.tenant_ids), n, p=world.tenant_weight)
    tier = world.tenant_tier[tenant]
    task = rng.choice(len(TASK_TYPES), n, p=np.asarray(TASK_WEIGHTS))
    intent = choice_rows(rng, INTENT_CUM, task)
    route = choice_rows(rng, ROUTE_CUM, tier)
    route[(task == TASK["summarization"]) & (rng.random(n) < 0.5)] = ROUTE["cheap"]
    entry = rng.choice(len(ENTRYPOINTS), n, p=np.asarray(ENTRY_WEIGHTS))
    locale = rng.choice(len(LOCALES), n, p=np.asarray(LOCALE_WEIGHTS))
    user = (rng.random(n) * world.tenant_users[tenant]).astype(np.int64)
    in_experiment = rng.random(n) < 0.12

    seg = {"task_type": np.array(TASK_TYPES)[task], "route_name": np.array(ROUTE_NAMES)[route]}
    model = ROUTE_MODEL[route].copy()
    downgrade = incident_mask(world, "route_downgrade", t0, seg)
    model[downgrade] = MODEL["atlas-small"]
    state.update(
        seed=seed,
        dayk=dayk,
        idx=idx,
        t0=t0,
        tenant=tenant,
        tier=tier,
        task=task,
        intent=intent,
        route=route,
        entry=entry,
        locale=locale,
        user=user,
        in_experiment=in_experiment,
        seg=seg,
        model=model,
        downgrade=downgrade,
    )


def _failures(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """Failures before or at the first model pass, and which optional stages run."""
    n, task = state["n"], state["task"]
    u = rng.random((n, 8))
    req_timeout = u[:, 0] < 0.002
    llm_error = ~req_timeout & (u[:, 1] < 0.004)
    failed = req_timeout | llm_error

    has_rewrite = np.isin(task, [TASK[t] for t in RAG_TASKS]) & (u[:, 2] < 0.85)
    has_retrieval = np.isin(task, [TASK[t] for t in RAG_TASKS]) | (u[:, 3] < 0.35)
    has_planning = (N_AVAILABLE[task] > 0) & ~failed
    emb_cache_hit = has_retrieval & (u[:, 4] < 0.3)
    state.update(
        req_timeout=req_timeout,
        llm_error=llm_error,
        failed=failed,
        has_rewrite=has_rewrite,
        has_retrieval=has_retrieval,
        has_planning=has_planning,
        emb_cache_hit=emb_cache_hit,
    )


def _retrieval(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """Retrieval, rerank and context assembly: what was found, kept and fit in the budget."""
    (t0, seg, n, has_retrieval, seed, dayk, idx, task) = (
        state["t0"],
        state["seg"],
        state["n"],
        state["has_retrieval"],
        state["seed"],
        state["dayk"],
        state["idx"],
        state["task"],
    )
    creep = incident_mask(world, "cost_creep", t0, seg)
    top_k = np.where(creep, 20, BASE_TOP_K)
    top_n = np.where(creep, 10, BASE_TOP_N)
    v = rng.random((n, 8))
    zero = has_retrieval & (v[:, 0] < 0.015)
    acl = np.minimum(rng.poisson(0.4, n), top_k - 1)
    returned = np.where(has_retrieval & ~zero, top_k - acl, 0)
    found = (returned > 0) & (v[:, 1] < 0.96)
    p_ret = np.floor(returned * v[:, 2] ** 1.5).astype(np.int64)
    degraded_rerank = incident_mask(world, "reranker_degradation", t0, seg)
    p_keep = np.where(degraded_rerank, 0.35, 0.95)
    n_sel0 = np.minimum(top_n, returned)
    kept = found & (v[:, 3] < p_keep) & (n_sel0 > 0)
    n_sel = np.where(found & ~kept, np.minimum(top_n, returned - 1), n_sel0)
    p_sel = np.floor(n_sel * v[:, 4] ** 1.2).astype(np.int64)

    relevant = (mix64(seed, 21, dayk, idx) % np.uint64(5000 * 64)).astype(np.int64)
    others = rng.integers(0, 5000 * 64, (n, K_MAX), dtype=np.int64)
    second_relevant = np.where(v[:, 5] < 0.25, (relevant + 64 * 37) % (5000 * 64), -1)
    col_k = np.arange(K_MAX)[None, :]
    shifted = np.concatenate([others[:, :1], others[:, :-1]], axis=1)
    retrieved = np.where(
        found[:, None] & (col_k == p_ret[:, None]),
        relevant[:, None],
        np.where(found[:, None] & (col_k > p_ret[:, None]), shifted, others),
    )
    col_n = np.arange(N_MAX)[None, :]
    sh_n = shifted[:, :N_MAX]
    selected = np.where(
        kept[:, None] & (col_n == p_sel[:, None]),
        relevant[:, None],
        np.where(kept[:, None] & (col_n > p_sel[:, None]), sh_n, others[:, :N_MAX]),
    )
    sel_valid = col_n < n_sel[:, None]

    truncating = incident_mask(world, "prompt_truncation", t0, seg)
    tok_tools = np.where(N_AVAILABLE[task] > 0, 60 + 140 * N_AVAILABLE[task], 0)
    # the new template adds an instruction block and budgets far too little for the rest
    budget = np.where(truncating, 1500 + tok_tools, BASE_TOKEN_BUDGET)
    tok_system = SYSTEM_TOKENS[task] + np.where(truncating, 350, 0)
    tok_user = (_lognormal(rng, 45.0, 0.8, n) + 3).astype(np.int64)
    tok_history = np.where(v[:, 6] < 0.45, 0, _lognormal(rng, 600.0, 1.1, n)).astype(np.int64)
    room = budget - 200 - tok_system - tok_tools - tok_user
    history_cut = tok_history > room
    tok_history = np.where(history_cut, np.maximum(room, 0), tok_history)
    avail = budget - tok_system - tok_tools - tok_user - tok_history
    chunk_tokens = _lognormal(rng, 170.0, 0.45, (n, N_MAX)).astype(np.int64) + 20
    cum = np.cumsum(np.where(sel_valid, chunk_tokens, 0), axis=1)
    fits = cum <= avail[:, None]
    code = np.where(sel_valid, np.where(fits, -1, 0), -2)  # -2: not a selected chunk
    m_fit = (sel_valid & fits).sum(axis=1)
    w = rng.random((n, 3))
    rel_pos = m_fit - 1
    drop_rel = (m_fit >= 3) & (w[:, 0] < 0.10)
    code[drop_rel, rel_pos[drop_rel]] = 2
    drop_dup = (m_fit >= 4) & (w[:, 1] < 0.04)
    code[drop_dup, (m_fit - 2)[drop_dup]] = 1
    drop_pol = (m_fit >= 2) & (w[:, 2] < 0.01)
    code[drop_pol, 0] = 3
    included = code == -1
    truncated = has_retrieval & ((code == 0).any(axis=1) | history_cut)
    truncated |= ~has_retrieval & history_cut
    n_included = included.sum(axis=1)
    rel_code = np.take_along_axis(code, np.minimum(p_sel, N_MAX - 1)[:, None], axis=1)[:, 0]
    hit = kept & (rel_code == -1)
    lost_to_budget = kept & (rel_code == 0)
    tok_context = (chunk_tokens * included).sum(axis=1)
    state.update(
        top_k=top_k,
        top_n=top_n,
        zero=zero,
        acl=acl,
        returned=returned,
        found=found,
        kept=kept,
        n_sel=n_sel,
        p_sel=p_sel,
        relevant=relevant,
        second_relevant=second_relevant,
        retrieved=retrieved,
        selected=selected,
        sel_valid=sel_valid,
        tok_tools=tok_tools,
        budget=budget,
        tok_system=tok_system,
        tok_user=tok_user,
        tok_history=tok_history,
        chunk_tokens=chunk_tokens,
        code=code,
        included=included,
        truncated=truncated,
        n_included=n_included,
        hit=hit,
        lost_to_budget=lost_to_budget,
        tok_context=tok_context,
    )


def _tools(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """Tool planning and calls: which tools were called, timeouts, errors and their durations."""
    (task, intent, n, failed, model, has_planning, t0, seg) = (
        state["task"],
        state["intent"],
        state["n"],
        state["failed"],
        state["model"],
        state["has_planning"],
        state["t0"],
        state["seg"],
    )
    required = REQUIRED[task, intent]
    needs_tool = required.any(axis=1)
    tu = rng.random((n, len(TOOL_NAMES)))
    called = required & (tu < P_CALL[model][:, None]) & ~failed[:, None]
    x = rng.random((n, 3))
    wrong = has_planning & needs_tool & (x[:, 0] < 0.02)
    first_req = np.argmax(required, axis=1)
    alt = np.argmax(AVAILABLE[task] & ~required, axis=1)
    wrong &= (AVAILABLE[task] & ~required).any(axis=1)
    called[wrong, first_req[wrong]] = False
    called[wrong, alt[wrong]] = True
    extra = has_planning & ~needs_tool & (x[:, 1] < 0.05)
    extra_tool = AVAILABLE_IDX[task, (x[:, 2] * np.maximum(N_AVAILABLE[task], 1)).astype(int)]
    called[extra, extra_tool[extra]] = True
    order = np.argsort(~called, axis=1, kind="stable")[:, :2]
    n_calls = np.minimum(called.sum(axis=1), 2)
    called = np.zeros_like(called)
    for s in range(2):
        ok = n_calls > s
        called[ok, order[ok, s]] = True
    missing_required = (required & ~called).any(axis=1)

    slow = np.zeros((n, len(TOOL_NAMES)), bool)
    for tool, ti in TOOL.items():
        slow[:, ti] = incident_mask(world, "tool_slowdown", t0, seg, value=tool)
    call_tool = order.astype(np.int64)
    call_valid = np.arange(2)[None, :] < n_calls[:, None]
    call_slow = np.take_along_axis(slow, call_tool, axis=1)
    cu = rng.random((n, 2, 4))
    timed_out = call_valid & (cu[:, :, 0] < np.where(call_slow, 0.30, 0.01))
    call_error = call_valid & ~timed_out & (cu[:, :, 1] < 0.02)
    call_error_kind = (cu[:, :, 2] * 3).astype(np.int64)  # index into spans.ERROR_KINDS
    retry = (cu[:, :, 3] < 0.04) | (call_error & (cu[:, :, 3] < 0.5))
    call_retries = np.where(call_valid & retry, 1, 0)
    timeout_ms = TOOL_TIMEOUT[call_tool]
    call_ms = np.minimum(
        _lognormal(rng, TOOL_MEDIAN[call_tool] * np.where(call_slow, 5.0, 1.0), 0.5, (n, 2)),
        timeout_ms * 0.97,
    )
    call_ms = np.where(timed_out, timeout_ms + rng.uniform(0, 40, (n, 2)), call_ms)
    tool_failed = (timed_out | call_error).any(axis=1)
    tool_timeout = timed_out.any(axis=1)
    state.update(
        required=required,
        needs_tool=needs_tool,
        called=called,
        wrong=wrong,
        n_calls=n_calls,
        s=s,
        missing_required=missing_required,
        call_tool=call_tool,
        call_valid=call_valid,
        timed_out=timed_out,
        call_error=call_error,
        call_error_kind=call_error_kind,
        call_retries=call_retries,
        timeout_ms=timeout_ms,
        call_ms=call_ms,
        tool_failed=tool_failed,
        tool_timeout=tool_timeout,
    )


def _model_tokens(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """The model passes' tokens (input, cached, reasoning, output)."""
    (
        route,
        n,
        tok_user,
        tok_context,
        tok_tools,
        tok_system,
        tok_history,
        model,
        n_calls,
        failed,
    ) = (
        state["route"],
        state["n"],
        state["tok_user"],
        state["tok_context"],
        state["tok_tools"],
        state["tok_system"],
        state["tok_history"],
        state["model"],
        state["n_calls"],
        state["failed"],
    )
    max_tokens = np.array([2048, 1024, 1024])[route]
    cache_hit = rng.random(n) < 0.55
    in1 = tok_system + tok_history + tok_tools + tok_context + tok_user
    cached1 = np.where(cache_hit, tok_system + tok_tools, 0)
    reasoning1 = np.where(
        (model == MODEL["atlas-large"]) & (rng.random(n) < 0.3), _lognormal(rng, 180.0, 0.7, n), 0
    ).astype(np.int64)
    answer = np.exp(rng.normal(5.02, 0.86, n)).astype(np.int64) + 4
    out1 = np.where(n_calls > 0, 22 + 18 * n_calls + rng.integers(0, 12, n), answer) + reasoning1
    length1 = out1 > max_tokens
    out1 = np.minimum(out1, max_tokens)
    has_llm2 = n_calls > 0
    result_tokens = (_lognormal(rng, 320.0, 0.6, n) * n_calls).astype(np.int64)
    in2 = np.where(has_llm2, in1 + out1 + result_tokens, 0)
    cached2 = np.where(has_llm2 & (rng.random(n) < 0.8), (in1 // 128) * 128, cached1)
    cached2 = np.where(has_llm2, cached2, 0)
    out2 = np.where(has_llm2, answer, 0)
    length2 = has_llm2 & (out2 > max_tokens)
    out2 = np.minimum(out2, max_tokens)
    out1 = np.where(failed, 0, out1)
    state.update(
        max_tokens=max_tokens,
        cache_hit=cache_hit,
        in1=in1,
        cached1=cached1,
        reasoning1=reasoning1,
        out1=out1,
        length1=length1,
        has_llm2=has_llm2,
        result_tokens=result_tokens,
        in2=in2,
        cached2=cached2,
        out2=out2,
        length2=length2,
    )


def _postprocess(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """Postprocess validators: blocks, citations, JSON repair, PII, formatting, latent failures."""
    (n, t0, seg, failed, has_retrieval, n_included, task, entry, tier, model, needs_tool, route) = (
        state["n"],
        state["t0"],
        state["seg"],
        state["failed"],
        state["has_retrieval"],
        state["n_included"],
        state["task"],
        state["entry"],
        state["tier"],
        state["model"],
        state["needs_tool"],
        state["route"],
    )
    p = rng.random((n, 8))
    overfire = incident_mask(world, "guardrail_overfire", t0, seg)
    blocked = ~failed & (p[:, 0] < np.where(overfire, 0.18, 0.01))
    blocked_fp = blocked & (overfire | (p[:, 1] < 0.5))
    has_cite = ~failed & has_retrieval & (n_included > 0)
    cite_total = np.clip(1 + rng.poisson(1.3, n), 1, np.maximum(n_included, 1))
    cite_bad_rate = np.where(incident_mask(world, "citation_mismatch", t0, seg), 0.25, 0.04)
    cite_mismatch = has_cite & (p[:, 2] < cite_bad_rate)
    cite_valid = cite_total - cite_mismatch * (1 + ((p[:, 3] < 0.3) & (cite_total > 1)))
    has_json = ~failed & (task == TASK["extraction"])
    json_repair = has_json & (p[:, 4] < 0.05)
    format_fail = json_repair & (p[:, 5] < 0.25)
    has_pii = ~failed & ((entry == 1) | (tier == 0))
    has_fmt = ~failed & (entry == 0)
    latent = p[:, 6] < LATENT[model] + 0.03 * ((route == ROUTE["cheap"]) & needs_tool)
    has_delivery = (entry == 0) | (entry == 2)
    state.update(
        blocked=blocked,
        blocked_fp=blocked_fp,
        has_cite=has_cite,
        cite_total=cite_total,
        cite_mismatch=cite_mismatch,
        cite_valid=cite_valid,
        has_json=has_json,
        json_repair=json_repair,
        format_fail=format_fail,
        has_pii=has_pii,
        has_fmt=has_fmt,
        latent=latent,
        has_delivery=has_delivery,
    )


def _durations(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """Which stages are present and how long each takes (ms)."""
    (
        n,
        has_rewrite,
        has_retrieval,
        returned,
        has_planning,
        n_calls,
        has_llm2,
        failed,
        has_cite,
        has_json,
        has_pii,
        has_fmt,
        has_delivery,
        emb_cache_hit,
        top_k,
        model,
        in1,
        out1,
        req_timeout,
        call_ms,
        in2,
        out2,
    ) = (
        state["n"],
        state["has_rewrite"],
        state["has_retrieval"],
        state["returned"],
        state["has_planning"],
        state["n_calls"],
        state["has_llm2"],
        state["failed"],
        state["has_cite"],
        state["has_json"],
        state["has_pii"],
        state["has_fmt"],
        state["has_delivery"],
        state["emb_cache_hit"],
        state["top_k"],
        state["model"],
        state["in1"],
        state["out1"],
        state["req_timeout"],
        state["call_ms"],
        state["in2"],
        state["out2"],
    )
    present = np.zeros((n, N_SLOTS), bool)
    present[:, SLOT["request"]] = True
    present[:, SLOT["classify"]] = True
    present[:, SLOT["query_rewrite"]] = has_rewrite
    present[:, SLOT["embedding"]] = has_retrieval
    present[:, SLOT["retrieval"]] = has_retrieval
    present[:, SLOT["rerank"]] = has_retrieval & (returned > 0)
    present[:, SLOT["context_assembly"]] = True
    present[:, SLOT["model_routing"]] = True
    present[:, SLOT["llm1"]] = True
    present[:, SLOT["tool_planning"]] = has_planning
    present[:, SLOT["tool_call0"]] = n_calls > 0
    present[:, SLOT["tool_call1"]] = n_calls > 1
    present[:, SLOT["llm2"]] = has_llm2
    present[:, SLOT["post_policy"]] = ~failed
    present[:, SLOT["post_citation_check"]] = has_cite
    present[:, SLOT["post_json_schema"]] = has_json
    present[:, SLOT["post_pii_filter"]] = has_pii
    present[:, SLOT["post_formatter"]] = has_fmt
    present[:, SLOT["delivery"]] = has_delivery

    dur = np.zeros((n, N_SLOTS))
    dur[:, SLOT["classify"]] = _lognormal(rng, 35.0, 0.35, n)
    dur[:, SLOT["query_rewrite"]] = _lognormal(rng, 220.0, 0.45, n)
    dur[:, SLOT["embedding"]] = np.where(
        emb_cache_hit, _lognormal(rng, 3.0, 0.3, n), _lognormal(rng, 25.0, 0.4, n)
    )
    dur[:, SLOT["retrieval"]] = _lognormal(rng, 60.0 + 4.0 * top_k, 0.45, n)
    dur[:, SLOT["rerank"]] = _lognormal(rng, 40.0 + 9.0 * returned, 0.35, n)
    dur[:, SLOT["context_assembly"]] = _lognormal(rng, 6.0, 0.5, n)
    dur[:, SLOT["model_routing"]] = _lognormal(rng, 2.0, 0.5, n)
    queue1 = _lognormal(rng, 15.0, 1.0, n)
    ttft1 = TTFT[model] * (1 + in1 / 8000) * _lognormal(rng, 1.0, 0.3, n)
    gen1 = out1 * MS_PER_TOKEN[model] * _lognormal(rng, 1.0, 0.15, n)
    ttft1 = np.where(req_timeout, 30000.0, ttft1)
    gen1 = np.where(failed, 0.0, gen1)
    dur[:, SLOT["llm1"]] = queue1 + ttft1 + gen1
    plan_ms = _lognormal(rng, 12.0, 0.4, n)
    gaps = _lognormal(rng, 0.8, 0.6, (n, N_SLOTS + 2))
    dur[:, SLOT["tool_call0"]] = call_ms[:, 0]
    dur[:, SLOT["tool_call1"]] = call_ms[:, 1]
    dur[:, SLOT["tool_planning"]] = plan_ms + np.where(n_calls > 0, gaps[:, -1] + call_ms[:, 0], 0)
    dur[:, SLOT["tool_planning"]] += np.where(n_calls > 1, gaps[:, -2] + call_ms[:, 1], 0)
    queue2 = _lognormal(rng, 15.0, 1.0, n)
    ttft2 = TTFT[model] * (1 + in2 / 8000) * _lognormal(rng, 1.0, 0.3, n)
    gen2 = out2 * MS_PER_TOKEN[model] * _lognormal(rng, 1.0, 0.15, n)
    dur[:, SLOT["llm2"]] = queue2 + ttft2 + gen2
    for name, ms in VALIDATOR_MS.items():
        dur[:, SLOT[f"post_{name}"]] = _lognormal(rng, ms, 0.4, n)
    stream_started = _lognormal(rng, 45.0, 0.5, n)
    first_shown = stream_started + _lognormal(rng, 35.0, 0.5, n)
    dur[:, SLOT["delivery"]] = first_shown + _lognormal(rng, 250.0, 0.6, n)
    state.update(
        present=present,
        dur=dur,
        queue1=queue1,
        ttft1=ttft1,
        gen1=gen1,
        plan_ms=plan_ms,
        gaps=gaps,
        queue2=queue2,
        ttft2=ttft2,
        gen2=gen2,
        name=name,
        stream_started=stream_started,
        first_shown=first_shown,
    )


def _schedule(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """Span start / end times: a sequential pipeline, tool calls inside tool planning."""
    (n, dur, gaps, t0, name, present, s, plan_ms, n_calls, has_planning) = (
        state["n"],
        state["dur"],
        state["gaps"],
        state["t0"],
        state["name"],
        state["present"],
        state["s"],
        state["plan_ms"],
        state["n_calls"],
        state["has_planning"],
    )
    # sequential pipeline: each present stage starts after the previous present one ends
    start = np.zeros((n, N_SLOTS), np.int64)
    end = np.zeros((n, N_SLOTS), np.int64)
    dur_us = (dur * 1000).astype(np.int64)
    gap_us = (gaps * 1000).astype(np.int64) + 50
    cursor = t0 + gap_us[:, 0]
    for s in range(1, N_SLOTS):
        name = SLOTS[s][0]
        if name in ("tool_call0", "tool_call1"):
            continue  # placed inside tool_planning below
        ps = present[:, s]
        st = cursor + gap_us[:, s]
        start[:, s] = np.where(ps, st, 0)
        end[:, s] = np.where(ps, st + dur_us[:, s], 0)
        cursor = np.where(ps, st + dur_us[:, s], cursor)
    plan_start = start[:, SLOT["tool_planning"]]
    c0 = plan_start + (plan_ms * 1000).astype(np.int64) + (gaps[:, -1] * 1000).astype(np.int64)
    start[:, SLOT["tool_call0"]] = np.where(n_calls > 0, c0, 0)
    end[:, SLOT["tool_call0"]] = np.where(n_calls > 0, c0 + dur_us[:, SLOT["tool_call0"]], 0)
    c1 = end[:, SLOT["tool_call0"]] + (gaps[:, -2] * 1000).astype(np.int64)
    start[:, SLOT["tool_call1"]] = np.where(n_calls > 1, c1, 0)
    end[:, SLOT["tool_call1"]] = np.where(n_calls > 1, c1 + dur_us[:, SLOT["tool_call1"]], 0)
    plan_end = np.maximum(
        end[:, SLOT["tool_planning"]],
        np.maximum(end[:, SLOT["tool_call0"]], end[:, SLOT["tool_call1"]]) + 200,
    )
    end[:, SLOT["tool_planning"]] = np.where(has_planning, plan_end, 0)
    root_end = np.maximum(cursor, end.max(axis=1)) + gap_us[:, 1]
    start[:, 0] = t0
    end[:, 0] = root_end
    state.update(start=start, end=end, root_end=root_end)


def _outcome(rng: np.random.Generator, world: World, state: dict[str, Any]) -> None:
    """Root and final status, whether the answer went wrong and how badly, ingest time."""
    (
        req_timeout,
        llm_error,
        blocked,
        tool_failed,
        failed,
        truncated,
        format_fail,
        latent,
        cite_mismatch,
        wrong,
        has_retrieval,
        missing_required,
        hit,
        n,
    ) = (
        state["req_timeout"],
        state["llm_error"],
        state["blocked"],
        state["tool_failed"],
        state["failed"],
        state["truncated"],
        state["format_fail"],
        state["latent"],
        state["cite_mismatch"],
        state["wrong"],
        state["has_retrieval"],
        state["missing_required"],
        state["hit"],
        state["n"],
    )
    root_status = np.select(
        [req_timeout, llm_error, blocked, tool_failed], [2, 1, 3, 4], 0
    )  # index into SPAN_STATUSES: ok, error, timeout, blocked, degraded
    final_status = np.select([failed, blocked, tool_failed], [3, 2, 1], 0)  # FINAL_STATUSES
    bad = (
        failed
        | blocked
        | tool_failed
        | missing_required
        | wrong
        | (has_retrieval & ~hit)
        | cite_mismatch
        | latent
        | format_fail
        | truncated
    )
    # how badly the user was served, 0..1: drives feedback; a retrieval miss hurts most
    severity = np.max(
        np.stack(
            [
                0.8 * failed,
                0.7 * blocked,
                0.5 * tool_failed,
                0.7 * missing_required,
                0.6 * wrong,
                0.8 * (has_retrieval & ~hit),
                0.35 * cite_mismatch,
                0.5 * latent,
                0.5 * format_fail,
                0.4 * truncated,
            ]
        ),
        axis=0,
    )
    ingest_delay = np.minimum(_lognormal(rng, 20.0, 1.0, n), 7200.0)
    state.update(
        root_status=root_status,
        final_status=final_status,
        bad=bad,
        severity=severity,
        ingest_delay=ingest_delay,
    )


#: The per-trace arrays a simulated day exposes (besides ``ingest_us``).
DAY_ARRAYS: Final = (
    "idx",
    "t0",
    "root_end",
    "start",
    "end",
    "present",
    "tenant",
    "tier",
    "task",
    "intent",
    "route",
    "model",
    "entry",
    "locale",
    "user",
    "in_experiment",
    "req_timeout",
    "llm_error",
    "failed",
    "has_retrieval",
    "emb_cache_hit",
    "top_k",
    "top_n",
    "zero",
    "acl",
    "returned",
    "found",
    "kept",
    "n_sel",
    "p_sel",
    "relevant",
    "second_relevant",
    "retrieved",
    "selected",
    "sel_valid",
    "code",
    "included",
    "n_included",
    "truncated",
    "hit",
    "lost_to_budget",
    "budget",
    "tok_system",
    "tok_tools",
    "tok_user",
    "tok_history",
    "tok_context",
    "chunk_tokens",
    "required",
    "needs_tool",
    "called",
    "n_calls",
    "wrong",
    "missing_required",
    "call_tool",
    "call_valid",
    "timed_out",
    "call_error",
    "call_error_kind",
    "call_retries",
    "timeout_ms",
    "tool_failed",
    "tool_timeout",
    "max_tokens",
    "cache_hit",
    "in1",
    "cached1",
    "out1",
    "reasoning1",
    "length1",
    "in2",
    "cached2",
    "out2",
    "length2",
    "queue1",
    "ttft1",
    "gen1",
    "queue2",
    "ttft2",
    "gen2",
    "result_tokens",
    "blocked",
    "blocked_fp",
    "has_cite",
    "cite_total",
    "cite_valid",
    "cite_mismatch",
    "json_repair",
    "format_fail",
    "latent",
    "stream_started",
    "first_shown",
    "root_status",
    "final_status",
    "bad",
    "severity",
    "downgrade",
)

#: The simulation stages, in the order they draw from the day's generator.
STAGES: Final = (
    _population,
    _failures,
    _retrieval,
    _tools,
    _model_tokens,
    _postprocess,
    _durations,
    _schedule,
    _outcome,
)


def simulate_day(world: World, day: date, n: int) -> DayTraces:
    """Draw ``n`` traces of ``day``: their routing, stages, timings, tokens and outcomes.

    The stages (`STAGES`) run in pipeline order on one random generator, each reading the
    arrays of the stages before it from a shared dict and adding its own.
    """
    rng = rng_for(world.seed, "traces", day.toordinal())
    v: dict[str, Any] = {"day": day, "n": n}
    for stage in STAGES:
        stage(rng, world, v)
    out = DayTraces(day=day, n=n)
    out.v.update({k: v[k] for k in DAY_ARRAYS})
    out.v["ingest_us"] = v["root_end"] + (v["ingest_delay"] * US_PER_S).astype(np.int64)
    return out
