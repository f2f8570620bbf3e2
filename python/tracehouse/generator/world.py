"""The simulated world: tenants, task types, routes, models and prices, tools, the deploy timeline
with its version changes, and the incidents injected into it.

Static vocabulary (models, tools) lives in module constants; prices and tool requirements are
read from the dbt seeds ``seeds/model_prices.csv`` and ``seeds/tool_requirements.csv``
(`generator.seeds`), the one source of truth the warehouse also loads. The
dynamic part (tenants' tiers, deploy times, version labels, incidents) is a pure function of the
seed and the lake epoch (the first generated day), computed in 30-day cycles so that a longer
horizon never changes what an earlier cycle looks like: appending equals generating in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

import numpy as np

from tracehouse.generator.ids import mix64
from tracehouse.generator.seeds import read_model_prices, read_tool_requirements

US_PER_S: Final = 1_000_000
US_PER_DAY: Final = 86_400 * US_PER_S
CYCLE_DAYS: Final = 30  # incidents are placed per cycle of this many days after the epoch

# --------------------------------------------------------------------------------------------
# Static vocabulary
# --------------------------------------------------------------------------------------------

TIERS: Final = ("enterprise", "pro", "free")
TENANT_NAMES: Final = (
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
    "cyberdyne", "soylent", "aperture", "vandelay", "gringotts", "oscorp", "massive-dynamic",
    "pied-piper", "monarch", "dunder", "bluth", "krusty", "nakatomi", "weyland", "blackmesa",
    "prestige", "virtucon", "sterling", "duff", "paper-street", "ollivander",
)

TASK_TYPES: Final = ("support", "qa", "billing", "summarization", "extraction")
TASK_WEIGHTS: Final = (0.34, 0.24, 0.18, 0.12, 0.12)
# intent = the classify span's first label
INTENTS: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "support": (("account_issue", 0.35), ("order_issue", 0.25), ("how_to", 0.30),
                ("bug_report", 0.10)),
    "qa": (("product_question", 0.6), ("policy_question", 0.4)),
    "billing": (("invoice_question", 0.5), ("refund_request", 0.3), ("plan_change", 0.2)),
    "summarization": (("summarize_ticket", 0.7), ("summarize_thread", 0.3)),
    "extraction": (("extract_invoice_fields", 0.6), ("extract_contact", 0.4)),
}
RAG_TASKS: Final = ("support", "qa", "billing")  # always retrieve; others sometimes


@dataclass(frozen=True)
class Model:
    """An LLM the routes can select, and how it behaves."""

    name: str
    provider: str
    ms_per_output_token: float
    ttft_ms: float
    tool_call_prob: float  # chance it calls a tool the request needs
    latent_failure: float  # chance of a bad answer with everything else fine
    reports_cost: bool  # whether its provider returns a cost estimate on the span


MODELS: Final[dict[str, Model]] = {
    m.name: m
    for m in (
        Model("atlas-large", "atlas-ai", 21.0, 480.0, 0.97, 0.05, True),
        Model("atlas-small", "atlas-ai", 8.0, 240.0, 0.30, 0.10, True),
        Model("nimbus-pro", "nimbus-labs", 15.0, 380.0, 0.94, 0.07, False),
        Model("nimbus-mini", "nimbus-labs", 7.0, 220.0, 0.88, 0.11, False),
    )
}
MODEL_NAMES: Final = tuple(MODELS)

ROUTES: Final[dict[str, str]] = {"premium": "atlas-large", "standard": "nimbus-pro",
                                 "cheap": "nimbus-mini"}
ROUTE_NAMES: Final = tuple(ROUTES)
# P(route | tenant tier), in ROUTE_NAMES order
ROUTE_BY_TIER: Final = {"enterprise": (0.75, 0.25, 0.0), "pro": (0.2, 0.65, 0.15),
                        "free": (0.0, 0.35, 0.65)}
ROUTE_MAX_TOKENS: Final = {"premium": 2048, "standard": 1024, "cheap": 1024}


#: The price table, read from ``seeds/model_prices.csv`` (`generator.seeds`): the warehouse
#: prices spans from the same file. It holds a provider price cut (nimbus-mini from 2026-01-15)
#: the warehouse must apply by date.
MODEL_PRICES: Final = read_model_prices()


@dataclass(frozen=True)
class Tool:
    """A tool the planner can call, and the dependency behind it."""

    name: str
    dependency: str
    median_ms: float
    timeout_ms: int
    result_bytes_median: float


TOOLS: Final[dict[str, Tool]] = {
    t.name: t
    for t in (
        Tool("billing_lookup", "billing-db", 180.0, 4000, 2400.0),
        Tool("account_lookup", "crm-api", 120.0, 3000, 1800.0),
        Tool("order_status", "orders-api", 150.0, 3000, 900.0),
        Tool("refund_create", "payments-api", 320.0, 5000, 400.0),
        Tool("ticket_create", "ticketing-api", 260.0, 5000, 300.0),
    )
}
TOOL_NAMES: Final = tuple(TOOLS)
TOOLS_AVAILABLE: Final[dict[str, tuple[str, ...]]] = {
    "support": ("account_lookup", "order_status", "ticket_create", "billing_lookup"),
    "billing": ("billing_lookup", "refund_create", "account_lookup"),
    "qa": ("order_status",),
    "summarization": (),
    "extraction": (),
}


#: The tool-requirement rules, read from ``seeds/tool_requirements.csv``.
TOOL_REQUIREMENTS: Final = read_tool_requirements()

VALIDATORS: Final = ("policy", "citation_check", "json_schema", "pii_filter", "formatter")
EMBEDDING_MODEL: Final = "embed-v3-small"
RERANKER_MODEL: Final = "xrank-mini"
SERVICE_BY_SPAN_TYPE: Final = {
    "request": "copilot-gateway", "classify": "copilot-orchestrator",
    "query_rewrite": "copilot-orchestrator", "embedding": "retrieval-svc",
    "retrieval": "retrieval-svc", "rerank": "retrieval-svc",
    "context_assembly": "copilot-orchestrator", "model_routing": "llm-gateway",
    "llm": "llm-gateway", "tool_planning": "copilot-orchestrator", "tool_call": "tool-runner",
    "postprocess": "guardrails", "delivery": "web-client",
}

# Baseline behaviour, and what each incident changes while active in its segment.
BASE_TOP_K: Final = 8
BASE_TOP_N: Final = 5
BASE_TOKEN_BUDGET: Final = 8000

# --------------------------------------------------------------------------------------------
# Version timelines
# --------------------------------------------------------------------------------------------

BASE_VERSIONS: Final[dict[str, str]] = {
    "retriever_version": "ret-v3",
    "index_version": "idx-0041",
    "embedding_version": "emb-2025.11",
    "reranker_version": "rr-2.3",
    "classifier_version": "intent-clf-7",
    "rewrite_strategy_version": "rw-v4",
    "route_policy_version": "rp-v5",
    "planner_version": "planner-v3",
    "context_policy_version": "ctx-v2",
    "policy_block_version": "pb-v6",
    "prompt_version:support": "support-v14",
    "prompt_version:qa": "qa-v9",
    "prompt_version:billing": "billing-v6",
    "prompt_version:summarization": "summarization-v5",
    "prompt_version:extraction": "extraction-v7",
    "validator_version:policy": "policy-v7",
    "validator_version:citation_check": "cite-v3",
    "validator_version:json_schema": "jsonschema-v2",
    "validator_version:pii_filter": "pii-v5",
    "validator_version:formatter": "fmt-v1",
    "tool_version:billing_lookup": "2.4.0",
    "tool_version:account_lookup": "1.9.2",
    "tool_version:order_status": "3.1.0",
    "tool_version:refund_create": "1.2.1",
    "tool_version:ticket_create": "0.8.4",
}


def _bump(value: str) -> str:
    """Next version label: the trailing number goes up by one (``qa-v9`` -> ``qa-v10``)."""
    head = value.rstrip("0123456789")
    tail = value[len(head):]
    if not tail:
        return value + "-2"
    return head + str(int(tail) + 1).zfill(len(tail) if tail.startswith("0") else 0)


def rollout_u(t_us: np.ndarray, salt: int) -> np.ndarray:
    """A per-trace uniform in [0, 1) from its root start time and a deploy's salt.

    Every timeline a deploy changes uses the same salt, so a trace is on the canary release for
    all of the deploy's components or for none, and the incident a canary ships reads the very
    same draw (``Incident.active``).
    """
    h = mix64(np.asarray(t_us, np.int64), salt)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass
class Timeline:
    """A step function of time: the label in force at each instant (µs since the Unix epoch).

    A change can roll out as a canary: from ``times[i]`` to ``full[i]`` only the traces whose
    ``rollout_u(t, salt[i]) < share[i]`` carry ``values[i]``; the others keep the label before.
    """

    times: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    full: list[int] = field(default_factory=list)
    share: list[float] = field(default_factory=list)
    salt: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        k = len(self.times)
        self.full = self.full or list(self.times)
        self.share = self.share or [1.0] * k
        self.salt = self.salt or [0] * k

    def set(self, t_us: int, value: str, *, full_us: int | None = None, share: float = 1.0,
            salt: int = 0) -> None:
        """Record a change to ``value`` at ``t_us`` (in time order), on ``share`` of the traffic
        until ``full_us`` (a canary) and on all of it afterwards."""
        self.times.append(t_us)
        self.values.append(value)
        self.full.append(t_us if full_us is None else full_us)
        self.share.append(share)
        self.salt.append(salt)

    def current(self) -> str:
        """The latest recorded value."""
        return self.values[-1]

    def index_at(self, t_us: np.ndarray) -> np.ndarray:
        """Index into ``values`` of the label each trace (by root start time) carries."""
        t_us = np.asarray(t_us, np.int64)
        i = np.searchsorted(np.asarray(self.times, np.int64), t_us, side="right") - 1
        if len(self.times) == 0 or all(f == t for f, t in zip(self.full, self.times, strict=True)):
            return i
        j = np.maximum(i, 0)
        rolling = (i >= 0) & (t_us < np.asarray(self.full, np.int64)[j])
        if rolling.any():
            out = i.copy()
            for k in np.unique(j[rolling]):
                m = rolling & (j == k)
                off = rollout_u(t_us[m], self.salt[k]) >= self.share[k]
                out[np.flatnonzero(m)[off]] = k - 1
            return out
        return i


# --------------------------------------------------------------------------------------------
# Incidents
# --------------------------------------------------------------------------------------------

INCIDENT_KINDS: Final = (
    "reranker_degradation",
    "prompt_truncation",
    "route_downgrade",
    "guardrail_overfire",
    "tool_slowdown",
    "cost_creep",
    "citation_mismatch",
)


@dataclass(frozen=True)
class TruthEntry:
    """One (segment, metrics) movement an incident causes: a row of the truth file."""

    name: str
    segment: str
    direction: dict[str, str]
    #: Side effects: (segment, metric, direction) the mechanism also moves (see `side_effects`).
    side_effects: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Incident:
    """An injected failure: active for traces in its segment whose root starts in [start, end)."""

    kind: str
    cycle: int
    start_us: int
    end_us: int
    dim: str  # which attribute selects the affected traces: all, task_type, route_name, tool_name
    value: str  # the selected value ('' for all)
    cause: str | None
    entries: list[TruthEntry] = field(default_factory=list)
    #: A canary rollout of the cause: until ``full_us`` only traces with
    #: ``rollout_u(t, rollout_salt) < rollout_share`` are affected (``full_us == start_us``:
    #: the deploy reached all traffic at once).
    full_us: int = 0
    rollout_share: float = 1.0
    rollout_salt: int = 0
    #: ``dim=value`` of versions that shipped within minutes of the cause and do nothing.
    shipped_with: list[str] = field(default_factory=list)
    #: How the incident ended: ``fix`` (a new version), ``rollback`` (the previous version
    #: again) or ``recovery`` (no deploy: a dependency recovered).
    ended_by: str = "fix"

    @property
    def name(self) -> str:
        """A unique name: kind and cycle."""
        return f"{self.kind}-{self.cycle + 1}"

    @property
    def segment(self) -> str:
        """The contract's segment key of the affected traces."""
        return "all" if self.dim == "all" else f"{self.dim}={self.value}"

    def active(self, t_us: np.ndarray) -> np.ndarray:
        """Boolean mask: which traces (by root start time) the incident affects."""
        m = (t_us >= self.start_us) & (t_us < self.end_us)
        canary = m & (t_us < self.full_us)
        if canary.any():
            m[canary] = rollout_u(t_us[canary], self.rollout_salt) < self.rollout_share
        return m


