"""Evidence for suspected causes: the metric among the traces that carry a version and those that
do not, and how much of a change each version explains.

For a change of `metric` in `segment_key` at `change_at`, the traces of the segment in a window
around it (`WINDOW_BEFORE` / `WINDOW_AFTER`) are read from `marts.fct_requests` with the metric's
per-trace numerator and denominator (`TRACE_METRICS`) and one indicator per candidate version
(does the trace carry it? For `release_sha` / `app_version`, which change at every deploy: does
it carry that release or a later one, i.e. the code the release shipped).

1. Candidates whose indicators are identical on every trace of the window always travel
   together: they form one **group**, reported as a tie.
2. A weighted linear model `y ~ 1 + x_1 + ... + x_k` (weights: the metric's denominator per
   trace) estimates each group's effect with the others held fixed: a canary or a gradual
   rollout separates versions within the same hours, a component shipped minutes or a day
   apart by the traces in between.
3. A group **explains** `effect * (share of traces carrying it after - before) / change` of
   the change (before / after `change_at` in the window), with a standard error. Only a group
   whose share rose (a version that arrived) can explain it: the version the cause replaced
   (`ret-v5` when `ret-v6` arrives) mirrors the cause's indicator but is not a suspect of its
   own.
   **Same hours first**: where the window has traces with and without a group in the same
   hour, task type and route (a canary, a gradual rollout, the minutes between two deploys),
   the comparison within those cells, in the group's scope, replaces the before/after estimate
   when it is conclusive (`_same_hours`): it **supports** the group or **refutes** it (explains
   less than half at two standard errors: a harmless canary). A refuted group is held at its
   effect in the before/after model; only groups that arrived are its regressors; groups it
   cannot separate (nearly the same indicator, effects within 2 se) share their joint estimate.
   Groups are ranked by the lower bound `min(explained, 1) - 2 se` (how much, and how sure),
   except that a before/after-only group never ranks above a same-hours-supported group whose
   indicator it nearly shares; then groups without positive evidence in the timing prior's
   order (`attribution.prior_key`); then refuted groups.
4. A group whose indicator is almost the same as a better-ranked group's (correlation ≥ 0.9)
   and whose effect is not distinguishable from it (|difference| < 2 se) is **tied** with it:
   the data cannot tell them apart, so they are not ranked by a coin flip.

Latency percentiles are compared as the share of traces slower than the percentile before the
change (a change of the p95 is a change of that share); `request_count` has no per-trace
evidence and keeps the prior's order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from tracehouse.detect.attribution import GENERIC_DIMENSIONS, Version

WINDOW_BEFORE = timedelta(days=3)
WINDOW_AFTER = timedelta(days=3)
#: Indicators this correlated, with effects within 2 standard errors, are reported as a tie.
TIE_CORRELATION = 0.9
#: A trace-level definition per metric: (numerator SQL, denominator SQL) over fct_requests.
TRACE_METRICS: dict[str, tuple[str, str]] = {
    "error_rate": ("is_error::int", "1"),
    "cost_per_request_usd": ("cost_usd", "1"),
    "cost_usd_total": ("cost_usd", "1"),
    "cost_per_successful_task_usd": ("cost_usd", "1"),
    "task_success_rate": ("is_successful_task::int", "1"),
    "thumbs_down_rate": ("has_thumbs_down::int", "1"),
    "thumbs_up_rate": ("has_thumbs_up::int", "1"),
    "escalation_rate": ("has_escalation::int", "1"),
    "regenerate_rate": ("has_regenerate::int", "1"),
    "tool_call_rate": ("has_tool_call::int", "1"),
    "required_tool_missing_rate": ("is_required_tool_missing::int", "needs_tool::int"),
    "tool_error_rate": ("tool_error_count", "tool_call_count"),
    "tool_timeout_rate": ("tool_timeout_count", "tool_call_count"),
    "retrieval_hit_rate": ("is_retrieval_hit::int", "is_retrieval_judged::int"),
    "retrieval_zero_result_rate": ("retrieval_zero_result_span_count", "retrieval_span_count"),
    "retrieval_score_mean": ("retrieval_score_sum", "retrieval_score_count"),
    "context_truncation_rate": ("is_context_truncated::int", "1"),
    "citation_mismatch_rate": ("is_citation_mismatch::int", "has_citation_check::int"),
    "guardrail_block_rate": ("is_guardrail_blocked::int", "1"),
    "format_parse_failure_rate": ("has_format_failure::int", "1"),
}
LATENCY_QUANTILE = {"latency_p95_ms": 0.95, "latency_p50_ms": 0.5}
SPAN_TYPES = ("classify", "query_rewrite", "embedding", "retrieval", "rerank",
              "context_assembly", "model_routing", "llm", "tool_planning", "tool_call",
              "postprocess", "delivery")
SCALAR_VERSION_COLUMNS = frozenset({
    "release_sha", "app_version", "prompt_version", "retriever_version", "index_version",
    "embedding_version", "reranker_version", "route_policy_version", "classifier_version",
    "planner_version", "system_prompt_version", "model_name",
})
LIST_VERSION_COLUMNS = {"validator_version": "validator_versions", "tool_version": "tool_versions"}


@dataclass
class Evidence:
    """One suspect group's evidence for one change."""

    members: list[Version]
    rank: int = 0
    tied: bool = False
    n_with: float = 0.0
    n_without: float = 0.0
    value_with: float = math.nan
    value_without: float = math.nan
    effect: float = math.nan
    se: float = math.nan
    explained: float = math.nan
    explained_se: float = math.nan
    prior: tuple[Any, ...] = field(default_factory=tuple)
    #: The evidence is the within-period comparison: traces with and without the group in the
    #: same hours (a canary, a gradual rollout), which can tell "explains all" from "none".
    same_hours: bool = False
    #: The same-hours verdict: "supports", "refutes" or "" (none conclusive). It sets the
    #: evidence class even where the before/after estimate is the one shown (`weigh`).
    verdict: str = ""

    @property
    def lower(self) -> float:
        """Lower bound of the share of the change explained (`min(explained, 1) - 2 se`)."""
        if not (math.isfinite(self.explained) and math.isfinite(self.explained_se)):
            return -math.inf
        # an estimate above the whole change is no better evidence than the whole change
        return min(self.explained, 1.0) - 2.0 * self.explained_se

    def describe(self, label: str) -> str:
        """The evidence clause of a formatted cause."""
        head = f"#{self.rank}" + (" tied" if self.tied else "")
        if not math.isfinite(self.value_with):
            return f"{head} | no per-trace evidence"
        where = " in the same hours" if self.same_hours else ""
        return (
            f"{head} | {label} {_num(self.value_with)} with (n={self.n_with:.0f}) vs "
            f"{_num(self.value_without)} without (n={self.n_without:.0f}){where} | explains "
            f"{self.explained:.0%} ± {2 * self.explained_se:.0%}"
            + (f" | the same hours {self.verdict} it" if self.verdict and not self.same_hours
               else "")
        )

    @property
    def tier(self) -> int:
        """Evidence class (lower ranks first): 0 a same-hours comparison that shows the group
        explains part of the change; 1 a before/after estimate that does; 2 no positive
        evidence; 3 a same-hours comparison that could have shown it and shows nothing."""
        if self.verdict:
            return 0 if self.verdict == "supports" and self.lower > 0 else 3
        return 1 if self.lower > 0 else 2


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.3g}" if abs(x) >= 0.001 else f"{x:.2g}"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def segment_filter(segment_key: str, metric: str) -> str | None:
    """SQL condition selecting the segment's traces in fct_requests (None: cannot select)."""
    if metric == "model_share" or segment_key == "all":
        return "true"
    conds = []
    for part in segment_key.split("|"):
        dim, _, value = part.partition("=")
        if dim in ("route_name", "model_name", "task_type"):
            conds.append(f"{dim} = {_quote(value)}")
        elif dim == "span_type" and value in SPAN_TYPES:
            conds.append(f"{value}_ms is not null")
        elif dim == "tool_name":
            conds.append(f"list_contains(tools_called, {_quote(value)})")
        else:
            return None
    return " and ".join(conds) or "true"


