# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
# Parameters (papermill injects the values given to `tracehouse report`).
warehouse = "var/warehouse"  # folder with marts/*.parquet
start = None  # first day shown, "YYYY-MM-DD"; None: the first day in the marts
end = None  # last day shown, inclusive; None: the last day in the marts
metric = None  # only the change points of this metric, e.g. "error_rate"
segment = None  # only the change points of this segment key, as in metric_daily
truth = None  # optional generator truth file: compare injected incidents with detections
max_series = 16  # at most this many changed series are drawn

# %%
import json
import warnings
from datetime import timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display

# Everything that is not drawing lives in a typed, tested module.
from tracehouse.report_notebook import (
    Marts,
    axis_units,
    before_after,
    changed_dimensions,
    changes_table,
    comparison_window,
    date_axis,
    dimension_of,
    incidents_vs_changes,
    short,
    top_changes,
    unit_of,
    version_label,
    versions_table,
)

warnings.filterwarnings("ignore")
pd.set_option("display.max_colwidth", 120)
plt.rcParams.update({
    "figure.dpi": 100, "savefig.dpi": 100, "font.size": 10, "axes.titlesize": 11,
    "axes.titleweight": "bold", "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
    "figure.constrained_layout.use": True,
})
BLUE, ORANGE, GREY, RED, GREEN = "#1f77b4", "#ff7f0e", "#8c8c8c", "#d62728", "#2ca02c"

# The current publication (W/marts.duckdb), resolved once: every query below sees one run.
marts = Marts.open(warehouse, start, end)
q = marts.q
AVAILABLE = marts.available
START, END, DAYS, PERIOD = marts.start, marts.end, marts.days, marts.periods


def say(text):
    display(Markdown(text))


def have(*names):
    missing = marts.missing(*names)
    if missing:
        say(f"*Not shown: mart(s) {', '.join(missing)} not published.*")
    return not missing


# %% [markdown]
# # Regression report
#
# What changed in production, when, where, and the suspected cause, followed by the standing
# dashboards: stage latency, cost per successful task, retrieval, tools, failures and versions.
# Everything here is read from the published marts (`W/marts/*.parquet`).

# %%
head = q(f"""
    SELECT count(*) AS requests, sum(cost_usd) AS cost_usd,
           avg(is_successful_task::INT) AS success_rate, avg(has_thumbs_down::INT) AS thumbs_down_rate,
           avg(is_error::INT) AS error_rate
    FROM fct_requests WHERE {DAYS}
""").iloc[0]
changes = marts.change_points(metric, segment)
say(
    f"**Period** {START} to {END} (UTC) &middot; **{head.requests:,.0f} requests** &middot; "
    f"cost ${head.cost_usd:,.2f} &middot; task success {head.success_rate:.1%} &middot; "
    f"thumbs-down {head.thumbs_down_rate:.1%} &middot; errors {head.error_rate:.1%} &middot; "
    f"**{len(changes)} change points**"
    + (f" (metric {metric})" if metric else "") + (f" (segment {segment})" if segment else "")
)

# %% [markdown]
# ## What changed

# %%
top = top_changes(changes, max_series)
if top.empty:
    say("No change point was detected in this period: every tracked series stayed in its regime.")
else:
    say("The changes, most certain first (one row per series; `relative_change` is after vs before):")
    display(HTML(changes_table(top).to_html(index=False, escape=True)))

# %%
if truth and Path(truth).is_file() and not changes.empty:
    incidents = json.loads(Path(truth).read_text())
    say("### Injected incidents (generator truth) against the detected changes")
    say("One row per injected incident and metric: *yes* when a change of that metric was detected "
        "in the injected segment between the incident's start (less a day) and its end, "
        "*elsewhere* when only in other segments (listed), and whether a suspected cause names "
        "the injected one.")
    display(HTML(incidents_vs_changes(incidents, changes, END).to_html(index=False)))

# %% [markdown]
# ### Every series that changed