@dataclass
class Deploy:
    """A deploy: a new release and the version changes that ship with it."""

    time_us: int
    release_sha: str
    app_version: str
    changes: dict[str, str] = field(default_factory=dict)
    #: A canary: until ``full_us`` the deploy serves only ``share`` of the traffic.
    full_us: int | None = None
    share: float = 1.0
    #: A component deploy (one service): changes versions but not ``release_sha`` / ``app_version``.
    component_only: bool = False

    @property
    def salt(self) -> int:
        """The rollout salt shared by every timeline this deploy changes."""
        return self.time_us & 0xFFFFFFFF


@dataclass
class World:
    """Everything about the simulated system that does not depend on the day's random draws."""

    seed: int
    epoch: date
    incidents_enabled: bool
    tenant_ids: tuple[str, ...]
    tenant_tier: np.ndarray  # index into TIERS per tenant
    tenant_weight: np.ndarray
    tenant_users: np.ndarray
    deploys: list[Deploy]
    timelines: dict[str, Timeline]
    incidents: list[Incident]  # all scheduled incidents (also when disabled: for reference)

    def active_incidents(self) -> list[Incident]:
        """The incidents whose effects are simulated (none in a ``--no-incidents`` lake)."""
        return self.incidents if self.incidents_enabled else []