def metric_columns(metric: str, segment_key: str) -> tuple[str, str] | None:
    """(numerator SQL, denominator SQL) per trace, or None when the metric has no per-trace form.

    Latency metrics return the duration (the numerator is turned into 'slower than before'
    once the window is read).
    """
    if metric in TRACE_METRICS:
        return TRACE_METRICS[metric]
    if metric == "model_share":
        value = segment_key.partition("=")[2]
        return f"(model_name = {_quote(value)})::int", "1"
    if metric in LATENCY_QUANTILE:
        col = "duration_ms"
        for part in segment_key.split("|"):
            dim, _, value = part.partition("=")
            if dim == "span_type" and value in SPAN_TYPES:
                col = f"{value}_ms"
            elif dim == "tool_name":
                col = "tool_call_ms"
        return f"{col}::double", f"({col} is not null)::int"
    return None


def indicator_sql(v: Version, releases: dict[str, list[str]]) -> str | None:
    """SQL for 'the trace carries version `v`' (a release: it or a later one); NULL when the
    trace does not have that dimension at all (no retrieval, no policy validator run)."""
    if v.dimension in GENERIC_DIMENSIONS and v.dimension in releases:
        order = releases[v.dimension]
        if v.value in order:
            later = order[order.index(v.value):]
            return f"{v.dimension} in ({', '.join(map(_quote, later))})"
    if v.dimension in SCALAR_VERSION_COLUMNS:
        return f"{v.dimension} = {_quote(v.value)}"
    if v.dimension in LIST_VERSION_COLUMNS:
        col = LIST_VERSION_COLUMNS[v.dimension]
        name = v.scope_key.partition("=")[2]
        item = _quote(f"{name}={v.value}")
        has = f"strpos(',' || array_to_string({col}, ','), {_quote(',' + name + '=')}) > 0"
        return f"case when coalesce({has}, false) then list_contains({col}, {item}) end"
    return None