# %%
if not top.empty:
    say("Each panel is one daily series that changed: red dashed lines mark its change points, "
        "the grey and red dotted lines the level the detector estimated before and after (drawn "
        "for at most a week), and the title names the most certain change and its suspected "
        "cause. Look for a step at the dashed line rather than a single noisy day.")
    series = q(f"""
        SELECT metric, segment_key, CAST(period_start AS DATE) AS day, value, n
        FROM metric_daily WHERE grain = 'day' AND {PERIOD}
    """)
    series["day"] = pd.to_datetime(series["day"])
    n = len(top)
    cols = 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), squeeze=False)
    for ax, (_, c) in zip(axes.flat, top.iterrows()):
        s = series[(series.metric == c.metric) & (series.segment_key == c.segment_key)].sort_values("day")
        ax.plot(s.day, s.value, marker="o", ms=3, lw=1.4, color=BLUE, label="daily value")
        # every change of this series, with the level of each regime between two changes
        own = changes[(changes.metric == c.metric) & (changes.segment_key == c.segment_key)]
        own = own.sort_values("change_at").drop_duplicates("change_at")
        cuts = [t.tz_convert(None) for t in own.change_at]
        edges = [s.day.min(), *cuts, s.day.max() + timedelta(days=1)]
        levels = [own.value_before.iloc[0], *own.value_after]
        week = timedelta(days=7)
        for i, (x0, x1, lvl) in enumerate(zip(edges[:-1], edges[1:], levels)):
            # the detector's level of each regime, drawn at most a week from its change point
            x0, x1 = (max(x0, x1 - week), x1) if i == 0 else (x0, min(x1, x0 + week))
            ax.hlines(lvl, x0, x1, colors=GREY if i == 0 else RED, linestyles=":", lw=2,
                      label="level before" if i == 0 else ("level after" if i == 1 else None))
        for t in cuts:
            ax.axvline(t, color=RED, ls="--", lw=1.2, label="change point" if t == cuts[0] else None)
        at = c.change_at.tz_convert(None)
        causes = list(c.suspected_causes) if c.suspected_causes is not None else []
        cause = short(causes[0], 78) if causes else "none found"
        more = f" (+{len(cuts) - 1} other change{'s' if len(cuts) > 2 else ''} marked)" if len(cuts) > 1 else ""
        ax.set_title(f"{c.metric} · {short(c.segment_key, 50)}\n"
                     f"{c.direction} {c.relative_change:+.0%} on {at:%b %d %H:%M}{more}\n"
                     f"suspected: {cause}", fontsize=9, loc="left", fontweight="normal")
        axis_units(ax, c.metric)
        date_axis(ax)
        if unit_of(c.metric) == "share":
            ax.set_ylim(bottom=0)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="best", fontsize=8)
    plt.show()


# %% [markdown]
# ### Before and after, by segment

# %%
if not top.empty:
    say("For the most certain changes: the same metric in every segment of the changed dimension, "
        "averaged over up to 7 days before (grey) and after (colour) the change, never across "
        "another change of the same series. Segments whose dots move apart carry the change; the "
        "others show what did not move.")
    from matplotlib.lines import Line2D
    picks = top.drop_duplicates("metric").head(4)
    fig, axes = plt.subplots(len(picks), 1, figsize=(11, 2.3 * len(picks) + 0.3), squeeze=False)
    for ax, (_, c) in zip(axes.flat, picks.iterrows()):
        dim = dimension_of(c.segment_key)
        at = c.change_at.tz_convert(None)
        own = changes[(changes.metric == c.metric) & (changes.segment_key == c.segment_key)]
        lo, hi = comparison_window([t.tz_convert(None) for t in own.change_at], at)
        w = before_after(marts, c.metric, dim, at, lo=lo, hi=hi)
        y = np.arange(len(w))
        ax.hlines(y, w.before, w.after, color=GREY, lw=2)
        ax.scatter(w.before, y, color=GREY, s=40, zorder=3)
        changed = w.segment_key == c.segment_key
        ax.scatter(w.after, y, color=np.where(changed, RED, BLUE), s=40, zorder=3)
        ax.set_yticks(y, [s.split("=", 1)[1] for s in w.segment_key])
        ax.set_ylabel(dim)
        axis_units(ax, c.metric, axis="x")
        ax.set_title(f"{c.metric} by {dim}: {(at - lo).days}d before vs {(hi - at).days}d after "
                     f"the change of {at:%b %d %H:%M}", loc="left")
        handles = [Line2D([], [], marker="o", ls="", color=GREY, label="before"),
                   Line2D([], [], marker="o", ls="", color=BLUE, label="after")]
        if changed.any():
            handles.append(Line2D([], [], marker="o", ls="", color=RED, label="after, changed segment"))
        ax.legend(handles=handles, loc="best", fontsize=8)
    plt.show()