def to_us(d: date | datetime) -> int:
    """µs since the Unix epoch of a date (its UTC midnight) or an aware datetime."""
    if not isinstance(d, datetime):
        d = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return int(d.timestamp()) * US_PER_S + d.microsecond


def us_to_iso(t_us: int) -> str:
    """ISO 8601 UTC text of a µs timestamp."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t_us)).isoformat().replace(
        "+00:00", "Z"
    )


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator seeded from the seed and any keys (strings are hashed stably)."""
    ints = [seed & 0xFFFFFFFF]
    for k in keys:
        if isinstance(k, str):
            h = 2166136261
            for ch in k.encode():
                h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
            ints.append(h)
        else:
            ints.append(int(k) & 0xFFFFFFFF)
    return np.random.default_rng(ints)


def _sha(rng: np.random.Generator) -> str:
    return "".join(f"{x:02x}" for x in rng.integers(0, 256, 20))


def _deploy_times(seed: int, epoch: date, cycles: int) -> list[int]:
    """Weekday deploys in working hours, every 1-3 weekdays, from a few days before the epoch."""
    times = []
    day = epoch - timedelta(days=3)
    end = epoch + timedelta(days=CYCLE_DAYS * cycles)
    rng = rng_for(seed, "deploys")
    while day < end:
        if day.weekday() < 5:
            hour = int(rng.integers(9, 18))
            minute = int(rng.integers(0, 60))
            times.append(to_us(day) + (hour * 3600 + minute * 60) * US_PER_S)
            day += timedelta(days=int(rng.choice([1, 1, 1, 2, 2, 3])))
        else:
            day += timedelta(days=1)
    return times