@dataclass
class Window:
    """The traces of one change's window: time, per-trace metric and candidate indicators."""

    t: np.ndarray  # µs
    y: np.ndarray
    w: np.ndarray
    x: np.ndarray  # float [n, k]: 1 carries, 0 carries another value, NaN lacks the dimension
    #: bool [n, k]: the trace is in the candidate's scope (`prompt_version` of `task_type=qa`:
    #: the qa traces); None: every trace is.
    scope: np.ndarray | None = None
    #: int [n]: the trace's task type and route (the same-hours comparison is made within
    #: them: a support prompt's traces are compared with support traces); None: one cell.
    cell: np.ndarray | None = None


def window_sql(metric: str, segment_key: str, change_at: datetime, *,
               candidates: Sequence[Version], releases: dict[str, list[str]]) -> str | None:
    """The query `read_window` runs on `marts.fct_requests` (None: the change has no per-trace
    evidence, nothing is read)."""
    cols = metric_columns(metric, segment_key)
    where = segment_filter(segment_key, metric)
    if cols is None or where is None:
        return None
    inds = [indicator_sql(v, releases) or "false" for v in candidates]
    lo = (change_at - WINDOW_BEFORE).astimezone(UTC).replace(tzinfo=None)
    hi = (change_at + WINDOW_AFTER).astimezone(UTC).replace(tzinfo=None)
    xs = "".join(f", ({s})::boolean as x{i}" for i, s in enumerate(inds))
    scopes = [segment_filter(v.scope_key, "") or "true" for v in candidates]
    xs += "".join(f", coalesce(({s}), false) as s{i}" for i, s in enumerate(scopes))
    return (
        f"select epoch_us(event_time) as t, hash(task_type, route_name) as cell, "
        f"({cols[0]})::double as num, "
        f"({cols[1]})::double as den{xs} from marts.fct_requests "
        f"where event_time >= timestamptz '{lo.isoformat()}+00' "
        f"and event_time < timestamptz '{hi.isoformat()}+00' and ({where})"
    )