# %% [markdown]
# ## Stage latency waterfall

# %%
if "fct_spans" in AVAILABLE:  # per span: llm passes and validators apart
    wf = q(f"""
        WITH spans AS (
            SELECT r.route_name, s.trace_id, s.offset_ms, s.duration_ms,
                   CASE WHEN s.span_type = 'llm' THEN 'llm pass ' || coalesce(CAST(s.pass_index AS VARCHAR), '?')
                        WHEN s.span_type = 'postprocess' THEN 'postprocess: ' || coalesce(s.validator_name, s.operation_name)
                        ELSE s.span_type END AS stage
            FROM fct_spans AS s JOIN fct_requests AS r USING (trace_id)
            WHERE r.{DAYS} AND s.span_type <> 'request' AND r.route_name IS NOT NULL
        )
        SELECT route_name, stage, median(offset_ms) AS start_ms, median(duration_ms) AS dur_ms,
               count(DISTINCT trace_id) AS traces
        FROM spans GROUP BY ALL
    """)
    SUMMED = set()
else:  # per request: fct_requests' <stage>_offset_ms (first span) and <stage>_ms (summed)
    cols = q("SELECT * FROM fct_requests LIMIT 0").columns
    STAGES = [c[:-len("_offset_ms")] for c in cols if c.endswith("_offset_ms")]
    wf = pd.concat([q(f"""
        SELECT route_name, '{st}' AS stage, median({st}_offset_ms) AS start_ms,
               median({st}_ms) AS dur_ms, count({st}_ms) AS traces
        FROM fct_requests WHERE {DAYS} AND route_name IS NOT NULL GROUP BY ALL
    """) for st in STAGES])
    SUMMED = {"llm", "tool_call", "postprocess"}
    wf["stage"] = [f"{st} (summed)" if st in SUMMED else st for st in wf.stage]
totals = q(f"""SELECT route_name, count(*) AS n, median(duration_ms) AS total FROM fct_requests
               WHERE {DAYS} AND route_name IS NOT NULL GROUP BY ALL ORDER BY route_name""")
wf = wf.merge(totals, on="route_name")
wf = wf[wf.traces >= 0.05 * wf.n]
say("Where a request's time goes, per route: each bar starts at the stage's median start within "
    "the request and is as long as its median duration (a stage present in fewer than 5% of the "
    "route's requests is left out; the dashed line is the median request). Long bars are where "
    "the time goes: the model is often blamed for latency spent in tools or retrieval."
    + (" Hatched bars (summed) add up the stage's spans (e.g. both model passes) from its first "
       "start: they may overlap the stages that ran in between." if SUMMED else ""))
order = (wf.groupby("stage").start_ms.median().sort_values().index.tolist())
fig, axes = plt.subplots(1, len(totals), figsize=(4.3 * len(totals), 0.32 * len(order) + 1.6),
                         squeeze=False, sharey=True)
for ax, (_, t) in zip(axes.flat, totals.iterrows()):
    g = wf[wf.route_name == t.route_name].set_index("stage")
    for i, st in enumerate(order):
        if st not in g.index:
            continue
        r = g.loc[st]
        slow = st.startswith("llm") or st.startswith("tool_call")
        ax.barh(i, r.dur_ms, left=r.start_ms, color=RED if slow else BLUE,
                hatch="//" if st.endswith("(summed)") else None, alpha=0.75 if st.endswith("(summed)") else 1)
        ax.text(r.start_ms + r.dur_ms, i, f" {r.dur_ms:,.0f}", va="center", fontsize=7.5)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.axvline(t.total, color=GREY, ls="--", lw=1)
    ax.set_title(f"route {t.route_name}\nmedian request {t.total:,.0f} ms, n={int(t.n):,}",
                 loc="left", fontsize=10)
    ax.set_xlabel("ms since the request started")