_HARMLESS_DIMS: Final = (
    "prompt_version:support", "prompt_version:qa", "prompt_version:billing",
    "prompt_version:summarization", "prompt_version:extraction",
    "tool_version:billing_lookup", "tool_version:account_lookup", "tool_version:order_status",
    "tool_version:refund_create", "tool_version:ticket_create", "index_version",
    "classifier_version", "validator_version:formatter", "validator_version:pii_filter",
    "rewrite_strategy_version", "planner_version",
)


def _schedule_cycle(
    rng: np.random.Generator, cycle: int, epoch: date, deploy_times: list[int]
) -> tuple[list[Incident], dict[int, list[tuple[str, int]]], list[int]]:
    """Place the seven incidents of one cycle.

    Returns the incidents, {deploy time: [(role, incident index)]} and any hotfix deploys the
    placement had to add.
    """
    c0 = to_us(epoch) + cycle * CYCLE_DAYS * US_PER_DAY
    lo, hi = c0 + 4 * US_PER_DAY, c0 + 24 * US_PER_DAY
    candidates = [t for t in deploy_times if lo <= t <= hi]
    regular = set(deploy_times)
    hotfixes: list[int] = []
    day = US_PER_DAY
    duration_days = {
        "reranker_degradation": (4, 7), "prompt_truncation": (4, 7), "route_downgrade": (4, 7),
        "guardrail_overfire": (3, 6), "cost_creep": (6, 9), "citation_mismatch": (4, 7),
        "tool_slowdown": (3, 5),
    }
    # metric+segment conflicts: these pairs must not overlap in time
    conflicts = (("reranker_degradation", "prompt_truncation"), ("route_downgrade", "cost_creep"),
                 ("reranker_degradation", "cost_creep"))
    best: dict[str, tuple[int, int, int | None, int | None]] | None = None
    for extra in (False, True):  # last resort: allow a hotfix deploy on any day
        if extra:
            deploy_times = sorted(set(deploy_times) | {lo + k * day + 11 * 3600 * US_PER_S
                                                       for k in range(21)})
            candidates = [t for t in deploy_times if lo <= t <= hi]
        for attempt in range(3000):
            # sparse deploys: bring the starts closer together rather than fail
            gap = (1.2, 2.2) if attempt < 2000 else (0.6, 1.4)
            order = [str(k) for k in rng.permutation(np.array(INCIDENT_KINDS))]
            starts: dict[str, tuple[int, int | None]] = {}
            used: set[int] = set()
            t = lo + int(rng.uniform(0, 1) * day)
            for kind in order:
                if kind == "tool_slowdown":
                    start, di = t, None
                else:
                    di = next((x for x in candidates if x >= t and x not in used), None)
                    if di is None:
                        break
                    used.add(di)
                    start = di
                if start > hi:
                    break
                starts[kind] = (start, di)
                t = start + int(rng.uniform(*gap) * day)
            if len(starts) < len(INCIDENT_KINDS):
                continue
            plan: dict[str, tuple[int, int, int | None, int | None]] = {}
            for kind, (start, di) in starts.items():
                lo_d, hi_d = duration_days[kind]
                target = start + int(rng.uniform(lo_d, hi_d) * day)
                fix = None
                if di is not None:  # a fix ships in a later deploy that starts nothing else
                    fix = next((x for x in deploy_times if x >= target and x not in used), None)
                plan[kind] = (start, fix if fix is not None else target, di, fix)
            ok = True
            hotfixes = []
            for pair in conflicts:  # the earlier of two conflicting incidents is fixed in time
                a, b = sorted(pair, key=lambda k: plan[k][0])
                (sa, ea, da, _), sb = plan[a], plan[b][0]
                if ea <= sb:
                    continue
                early = [x for x in deploy_times if sa + 2 * day <= x <= sb - day and x not in used]
                if not early:  # no deploy in between: ship a hotfix the day before b starts
                    hot = sb - day
                    if hot < sa + 2 * day:
                        ok = False
                        break
                    hotfixes.append(hot)
                    early = [hot]
                plan[a] = (sa, early[-1], da, early[-1])
            if ok:
                best = plan
                break
        if best is not None:
            break
    if best is None:
        raise RuntimeError(f"could not place the incidents of cycle {cycle}")
    hotfixes = sorted({x for p in best.values() for x in (p[2], p[3])
                       if x is not None and x not in regular} | set(hotfixes))

    roles: dict[int, list[tuple[str, int]]] = {}
    incidents: list[Incident] = []
    for kind in INCIDENT_KINDS:
        start, end, di, fix = best[kind]
        if kind == "prompt_truncation":
            dim, value = "task_type", str(rng.choice(["qa", "support"]))
        elif kind == "guardrail_overfire":
            dim, value = "task_type", str(rng.choice(["support", "billing"]))
        elif kind == "route_downgrade":
            dim, value = "route_name", "standard"
        elif kind == "tool_slowdown":
            dim, value = "tool_name", str(rng.choice(["billing_lookup", "account_lookup"]))
        else:
            dim, value = "all", ""
        inc = Incident(kind, cycle, start, end, dim, value, None)
        incidents.append(inc)
        if di is not None:
            roles.setdefault(di, []).append(("start", len(incidents) - 1))
        if fix is not None:
            roles.setdefault(fix, []).append(("fix", len(incidents) - 1))
    return incidents, roles, hotfixes