def read_window(con: Any, metric: str, segment_key: str, change_at: datetime, *,
                candidates: Sequence[Version], releases: dict[str, list[str]]) -> Window | None:
    """Read the change's window from `marts.fct_requests` (None when it cannot be measured)."""
    sql = window_sql(metric, segment_key, change_at, candidates=candidates, releases=releases)
    if sql is None:
        return None
    k = len(candidates)
    tab = con.sql(sql).to_arrow_table()
    if tab.num_rows == 0:
        return None
    t = tab["t"].to_numpy(zero_copy_only=False).astype(np.int64)
    _, cell = np.unique(tab["cell"].to_numpy(zero_copy_only=False), return_inverse=True)
    num = tab["num"].to_numpy(zero_copy_only=False).astype(float)
    den = tab["den"].to_numpy(zero_copy_only=False).astype(float)
    x = np.column_stack([
        np.asarray(tab[f"x{i}"].cast(pa.float64()).to_numpy(zero_copy_only=False), float)
        for i in range(k)
    ]) if k else np.zeros((len(t), 0))
    scope = np.column_stack([
        np.asarray(tab[f"s{i}"].to_numpy(zero_copy_only=False), bool) for i in range(k)
    ]) if k else np.zeros((len(t), 0), bool)
    ok = np.isfinite(den) & (den > 0) & np.isfinite(num)
    t, num, den, x, scope, cell = t[ok], num[ok], den[ok], x[ok], scope[ok], cell[ok]
    if metric in LATENCY_QUANTILE:
        before = t < _us(change_at)
        if before.sum() < 20:
            return None
        q = float(np.quantile(num[before], LATENCY_QUANTILE[metric]))
        return Window(t, (num > q).astype(float), np.ones_like(num), x, scope, cell)
    return Window(t, num / den, den, x, scope, cell)


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _wmean(y: np.ndarray, w: np.ndarray) -> float:
    s = float(w.sum())
    return float((y * w).sum() / s) if s > 0 else math.nan