plt.show()

# %%
lat = q(f"""SELECT CAST(period_start AS DATE) AS day, split_part(segment_key, '=', 2) AS span_type, value
            FROM metric_daily WHERE grain = 'day' AND metric = 'latency_p95_ms'
              AND segment_key LIKE 'span_type=%' AND {PERIOD} ORDER BY day""")
if not lat.empty:
    say("p95 duration of each stage per day: a stage whose line lifts is the one that slowed down.")
    lat["day"] = pd.to_datetime(lat["day"])
    fig, ax = plt.subplots(figsize=(12, 4.2))
    palette = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, (st, g) in enumerate(lat.groupby("span_type")):
        if st == "request":
            continue
        ax.plot(g.day, g.value, marker="o", ms=2.5, lw=1.3, label=st, color=palette[(2 * i) % 20 + (i // 10)])
    ax.set_yscale("log")
    ax.set_title("p95 stage duration per day (log scale)", loc="left")
    ax.set_ylabel("milliseconds (log scale)")
    date_axis(ax)
    ax.legend(ncol=1, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    plt.show()

# %% [markdown]
# ## Cost per successful task

# %%
if have("agg_cost_per_successful_task"):
    cost = q(f"""SELECT route_name, model_name, sum(cost_usd) AS cost_usd, sum(request_count) AS requests,
                        sum(successful_task_count) AS successes
                 FROM agg_cost_per_successful_task WHERE {DAYS}
                 GROUP BY ALL HAVING sum(request_count) > 0 ORDER BY route_name, model_name""")
    cost["per_success"] = cost.cost_usd / cost.successes.replace(0, np.nan)
    cost["per_request"] = cost.cost_usd / cost.requests
    say("What one successful task costs on each route and model (all spend, failed requests "
        "included, divided by the successful tasks). A cheap model that fails more can cost more "
        "per success than an expensive one.")
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(cost) + 1.4))
    labels = [f"{r} / {m}" for r, m in zip(cost.route_name, cost.model_name)]
    y = np.arange(len(cost))
    ax.barh(y - 0.2, cost.per_success, height=0.4, color=BLUE, label="per successful task")
    ax.barh(y + 0.2, cost.per_request, height=0.4, color=GREY, label="per request")
    for yi, v, n in zip(y, cost.per_success, cost.requests):
        ax.text(v, yi - 0.2, f" ${v:.4f} ({int(n):,} requests)", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_ylabel("route / model")
    axis_units(ax, "cost_usd", axis="x")
    ax.set_title("Cost per successful task and per request, by route and model", loc="left")
    ax.legend(loc="lower right")
    plt.show()

    daily = q(f"""SELECT trace_date AS day, route_name, sum(cost_usd) / nullif(sum(successful_task_count), 0) AS v
                  FROM agg_cost_per_successful_task WHERE {DAYS} GROUP BY ALL ORDER BY day""")
    daily["day"] = pd.to_datetime(daily["day"])
    say("The same per day and route: a step up is a cost regression (a pricier model, longer "
        "prompts) or a success regression (same spend, fewer successes).")
    fig, ax = plt.subplots(figsize=(12, 3.8))
    for route, g in daily.groupby("route_name"):
        ax.plot(g.day, g.v, marker="o", ms=3, lw=1.4, label=route)
    axis_units(ax, "cost_usd")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("US dollars per successful task")
    date_axis(ax)
    ax.set_title("Cost per successful task per day, by route", loc="left")
    ax.legend(title="route", loc="center left", bbox_to_anchor=(1.0, 0.5))
    plt.show()

# %% [markdown]
# ## Retrieval hit rate at its three points

# %%
if have("agg_retrieval_quality"):
    rq = q(f"""SELECT trace_date AS day, sum(judged_trace_count) AS judged,
                      sum(hit_retrieved_count) / nullif(sum(judged_trace_count), 0) AS retrieved,
                      sum(hit_selected_count) / nullif(sum(judged_trace_count), 0) AS selected,
                      sum(hit_included_count) / nullif(sum(judged_trace_count), 0) AS included
               FROM agg_retrieval_quality WHERE {DAYS} GROUP BY ALL ORDER BY day""")
    rq["day"] = pd.to_datetime(rq["day"])
    say("Among traces with judged relevant chunks, the share where a relevant chunk was retrieved, "
        "survived the reranker, and made it into the prompt. The gap between the lines is what "
        "rerank and context assembly lose; a drop of all three is the retriever itself.")
    fig, ax = plt.subplots(figsize=(12, 4))
    for col, color in (("retrieved", GREY), ("selected", BLUE), ("included", RED)):
        ax.plot(rq.day, rq[col], marker="o", ms=3, lw=1.5, color=color, label=f"{col}")
    ax.set_ylim(0, 1.02)
    axis_units(ax, "share")
    ax.set_ylabel("share of judged traces")
    date_axis(ax)
    ax.set_title(f"Retrieval hit rate: retrieved -> reranked -> included "
                 f"({rq.judged.sum():,.0f} judged traces, about {rq.judged.mean():,.0f} a day)", loc="left")
    ax.legend(title="relevant chunk reached")
    plt.show()

    by_v = q(f"""SELECT retriever_version, min(trace_date) AS first_day, sum(judged_trace_count) AS judged,
                        sum(hit_retrieved_count) / nullif(sum(judged_trace_count), 0) AS retrieved,
                        sum(hit_selected_count) / nullif(sum(judged_trace_count), 0) AS selected,
                        sum(hit_included_count) / nullif(sum(judged_trace_count), 0) AS included
                 FROM agg_retrieval_quality WHERE {DAYS} AND retriever_version IS NOT NULL
                 GROUP BY ALL HAVING sum(judged_trace_count) > 0 ORDER BY first_day""")
    if len(by_v):
        say("The three points per retriever version, oldest first: compare a version with the one before it.")
        fig, ax = plt.subplots(figsize=(11, 3.6))
        x = np.arange(len(by_v))
        for i, (col, color) in enumerate((("retrieved", GREY), ("selected", BLUE), ("included", RED))):
            ax.bar(x + (i - 1) * 0.27, by_v[col], width=0.27, color=color, label=col)
        ax.set_xticks(x, [f"{v}\nfrom {d:%b %d}\nn={n:,.0f}" for v, d, n in
                          zip(by_v.retriever_version, pd.to_datetime(by_v.first_day), by_v.judged)])
        ax.set_ylim(0, 1.05)
        axis_units(ax, "share")
        ax.set_xlabel("retriever version")
        ax.set_title("Retrieval hit rate by retriever version", loc="left")
        ax.legend(ncol=3, loc="upper left")
        plt.show()

# %% [markdown]
# ## Tool reliability and tool-use correctness

# %%
if have("agg_tool_reliability"):
    tools = q(f"""SELECT tool_name, sum(call_count) AS calls,
                         sum(error_call_count) / nullif(sum(call_count), 0) AS error_rate,
                         sum(timeout_call_count) / nullif(sum(call_count), 0) AS timeout_rate,
                         sum(invalid_args_call_count) / nullif(sum(call_count), 0) AS invalid_args_rate,
                         sum(required_missing_count) / nullif(sum(required_trace_count), 0) AS required_missing_rate,
                         sum(unnecessary_call_count) / nullif(sum(called_labelled_count), 0) AS unnecessary_call_rate
                  FROM agg_tool_reliability WHERE {DAYS} AND tool_name IS NOT NULL
                  GROUP BY ALL ORDER BY calls DESC""")
    say("Operational (errors, timeouts, invalid arguments: share of calls) and semantic "
        "(required but not called: share of traces that needed the tool; unnecessary calls: share "
        "of labelled calls) correctness per tool. The semantic bars are where agents fail quietly.")
    metrics_ = ["error_rate", "timeout_rate", "invalid_args_rate", "required_missing_rate", "unnecessary_call_rate"]
    colors = [RED, ORANGE, "#9467bd", BLUE, GREY]
    fig, ax = plt.subplots(figsize=(12, 4))
    x = np.arange(len(tools))
    wdt = 0.16
    for i, (m, col) in enumerate(zip(metrics_, colors)):
        ax.bar(x + (i - 2) * wdt, tools[m].fillna(0), width=wdt, color=col, label=m.replace("_", " "))
    ax.set_xticks(x, [f"{t}\n{int(c):,} calls" for t, c in zip(tools.tool_name, tools.calls)])
    ax.set_xlabel("tool")
    axis_units(ax, "share")
    ax.set_ylabel("share of calls / of traces needing the tool")
    ax.set_title("Tool reliability and correctness, whole period", loc="left")
    ax.legend(ncol=5, fontsize=8, loc="upper left")
    plt.show()

rt = q(f"""SELECT CAST(period_start AS DATE) AS day, segment_key, value FROM metric_daily
           WHERE grain = 'day' AND metric = 'required_tool_missing_rate'
             AND (segment_key = 'all' OR segment_key LIKE 'route_name=%') AND segment_key NOT LIKE '%|%'
             AND {PERIOD} ORDER BY day""")
if len(rt):
    rt["day"] = pd.to_datetime(rt["day"])
    say("Share of traces that needed a tool and did not call it, per day and route: a route that "
        "was switched to a model that skips tools lifts here.")
    fig, ax = plt.subplots(figsize=(12, 3.8))
    for seg, g in rt.groupby("segment_key"):
        ax.plot(g.day, g.value, marker="o", ms=3, lw=2.2 if seg == "all" else 1.3,
                color="black" if seg == "all" else None, label=seg.replace("route_name=", "route "))
    axis_units(ax, "required_tool_missing_rate")
    ax.set_ylabel("share of traces needing a tool")
    date_axis(ax)
    ax.set_title("Required tool missing rate per day", loc="left")
    ax.legend()
    plt.show()

# %% [markdown]
# ## Top failure categories

# %%
if have("agg_failure_taxonomy"):
    ft = q(f"""SELECT failure_category, label_source, sum(trace_count) AS traces
               FROM agg_failure_taxonomy WHERE {DAYS} AND failure_category IS NOT NULL
               GROUP BY ALL""")
    pivot = ft.pivot_table(index="failure_category", columns="label_source", values="traces",
                           aggfunc="sum", fill_value=0).astype(int)
    pivot = pivot.loc[pivot.sum(axis=1).sort_values(ascending=True).index].tail(12)
    say("How many traces fall in each failure category, by who said so: human labels (annotations) "
        "and the warehouse's rule-based tags. Large rule counts with few labels are where to "
        "spend the next labelling effort.")
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(pivot) + 1.4))
    y = np.arange(len(pivot))
    sources = list(pivot.columns)
    h = 0.8 / max(1, len(sources))
    for i, src in enumerate(sources):
        ax.barh(y + (i - (len(sources) - 1) / 2) * h, pivot[src], height=h, label=src)
        for yi, v in zip(y, pivot[src]):
            if v:
                ax.text(v, yi + (i - (len(sources) - 1) / 2) * h, f" {v:,}", va="center", fontsize=7.5)
    ax.set_yticks(y, pivot.index)
    ax.set_xlabel("traces")
    ax.set_ylabel("failure category")
    ax.set_title("Failure categories, whole period", loc="left")
    ax.legend(title="label source", loc="lower right")
    plt.show()

    daily = q(f"""SELECT trace_date AS day, failure_category, sum(trace_count) AS traces
                  FROM agg_failure_taxonomy WHERE {DAYS} AND failure_category IS NOT NULL
                    AND label_source = (SELECT label_source FROM agg_failure_taxonomy
                                        GROUP BY 1 ORDER BY sum(trace_count) DESC LIMIT 1)
                  GROUP BY ALL""")
    if len(daily):
        hm = daily.pivot_table(index="failure_category", columns="day", values="traces", fill_value=0)
        hm = hm.loc[hm.sum(axis=1).sort_values(ascending=False).index].head(10)
        say("The same per day (the most frequent label source): a band that lights up over a few "
            "days is an incident, a uniformly lit row is a standing problem.")
        fig, ax = plt.subplots(figsize=(12, 0.4 * len(hm) + 1.6))
        im = ax.imshow(hm.values, aspect="auto", cmap="Reds")
        ax.set_yticks(range(len(hm)), hm.index)
        step = max(1, len(hm.columns) // 10)
        ax.set_xticks(range(0, len(hm.columns), step),
                      [pd.Timestamp(d).strftime("%b %d") for d in hm.columns[::step]])
        ax.set_xlabel("day (UTC)")
        ax.grid(False)
        fig.colorbar(im, ax=ax, label="traces per day")
        ax.set_title("Failure categories per day", loc="left")
        plt.show()

# %% [markdown]
# ## Versions side by side

# %%
if have("agg_version_quality"):
    vq = q(f"""SELECT version_dimension, version_value, min(trace_date) AS first_day, max(trace_date) AS last_day,
                      sum(trace_count) AS traces,
                      sum(successful_task_count) / nullif(sum(trace_count), 0) AS successful_task_rate,
                      sum(thumbs_down_count) / nullif(sum(trace_count), 0) AS thumbs_down_rate,
                      sum(error_count) / nullif(sum(trace_count), 0) AS error_rate,
                      sum(correctness_sum) / nullif(sum(correctness_n), 0) AS correctness_mean,
                      sum(correctness_n) AS labelled,
                      sum(cost_usd) / nullif(sum(trace_count), 0) AS cost_per_request_usd
               FROM agg_version_quality WHERE {DAYS} AND version_value IS NOT NULL
               GROUP BY ALL ORDER BY version_dimension, first_day""")
    dims = changed_dimensions(vq)
    MAX_VERSIONS = 10
    say("Version dimensions that changed in the period, versions in the order they appeared (first "
        "day and traffic under each bar): task success and thumbs-down rate side by side. A new "
        "version whose success bar drops or thumbs-down bar rises is a suspect; small n means "
        "noisy bars.")
    if dims:
        cols_ = 2
        rows_ = (len(dims) + cols_ - 1) // cols_
        fig, axes = plt.subplots(rows_, cols_, figsize=(12, 3.3 * rows_), squeeze=False)
        for ax, d in zip(axes.flat, dims):
            g = vq[vq.version_dimension == d].sort_values("first_day")
            total = len(g)
            g = g.tail(MAX_VERSIONS)
            x = np.arange(len(g))
            ax.bar(x - 0.2, g.successful_task_rate, width=0.4, color=GREEN, label="task success rate")
            ax.bar(x + 0.2, g.thumbs_down_rate, width=0.4, color=RED, label="thumbs-down rate")
            ax.set_xticks(x, [f"{version_label(v, d, len(g))}\n{pd.Timestamp(f):%b %d}\nn={int(n):,}" for v, f, n in
                              zip(g.version_value, g.first_day, g.traces)], fontsize=7.5)
            ax.set_ylim(0, 1)
            axis_units(ax, "share")
            ax.set_title(d + (f" (latest {MAX_VERSIONS} of {total})" if total > MAX_VERSIONS else ""),
                         loc="left")
        for ax in axes.flat[len(dims):]:
            ax.set_visible(False)
        handles, labels_ = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels_, ncol=2, loc="outside upper right", fontsize=9)
        plt.show()
    shown = versions_table(vq, dims)
    display(HTML(shown.to_html(index=False)))

# %% [markdown]
# ---
# *How to read this report, what each plot says, and how to open a single trace behind any of
# these numbers (`tracehouse traces`, `tracehouse trace`): see `docs/report.md` and `docs/trace.md`.*