def _incident_change(kind: str, inc: Incident) -> str | None:
    """The version dimension an incident's deploy changes (None: only the release)."""
    return {
        "reranker_degradation": "retriever_version",
        "prompt_truncation": f"prompt_version:{inc.value}",
        "route_downgrade": "route_policy_version",
        "guardrail_overfire": "validator_version:policy",
        "cost_creep": "retriever_version",
    }.get(kind)


def _required_by(tool: str) -> list[str]:
    """The task types whose tool-requirement rules name ``tool``."""
    return sorted({r.task_type for r in TOOL_REQUIREMENTS if r.tool_name == tool})


#: What a worse answer does to the user signals (``feedback.py``: a trace that went wrong draws
#: thumbs-down, escalations and regenerates instead of thumbs-up and completed tasks, and a
#: successful task needs no thumbs-down, escalation or abandonment).
_WORSE_ANSWERS: Final = (("thumbs_down_rate", "up"), ("thumbs_up_rate", "down"),
                         ("escalation_rate", "up"), ("regenerate_rate", "up"),
                         ("task_success_rate", "down"))


def side_effects(inc: Incident) -> list[tuple[str, str, str]]:
    """(segment, metric, direction) the incident's mechanism moves besides its primary metrics.

    Derived from the mechanism in ``traces.py`` / ``feedback.py``, not from what a detector
    reports, and each one is checked in the raw lake by ``tests/test_generator.py``:

    * an incident that serves most of the affected traffic badly moves its user signals
      (``_WORSE_ANSWERS``: the reranker degradation, and the truncating prompt but for the rare
      escalations). Incidents that hurt a smaller part of their traffic (a guardrail blocking
      18%, a downgraded route's requests that need a tool, a slow tool's callers) move user
      signals too little to verify on a small lake next to other incidents: not listed, but
      the guardrail's lost successes raise the cost per successful task;
    * ``cost_creep`` (top_k 8 -> 20, top_n 5 -> 10): the retrieval and rerank stages take longer
      (their durations grow with the candidates), and the total and per-success cost rise with
      the tokens;
    * ``prompt_truncation``: a tiny token budget sends far fewer input tokens: cost per request
      and total cost of the segment fall;
    * ``route_downgrade``: the smaller model is cheaper and faster (latency, total cost and cost
      per successful task of the route fall) and takes the traffic the route's model loses
      (``model_share`` / ``request_count`` of the two models);
    * ``tool_slowdown``: the tool's own latency, the planning stage that waits for it (p95), and
      the requests that need the tool (latency up, success down: a timed-out tool degrades the
      answer; its user signals are diluted by the requests that do not call it);
    * ``citation_mismatch``: none listed (a mild failure: its user signals are within noise).
    """
    seg = inc.segment
    worse = [(seg, m, d) for m, d in _WORSE_ANSWERS]
    if inc.kind == "reranker_degradation":
        return worse
    if inc.kind == "prompt_truncation":
        return [*(x for x in worse if x[1] != "escalation_rate"),
                (seg, "cost_per_request_usd", "down"), (seg, "cost_usd_total", "down")]
    if inc.kind == "route_downgrade":
        small, base = "atlas-small", ROUTES[inc.value]
        return [
            (seg, "latency_p50_ms", "down"), (seg, "latency_p95_ms", "down"),
            (seg, "cost_usd_total", "down"), (seg, "cost_per_successful_task_usd", "down"),
            (f"model_name={base}", "request_count", "down"),
            (f"model_name={small}", "model_share", "up"),
            (f"model_name={small}", "request_count", "up"),
        ]
    if inc.kind == "guardrail_overfire":
        return [(seg, "cost_per_successful_task_usd", "up")]
    if inc.kind == "tool_slowdown":
        out = [(seg, "latency_p50_ms", "up"), (seg, "latency_p95_ms", "up"),
               ("span_type=tool_call", "latency_p50_ms", "up"),
               ("span_type=tool_planning", "latency_p95_ms", "up")]
        for task in _required_by(inc.value):
            out += [(f"task_type={task}", "task_success_rate", "down"),
                    (f"task_type={task}", "latency_p95_ms", "up")]
        return out
    if inc.kind == "cost_creep":
        return [(seg, "cost_usd_total", "up"), (seg, "cost_per_successful_task_usd", "up"),
                *((f"span_type={st}", m, "up") for st in ("retrieval", "rerank")
                  for m in ("latency_p50_ms", "latency_p95_ms"))]
    return []  # citation_mismatch: a mild failure (severity 0.35), no clear user signal