def weigh(window: Window, change_at: datetime, candidates: Sequence[Version],
          priors: Sequence[tuple[Any, ...]]) -> list[Evidence]:
    """Group, estimate and rank the candidates on the window (see the module doc)."""
    n, k = window.x.shape
    if k == 0:
        return []
    # 1. groups: indicators that agree on every trace where both are defined (a trace without
    #    retrieval carries no retriever, but the retriever shipped with its release)
    groups: list[list[int]] = []
    reps: list[np.ndarray] = []
    for j in range(k):
        col = window.x[:, j]
        for g, rep in zip(groups, reps, strict=True):
            both = np.isfinite(col) & np.isfinite(rep)
            if both.any() and (col[both] == rep[both]).all():
                g.append(j)
                fill = ~np.isfinite(rep) & np.isfinite(col)
                rep[fill] = col[fill]
                break
        else:
            groups.append([j])
            reps.append(col.copy())
    ev = [Evidence([candidates[j] for j in g], tied=len(g) > 1, prior=min(priors[j] for j in g))
          for g in groups]
    xg = np.column_stack([_impute(rep, window.t) for rep in reps])
    after = window.t >= _us(change_at)
    y, w = window.y, window.w
    change = _wmean(y[after], w[after]) - _wmean(y[~after], w[~after])
    for e, col in zip(ev, xg.T, strict=True):
        on = col > 0
        e.n_with, e.n_without = float(w[on].sum()), float(w[~on].sum())
        e.value_with, e.value_without = _wmean(y[on], w[on]), _wmean(y[~on], w[~on])
    # 2a. the same-hours comparison, where the window has one (a canary): it is not confounded
    #     by anything else that changed over the days, so when it is conclusive it is the
    #     group's evidence, and its effect is held fixed in the before/after model below
    sh = [Evidence(e.members) for e in ev]
    if math.isfinite(change) and change != 0:
        _same_hours(sh, window, reps, xg=xg, after=after, change=change, groups=groups)
    # a group the same hours refute has (about) no effect: held at it, it cannot soak up the
    # effect of a group it nearly shares its indicator with (a harmless canary shipped minutes
    # from the cause). A supported group stays in the model (its effect may differ by cell).
    fixed = [i for i in range(len(groups)) if sh[i].same_hours and sh[i].lower <= 0]
    if fixed:
        y = y - xg[:, fixed] @ np.array([sh[i].effect for i in fixed])
    for i in range(len(groups)):
        if sh[i].same_hours and i not in fixed:
            fixed.append(i)
    # 2b. weighted least squares with every other group held fixed; constant columns dropped
    #     Only versions that arrived are regressors: a departing one (the version the cause
    #     replaced) is nearly the complement of an arrival and would share its effect.
    arrived = [_wmean(xg[after, i], w[after]) > _wmean(xg[~after, i], w[~after])
               for i in range(len(groups))]
    varying = [i for i in range(len(groups)) if 0 < xg[:, i].sum() < n and arrived[i]
               and (sh[i].lower > 0 or not sh[i].same_hours)]
    beta = np.full(len(groups), math.nan)
    cov = np.full((len(groups), len(groups)), math.nan)
    if varying and n > len(varying) + 2 and math.isfinite(change) and change != 0:
        design = np.column_stack([np.ones(n), xg[:, varying]])
        sw = np.sqrt(w)
        xtwx = (design * w[:, None]).T @ design
        inv = np.linalg.pinv(xtwx)
        b = inv @ ((design * w[:, None]).T @ y)
        resid = (y - design @ b) * sw
        dof = max(n - design.shape[1], 1)
        sigma2 = float(resid @ resid) / dof
        c = inv * sigma2
        for a, i in enumerate(varying):
            beta[i] = b[a + 1]
            for bb, jj in enumerate(varying):
                cov[i, jj] = c[a + 1, bb + 1]
        # 3. share of the change each group explains
        shifts = np.zeros(len(groups))
        for i in varying:
            shifts[i] = _wmean(xg[after, i], w[after]) - _wmean(xg[~after, i], w[~after])
            ev[i].effect, ev[i].se = float(beta[i]), float(math.sqrt(max(cov[i, i], 0.0)))
            if shifts[i] > 0:  # a suspect arrived; the version the cause replaced has none
                ev[i].explained = float(beta[i] * shifts[i] / change)
                ev[i].explained_se = float(abs(ev[i].se * shifts[i] / change))
        # 3a. groups the before/after model cannot tell apart (indicators nearly the same,
        #     effects within 2 se: it splits their joint effect at random, e.g. -267% and +370%)
        #     are judged together: each gets the share their sum explains, which is well
        #     determined, and they are reported as a tie (step 5)
        corr0 = _corr(xg)
        for block in _inseparable(varying, corr0, beta, cov):
            if any(shifts[i] <= 0 for i in block):
                continue
            v = np.array([shifts[i] for i in block]) / change
            sub = cov[np.ix_(block, block)]
            total = float(sum(beta[i] * v[a] for a, i in enumerate(block)))
            se_total = float(math.sqrt(max(float(v @ sub @ v), 0.0)))
            for i in block:
                ev[i].explained, ev[i].explained_se = total, se_total
    for i in fixed:
        e, f = ev[i], sh[i]
        e.verdict = "supports" if f.lower > 0 else "refutes"
        # a group the same hours support is a real cause; how much it explains is read from
        # whichever estimate is surer (a canary of 40 traces says little about the size)
        if e.verdict == "supports" and e.lower > f.lower:
            continue
        e.same_hours, e.effect, e.se = True, f.effect, f.se
        e.explained, e.explained_se = f.explained, f.explained_se
        e.n_with, e.n_without, e.value_with, e.value_without = (
            f.n_with, f.n_without, f.value_with, f.value_without)
    # ranking: positive evidence by its lower bound, then no evidence in the prior's order, then
    # groups the same hours refute; a group with before/after evidence only never ranks above
    # a group the same hours support whose indicator it nearly shares (the before/after model
    # cannot separate them; the same hours can)
    corr = _corr(xg)
    order = sorted(range(len(ev)), key=lambda i: (
        1 if ev[i].tier < 2 else ev[i].tier,
        -ev[i].lower if ev[i].tier < 2 else 0.0,
        ev[i].prior,
    ))
    for j in [i for i in order if ev[i].tier == 0]:
        pos = order.index(j)
        above = [i for i in order[:pos] if ev[i].tier == 1 and corr[i, j] >= TIE_CORRELATION]
        for i in above:
            order.remove(i)
            order.insert(order.index(j) + 1, i)
    # 5. ties: near-identical indicators whose effects the data cannot tell apart
    rank, ranked, seen = 0, [], set()
    for i in order:
        if i in seen:
            continue
        rank += 1
        seen.add(i)
        ev[i].rank = rank
        ranked.append(ev[i])
        for j in order:
            if j in seen or not corr[i, j] >= TIE_CORRELATION or ev[j].tier != ev[i].tier:
                continue
            diff_var = cov[i, i] + cov[j, j] - 2 * cov[i, j]
            same = (not math.isfinite(diff_var)
                    or abs(beta[i] - beta[j]) < 2.0 * math.sqrt(max(diff_var, 0.0)))
            if same:
                seen.add(j)
                ev[j].rank, ev[j].tied, ev[i].tied = rank, True, True
                ranked.append(ev[j])
    return ranked