def _truth_entries(inc: Incident) -> list[TruthEntry]:
    entries = _primary_entries(inc)
    listed = {(e.segment, m) for e in entries for m in e.direction}
    extra = tuple(x for x in side_effects(inc) if (x[0], x[1]) not in listed)
    head = entries[0]
    entries[0] = TruthEntry(head.name, head.segment, head.direction, extra)
    return entries


def _primary_entries(inc: Incident) -> list[TruthEntry]:
    seg = inc.segment
    if inc.kind == "reranker_degradation":
        return [TruthEntry(inc.name, seg, {"retrieval_hit_rate": "down", "thumbs_down_rate": "up"})]
    if inc.kind == "prompt_truncation":
        return [TruthEntry(inc.name, seg, {"context_truncation_rate": "up",
                                           "retrieval_hit_rate": "down"})]
    if inc.kind == "route_downgrade":
        base = ROUTES[inc.value]
        return [
            TruthEntry(inc.name, seg, {"required_tool_missing_rate": "up", "tool_call_rate": "down",
                                       "cost_per_request_usd": "down"}),
            TruthEntry(f"{inc.name}.model_share", f"model_name={base}", {"model_share": "down"}),
        ]
    if inc.kind == "guardrail_overfire":
        return [TruthEntry(inc.name, seg, {"guardrail_block_rate": "up",
                                           "task_success_rate": "down"})]
    if inc.kind == "tool_slowdown":
        return [
            TruthEntry(inc.name, seg, {"tool_timeout_rate": "up", "tool_error_rate": "up"}),
            TruthEntry(f"{inc.name}.latency", "span_type=tool_call", {"latency_p95_ms": "up"}),
        ]
    if inc.kind == "cost_creep":
        return [TruthEntry(inc.name, seg, {"cost_per_request_usd": "up"})]
    return [TruthEntry(inc.name, seg, {"citation_mismatch_rate": "up"})]


@dataclass(frozen=True)
class RolloutPlan:
    """How an incident's cause ships: its canary, the component deploy minutes away, its end."""

    canary: str  # "cause", "companion" or "" (both at once)
    share: float  # canary share of traffic
    canary_us: int  # canary duration
    offset_us: int  # companion deploy time minus the cause deploy time (minutes, either side)
    companion_dims: tuple[str, ...]
    ended_by: str  # "fix" or "rollback"


#: The harmless versions that ship within minutes of each kind's cause: in the same pipeline
#: stage where one exists, so that the stage prior cannot tell them apart.
COMPANION_DIMS: Final[dict[str, tuple[str, ...]]] = {
    "reranker_degradation": ("embedding_version", "index_version"),
    "cost_creep": ("index_version",),
    "prompt_truncation": ("classifier_version",),
    "route_downgrade": ("planner_version",),
    "guardrail_overfire": ("validator_version:pii_filter",),
    "citation_mismatch": ("validator_version:citation_check",),
}


def _rollout_plan(seed: int, t_us: int, inc: Incident) -> RolloutPlan:
    """Draw how the deploy at ``t_us`` that starts ``inc`` rolls out (a function of both only).

    Half of the causes ship as a canary (5-25% of traffic for 2-8 hours), a quarter of the
    time the component deploy next to it is the canary instead; the component deploy lands 2-20
    minutes before or after the cause; 40% of the fixes are rollbacks to the previous version.
    """
    rng = rng_for(seed, "rollout", t_us & 0xFFFFFFFF, t_us >> 32)
    u = float(rng.random())
    canary = "cause" if u < 0.5 else "companion" if u < 0.75 else ""
    share = float(rng.uniform(0.05, 0.25))
    hours = float(rng.uniform(2.0, 8.0))
    minutes = float(rng.uniform(2.0, 20.0)) * (1 if rng.random() < 0.5 else -1)
    rollback = rng.random() < 0.4
    return RolloutPlan(canary, share, int(hours * 3600) * US_PER_S,
                       int(minutes * 60) * US_PER_S, COMPANION_DIMS.get(inc.kind, ()),
                       "rollback" if rollback else "fix")


def _apply(dep: Deploy, timelines: dict[str, Timeline]) -> None:
    """Record a deploy's changes in the timelines (a canary in each, with the deploy's salt)."""
    kw = {"full_us": dep.full_us, "share": dep.share, "salt": dep.salt}
    if not dep.component_only:
        timelines["release_sha"].set(dep.time_us, dep.release_sha, **kw)  # type: ignore[arg-type]
        timelines["app_version"].set(dep.time_us, dep.app_version, **kw)  # type: ignore[arg-type]
    for dim, value in dep.changes.items():
        timelines[dim].set(dep.time_us, value, **kw)  # type: ignore[arg-type]