def _inseparable(varying: Sequence[int], corr: np.ndarray, beta: np.ndarray,
                 cov: np.ndarray) -> list[list[int]]:
    """Blocks of groups (more than one) linked by nearly identical indicators (correlation
    >= `TIE_CORRELATION`) whose before/after effects are within two standard errors."""
    parent = {i: i for i in varying}

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, i in enumerate(varying):
        for j in varying[a + 1:]:
            if corr[i, j] < TIE_CORRELATION:
                continue
            diff_var = cov[i, i] + cov[j, j] - 2 * cov[i, j]
            if not math.isfinite(diff_var):
                continue
            if abs(beta[i] - beta[j]) < 2.0 * math.sqrt(max(diff_var, 0.0)):
                parent[root(j)] = root(i)
    blocks: dict[int, list[int]] = {}
    for i in varying:
        blocks.setdefault(root(i), []).append(i)
    return [b for b in blocks.values() if len(b) > 1]


#: Traces needed on each side (with, without) of the same-hours comparison.
MIN_SAME_HOURS = 20
#: A same-hours comparison whose upper bound (`explained + 2 se`) is below this refutes a
#: suspect: it explains less than half of the change.
REFUTED = 0.5


def _same_hours(sh: Sequence[Evidence], window: Window, reps: Sequence[np.ndarray], *,
                xg: np.ndarray, after: np.ndarray, change: float,
                groups: Sequence[Sequence[int]]) -> None:
    """Set each group's same-hours evidence in `sh` where it is conclusive.

    For each group, the traces of its scope that carry it are compared with those that do not
    in the same hour, task type and route (`Window.cell`; a fixed effect per hour and cell), so
    its effect comes from a canary's hours or the minutes between two deploys. It explains
    `effect * (exposure after - before) / change`. It is used when conclusive: it **supports**
    the group (explains more than 0 at two standard errors, which are below the whole change:
    it can tell "explains all" from "explains none") or **refutes** it (explains less than
    `REFUTED` of the change at two standard errors). Otherwise the before/after estimate stands.
    """
    t = window.t
    hour = t // 3_600_000_000 - t.min() // 3_600_000_000  # clock hours
    if window.cell is not None:  # the same hour, task type and route
        hour = np.unique(hour * (int(window.cell.max()) + 1) + window.cell,
                         return_inverse=True)[1]
    n = len(t)
    size = int(hour.max()) + 1
    # cells where a group varies; a cell where another group varies too is left out of each
    # one's comparison (a companion shipped 14 minutes before the cause: its hour holds traces
    # with the companion and the cause, and traces with neither)
    varies = np.zeros((len(groups), size), bool)
    shifts = [_wmean(xg[after, i], window.w[after]) - _wmean(xg[~after, i], window.w[~after])
              for i in range(len(groups))]
    for i, rep in enumerate(reps):
        if not shifts[i] > 0:  # a departing version mirrors an arrival: not another change
            continue
        known = np.isfinite(rep)
        on = np.bincount(hour[known], weights=(rep[known] > 0), minlength=size)
        off = np.bincount(hour[known], weights=(rep[known] == 0), minlength=size)
        varies[i] = (on > 0) & (off > 0)
    crowded = varies.sum(axis=0) > 1
    for i, g in enumerate(groups):
        scope = (window.scope[:, list(g)].any(axis=1) if window.scope is not None
                 and window.scope.shape[1] else np.ones(n, bool))
        m = scope & np.isfinite(reps[i]) & ~crowded[hour]
        if m.sum() < 2 * MIN_SAME_HOURS:
            continue
        shift = shifts[i]
        if not (math.isfinite(shift) and shift > 0):  # only a version that arrived is a suspect
            continue
        _compare(sh[i], hour[m], window.y[m], window.w[m], x=reps[i][m], scale=shift / change)