def build_world(seed: int, epoch: date, until: date, *, incidents: bool = True) -> World:
    """The world for a lake with this seed and epoch, covering at least up to ``until``.

    Tenants, deploys, version changes and incident times depend only on ``seed`` and ``epoch``
    (cycle by cycle), never on ``until``; ``incidents=False`` keeps the same deploys and version
    labels but switches every incident's effect off.
    """
    cycles = max(1, -(-(until - epoch).days // CYCLE_DAYS) + 1)
    rng = rng_for(seed, "tenants")
    n_t = len(TENANT_NAMES)
    tier = np.concatenate([np.zeros(6, np.int64), np.ones(12, np.int64), np.full(n_t - 18, 2)])
    tier = rng.permutation(tier)
    weight = 1.0 / np.arange(1, n_t + 1) ** 0.8
    weight = rng.permutation(weight)
    weight = weight / weight.sum()
    users = np.where(tier == 0, 3000, np.where(tier == 1, 800, 150))
    tenant_ids = tuple(f"tn-{name}" for name in TENANT_NAMES)

    deploy_times = _deploy_times(seed, epoch, cycles)
    timelines = {k: Timeline([-(2**62)], [v]) for k, v in BASE_VERSIONS.items()}
    timelines["release_sha"] = Timeline()
    timelines["app_version"] = Timeline()

    all_incidents: list[Incident] = []
    roles: dict[int, list[tuple[str, int]]] = {}
    hotfixes: set[int] = set()
    for c in range(cycles):
        incs, r, hot = _schedule_cycle(rng_for(seed, "incidents", c), c, epoch, deploy_times)
        offset = len(all_incidents)
        all_incidents.extend(incs)
        hotfixes.update(hot)
        for di, lst in r.items():
            roles.setdefault(di, []).extend((role, i + offset) for role, i in lst)
    deploy_times = sorted(set(deploy_times) | hotfixes)

    starts = {t: ii for t, lst in roles.items() for role, ii in lst if role == "start"}
    plans = {t: _rollout_plan(seed, t, all_incidents[ii]) for t, ii in starts.items()}
    companions = {t + p.offset_us: t for t, p in plans.items()}

    newest: dict[str, str] = {}  # the last label each dimension shipped (a rollback reuses one)

    def bump(dim: str) -> str:
        cur = newest.get(dim, timelines[dim].current())
        newest[dim] = _bump_embedding(cur) if dim == "embedding_version" else _bump(cur)
        return newest[dim]

    rng = rng_for(seed, "versions")
    deploys: list[Deploy] = []
    minor, patch = 12, 0
    for t in sorted(set(deploy_times) | set(companions)):
        if t in companions and t not in roles:  # a component deploy next to an incident's
            cause_t = companions[t]
            plan = plans[cause_t]
            dep = Deploy(t, "", "", component_only=True)
            for cdim in plan.companion_dims:
                dep.changes[cdim] = bump(cdim)
            if plan.canary == "companion":
                dep.full_us, dep.share = t + plan.canary_us, plan.share
            started = all_incidents[starts[cause_t]]
            started.shipped_with = [f"{d.split(':')[0]}={v}" for d, v in dep.changes.items()]
            _apply(dep, timelines)
            deploys.append(dep)
            continue
        patch += 1
        if rng.random() < 0.2:
            minor, patch = minor + 1, 0
        dep = Deploy(t, _sha(rng), f"3.{minor}.{patch}")
        involved = roles.get(t, [])
        for role, ii in involved:
            inc = all_incidents[ii]
            dim = _incident_change(inc.kind, inc)
            if dim is not None:
                if role == "fix" and inc.ended_by == "rollback":
                    dep.changes[dim] = timelines[dim].values[-2]
                else:
                    dep.changes[dim] = bump(dim)
            if role == "start":
                plan = plans[t]
                if plan.canary == "cause":
                    dep.full_us, dep.share = t + plan.canary_us, plan.share
                inc.full_us = dep.full_us or t
                inc.rollout_share, inc.rollout_salt = dep.share, dep.salt
                inc.ended_by = plan.ended_by if dim is not None else "fix"  # a new release
                if inc.kind == "route_downgrade":  # the route's model is what visibly changed
                    inc.cause = "model_name=atlas-small"
                elif dim is not None:
                    inc.cause = f"{dim.split(':')[0]}={dep.changes[dim]}"
                else:
                    inc.cause = f"release_sha={dep.release_sha}"
            elif dim == "retriever_version":
                dep.changes["index_version"] = bump("index_version")
        if not involved and rng.random() < 0.75:  # a no-effect deploy often changes something
            busy = {_incident_change(i.kind, i) for i in all_incidents
                    if i.start_us <= t < i.end_us}
            for dim in rng.choice(_HARMLESS_DIMS, size=int(rng.integers(1, 3)), replace=False):
                if str(dim) not in busy:
                    dep.changes[str(dim)] = bump(str(dim))
        _apply(dep, timelines)
        deploys.append(dep)
    for inc in all_incidents:
        if inc.cause is None:
            inc.ended_by = "recovery"
        inc.full_us = max(inc.full_us, inc.start_us)
    for inc in all_incidents:
        inc.entries = _truth_entries(inc)
    return World(
        seed=seed,
        epoch=epoch,
        incidents_enabled=incidents,
        tenant_ids=tenant_ids,
        tenant_tier=tier,
        tenant_weight=weight,
        tenant_users=users,
        deploys=deploys,
        timelines=timelines,
        incidents=all_incidents,
    )


def _bump_embedding(value: str) -> str:
    # emb-2025.11 -> emb-2026.01 style: a new embedding model generation
    year, month = value.removeprefix("emb-").split(".")
    m = int(month) + 2
    y = int(year) + (m - 1) // 12
    return f"emb-{y}.{(m - 1) % 12 + 1:02d}"


def truth_records(world: World, until_us: int) -> list[dict[str, object]]:
    """The truth file's rows: every incident entry that started before ``until_us``.

    ``end_time`` is null when the incident is still active at ``until_us`` (the lake's end).
    """
    rows: list[dict[str, object]] = []
    for inc in sorted(world.active_incidents(), key=lambda i: i.start_us):
        if inc.start_us >= until_us:
            continue
        for e in inc.entries:
            rows.append(
                {
                    "name": e.name,
                    "kind": inc.kind,
                    "start_time": us_to_iso(inc.start_us),
                    "end_time": us_to_iso(inc.end_us) if inc.end_us < until_us else None,
                    "segment": e.segment,
                    "cause": inc.cause,
                    "full_time": us_to_iso(inc.full_us),
                    "rollout_share": round(inc.rollout_share, 4),
                    "shipped_with": list(inc.shipped_with),
                    "ended_by": inc.ended_by,
                    "metrics": list(e.direction),
                    "direction": dict(e.direction),
                    "side_effects": [{"segment": sg, "metric": m, "direction": d}
                                     for sg, m, d in e.side_effects],
                }
            )
    return rows


def price_arrays(model_idx: np.ndarray, t_us: np.ndarray) -> tuple[np.ndarray, ...]:
    """(input, output, cached input) USD per token for each (model index, time)."""
    inp = np.zeros(len(model_idx))
    out = np.zeros(len(model_idx))
    cached = np.zeros(len(model_idx))
    for p in sorted(MODEL_PRICES, key=lambda p: p.effective_from):
        m = (model_idx == MODEL_NAMES.index(p.model_name)) & (t_us >= to_us(p.effective_from))
        inp[m] = p.input_usd_per_1m / 1e6
        out[m] = p.output_usd_per_1m / 1e6
        cached[m] = p.cached_input_usd_per_1m / 1e6
    return inp, out, cached