def _compare(e: Evidence, cell: np.ndarray, y: np.ndarray, w: np.ndarray, *, x: np.ndarray,
             scale: float) -> None:
    """The within-cell comparison of one group (see `_same_hours`); sets `e` if conclusive."""
    size = int(cell.max()) + 1
    w1 = np.bincount(cell, weights=w * x, minlength=size)
    w0 = np.bincount(cell, weights=w * (1 - x), minlength=size)
    mix = ((w1 > 0) & (w0 > 0))[cell]
    if (x[mix] > 0).sum() < MIN_SAME_HOURS or (x[mix] == 0).sum() < MIN_SAME_HOURS:
        return
    h, y, w, x = cell[mix], y[mix], w[mix], x[mix]
    sw = np.bincount(h, weights=w, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        xbar = np.bincount(h, weights=w * x, minlength=size) / sw
        ybar = np.bincount(h, weights=w * y, minlength=size) / sw
    xd, yd = x - xbar[h], y - ybar[h]
    sxx = float((w * xd * xd).sum())
    dof = len(y) - len(np.unique(h)) - 1
    if sxx <= 0 or dof < 1:
        return
    effect = float((w * xd * yd).sum()) / sxx
    resid = yd - effect * xd
    se = math.sqrt(float((w * resid * resid).sum()) / dof / sxx)
    explained, explained_se = effect * scale, abs(se * scale)
    supports = explained - 2.0 * explained_se > 0 and 2.0 * explained_se < 1.0
    refutes = explained + 2.0 * explained_se < REFUTED
    if not (supports or refutes):
        return  # too few traces in the same hours to tell: the before/after estimate stands
    e.same_hours, e.effect, e.se = True, effect, se
    e.explained, e.explained_se = explained, explained_se
    e.n_with, e.n_without = float(w[x > 0].sum()), float(w[x == 0].sum())
    e.value_with, e.value_without = _wmean(y[x > 0], w[x > 0]), _wmean(y[x == 0], w[x == 0])


def _impute(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fill the traces that lack the dimension (NaN) with the share of the traces of the same
    hour that carry the version: their expected exposure. Filling them with 0 would make the
    indicator also mean 'has the dimension' (has retrieval), which the metric depends on."""
    missing = ~np.isfinite(x)
    if not missing.any():
        return x
    out = x.copy()
    ok = ~missing
    if not ok.any():
        out[missing] = 0.0
        return out
    hour = (t - t.min()) // 3_600_000_000
    sums = np.bincount(hour[ok], weights=x[ok], minlength=int(hour.max()) + 1)
    counts = np.bincount(hour[ok], minlength=int(hour.max()) + 1)
    have = np.flatnonzero(counts > 0)
    means = sums[have] / counts[have]
    out[missing] = np.interp(hour[missing], have, means)
    return out


def _corr(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(x, rowvar=False) if x.shape[1] > 1 else np.ones((1, 1))
    return np.nan_to_num(np.atleast_2d(c), nan=0.0)


def release_order(versions: Sequence[Version]) -> dict[str, list[str]]:
    """Per whole-deploy dimension (`release_sha`, ...), its values in first-seen order."""
    out: dict[str, list[tuple[datetime, str]]] = {}
    for v in versions:
        if v.dimension in GENERIC_DIMENSIONS and v.scope_key == "all":
            out.setdefault(v.dimension, []).append((v.first_seen_at, v.value))
    return {d: [val for _, val in sorted(items)] for d, items in out.items()}


def ranked_causes(con: Any, metric: str, segment_key: str, change_at: datetime, *,
                  ranked_candidates: Sequence[tuple[tuple[Any, ...], Version]],
                  releases: dict[str, list[str]], limit: int = 6) -> list[str]:
    """Return the suspected causes, best first, each with its evidence (see the module doc).

    Without a trace reader (`con` None) or per-trace data, the prior's order is kept.
    """
    from tracehouse.detect.attribution import format_cause

    cands = [v for _, v in ranked_candidates]
    priors = [k for k, _ in ranked_candidates]
    if not cands:
        return []
    window = None
    if con is not None:
        import duckdb

        try:
            window = read_window(con, metric, segment_key, change_at, candidates=cands,
                                 releases=releases)
        except duckdb.Error:  # a warehouse whose fct_requests lacks a column: prior order
            window = None
    if window is None or len(window.t) == 0:
        return [format_cause(v) for v in cands[:limit]]
    out: list[str] = []
    for e in weigh(window, change_at, cands, priors):
        for v in sorted(e.members, key=lambda v: priors[cands.index(v)]):
            if len(out) >= limit and e.rank > 1:
                return out
            out.append(f"{format_cause(v)} | {e.describe(metric)}")
    return out


def top_group(causes: Sequence[str]) -> list[str]:
    """The `dim=value` names of the first suspect and of the suspects tied with it."""
    if not causes:
        return []
    from tracehouse.detect.attribution import cause_name

    def rank(c: str) -> str | None:
        parts = c.split(" | ")
        return parts[1].split()[0] if len(parts) > 1 and parts[1].startswith("#") else None

    first = rank(causes[0])
    if first is None:
        return [cause_name(causes[0])]
    return [cause_name(c) for c in causes if rank(c) == first]
