"""The regression notebook's helpers: reading the published marts, formatting, and the tables.

``notebooks/regression_report.py`` (a jupytext percent script; the ``.ipynb`` beside it is
generated from it) keeps only the narrative and the plots; everything it computes that is not
drawing lives here, typed and tested (``tests/test_report_notebook.py``).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

if TYPE_CHECKING:
    import duckdb
    from matplotlib.axes import Axes

Unit = Literal["share", "usd", "ms", "count"]
UNIT_LABELS: Mapping[Unit, str] = {"share": "share of traces", "usd": "US dollars",
                                   "ms": "milliseconds", "count": "count"}
# Version dimensions in the order a reader looks at them (the versions section).
VERSION_PRIORITY = ("prompt_version", "retriever_version", "route_policy_version", "release_sha",
                    "index_version", "reranker_version", "validator_versions", "model_name",
                    "planner_version", "embedding_version", "tool_versions", "app_version")
_LONG_HEX = re.compile(r"\b([0-9a-f]{10})[0-9a-f]{30}\b")


def unit_of(name: str) -> Unit:
    """The unit of a metric or column by its name: ``*_rate``/``*_share`` share, ``*_usd``,
    ``*_ms``, else a count (a unit name itself is returned as it is)."""
    if name in ("share", "usd", "ms", "count"):
        return name  # type: ignore[return-value]
    if name.endswith(("_rate", "_share")):
        return "share"
    if name.endswith("_usd"):
        return "usd"
    if name.endswith("_ms"):
        return "ms"
    return "count"


def fmt_value(name: str, value: float | None) -> str:
    """``value`` of metric ``name`` for a person: 12.5%, $0.0123, 1,234 ms, 1,234; n/a if none."""
    if value is None or pd.isna(value):
        return "n/a"
    unit = unit_of(name)
    if unit == "share":
        return f"{value:.1%}"
    if unit == "usd":
        return f"${value:.4f}"
    if unit == "ms":
        return f"{value:,.0f} ms"
    return f"{value:,.0f}"


def short(text: object, width: int = 60) -> str:
    """``text`` on one line of at most ``width`` characters; 32-hex ids cut to 10 + "…"."""
    return textwrap.shorten(_LONG_HEX.sub(r"\1…", str(text)), width=width, placeholder="…")


def dimension_of(segment_key: str) -> str:
    """The dimension a segment key slices by (``route_name`` for ``all`` and crossed keys)."""
    if segment_key == "all" or "|" in segment_key:
        return "route_name"
    return segment_key.split("=", 1)[0]


def version_label(value: object, dimension: str, versions_shown: int) -> str:
    """A version's tick label: a release sha's 7 characters, others cut to fit the panel."""
    text = str(value)
    if dimension == "release_sha":
        return text[:7]
    width = max(8, 84 // max(1, versions_shown))  # narrower labels when the panel is crowded
    return text if len(text) <= width else text[: width - 1] + "…"


def axis_units(ax: Axes, name: str, axis: Literal["x", "y"] = "y") -> None:
    """Format ``ax``'s ``axis`` ticks in the unit of ``name`` and label the axis with it."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    unit = unit_of(name)
    target = ax.yaxis if axis == "y" else ax.xaxis
    if unit == "share":
        target.set_major_formatter(PercentFormatter(1.0, decimals=0))
    elif unit == "usd":
        target.set_major_formatter(FuncFormatter(lambda v, _: f"${v:.4f}"))
    elif unit == "ms":
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(UNIT_LABELS[unit])


def date_axis(ax: Axes) -> None:
    """Days on ``ax``'s x axis: 4 to 8 ticks, "Jan 05", labelled as UTC days."""
    import matplotlib.dates as mdates

    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=8))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    ax.set_xlabel("day (UTC)")


@dataclass
class Marts:
    """The current publication, resolved once, and the report's period over it."""

    con: duckdb.DuckDBPyConnection
    start: date
    end: date
    available: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, warehouse: Path | str, start: str | None = None,
             end: str | None = None) -> Marts:
        """Connect to ``warehouse``'s publication; the period defaults to every day in it."""
        from tracehouse.publication import connect

        con = connect(warehouse)
        available = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database()").fetchall()}
        lo, hi = con.execute(
            "SELECT min(trace_date), max(trace_date) FROM fct_requests").fetchone() or (None, None)
        return cls(con, pd.Timestamp(start or lo).date(), pd.Timestamp(end or hi).date(),
                   available)

    def q(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run SQL on the published marts; return a DataFrame."""
        return self.con.execute(sql, list(params or [])).df()

    def missing(self, *names: str) -> list[str]:
        """Which of the marts ``names`` this publication lacks."""
        return [n for n in names if n not in self.available]

    @property
    def days(self) -> str:
        """SQL filter on ``trace_date`` for the period."""
        return f"trace_date BETWEEN DATE '{self.start}' AND DATE '{self.end}'"

    @property
    def periods(self) -> str:
        """SQL filter on ``period_start`` (metric_daily, metric_hourly) for the period."""
        return f"CAST(period_start AS DATE) BETWEEN DATE '{self.start}' AND DATE '{self.end}'"

    def change_points(self, metric: str | None = None,
                      segment: str | None = None) -> pd.DataFrame:
        """The published change points in the period (``change_at`` UTC), optionally of one
        metric and one segment; empty when change_points is not published."""
        if "change_points" not in self.available:
            return pd.DataFrame()
        return filter_changes(self.q("SELECT * FROM change_points"), self.start, self.end,
                              metric, segment)


def filter_changes(changes: pd.DataFrame, start: date, end: date, metric: str | None = None,
                   segment: str | None = None) -> pd.DataFrame:
    """Change points with ``change_at`` (made UTC) between ``start`` and ``end`` inclusive."""
    if changes.empty:
        return changes
    changes = changes.assign(change_at=pd.to_datetime(changes["change_at"], utc=True))
    day = changes["change_at"].dt.date
    keep = (day >= start) & (day <= end)
    if metric:
        keep &= changes["metric"] == metric
    if segment:
        keep &= changes["segment_key"] == segment
    return changes[keep]


def top_changes(changes: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The most certain change of each series (metric x segment), best ``limit`` first."""
    if changes.empty:
        return changes
    return (changes.sort_values("score", ascending=False)
            .drop_duplicates(["metric", "segment_key"]).head(int(limit)))


def _causes(value: Any) -> list[str]:
    return [] if value is None or (isinstance(value, float) and pd.isna(value)) else list(value)


def changes_table(top: pd.DataFrame) -> pd.DataFrame:
    """``top`` for people: when, before and after in the metric's unit, change, 3 causes."""
    return pd.DataFrame({
        "metric": top["metric"],
        "segment_key": top["segment_key"],
        "change_at": top["change_at"].dt.strftime("%Y-%m-%d %H:%M"),
        "before": [fmt_value(m, v) for m, v in zip(top["metric"], top["value_before"],
                                                   strict=True)],
        "after": [fmt_value(m, v) for m, v in zip(top["metric"], top["value_after"],
                                                  strict=True)],
        "change": [f"{r:+.0%}" for r in top["relative_change"]],
        "suspected_causes": [", ".join(short(c, 70) for c in _causes(cs)[:3])
                             for cs in top["suspected_causes"]],
    })


def incidents_vs_changes(incidents: Iterable[Mapping[str, Any]], changes: pd.DataFrame,
                         end: date) -> pd.DataFrame:
    """One row per injected incident (a generator truth file) and metric: was a change of that
    metric detected in the injected segment ("yes"), only in others ("elsewhere") or not at all
    ("no"), between the incident's start less a day and its end; and is the cause named?"""
    rows = []
    for inc in incidents:
        t0 = pd.Timestamp(inc["start_time"])
        t1 = (pd.Timestamp(inc["end_time"]) if inc.get("end_time")
              else pd.Timestamp(end, tz="UTC") + timedelta(days=1))
        cause = str(inc.get("cause") or "")
        for metric in inc["metrics"]:
            window = changes[(changes["metric"] == metric)
                             & (changes["change_at"] >= t0 - timedelta(days=1))
                             & (changes["change_at"] <= t1)]
            # A change is reported in the segment where it lives, which may be narrower or
            # wider than the injected one: exact segment first, then any segment of the metric.
            exact = window[window["segment_key"] == inc["segment"]]
            hits = exact if len(exact) else window
            named = bool(cause) and any(cause in c for cs in hits["suspected_causes"]
                                        for c in _causes(cs))
            rows.append({
                "incident": inc["name"], "metric": metric, "segment": inc["segment"],
                "injected at": t0.strftime("%Y-%m-%d %H:%M"),
                "injected cause": short(cause or "-", 40),
                "detected": "yes" if len(exact) else ("elsewhere" if len(hits) else "no"),
                "detected in": ", ".join(short(x, 40)
                                         for x in sorted(set(hits["segment_key"]))[:3]),
                "detected at": (hits["change_at"].min().strftime("%Y-%m-%d %H:%M")
                                if len(hits) else ""),
                "cause named": "yes" if named else ("-" if not cause else "no"),
            })
    return pd.DataFrame(rows)


def comparison_window(change_times: Iterable[pd.Timestamp], at: pd.Timestamp,
                      days: int = 7) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(lo, hi) around the change at ``at``: up to ``days`` each side, never across another
    change of the same series (``change_times``)."""
    others = sorted(change_times)
    lo = max([at - timedelta(days=days), *[t for t in others if t < at]])
    hi = min([at + timedelta(days=days), *[t for t in others if t > at]])
    return lo, hi


BEFORE_AFTER_SQL = """
    SELECT segment_key,
           sum(value * n) FILTER (WHERE period_start < $at)
               / nullif(sum(n) FILTER (WHERE period_start < $at), 0) AS before,
           sum(value * n) FILTER (WHERE period_start >= $at)
               / nullif(sum(n) FILTER (WHERE period_start >= $at), 0) AS after,
           sum(n) AS n
    FROM metric_daily
    WHERE grain = 'day' AND metric = $metric AND segment_key LIKE $dim || '=%'
      AND segment_key NOT LIKE '%|%' AND period_start >= $lo AND period_start < $hi
    GROUP BY segment_key ORDER BY segment_key
"""


def before_after(marts: Marts, metric: str, dimension: str, at: pd.Timestamp, *,
                 lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    """``metric`` in every segment of ``dimension``: its n-weighted mean over [lo, at) and
    [at, hi) (segments with neither dropped)."""
    frame = marts.con.execute(BEFORE_AFTER_SQL, {"at": at, "metric": metric, "dim": dimension,
                                                 "lo": lo, "hi": hi}).df()
    return frame.dropna(subset=["before", "after"], how="all")


def changed_dimensions(versions: pd.DataFrame, limit: int = 8) -> list[str]:
    """Version dimensions with more than one value in ``versions`` (agg_version_quality
    rolled up), the reader's priority order first, at most ``limit``."""
    counts = versions.groupby("version_dimension")["version_value"].nunique()
    changed = [str(d) for d, n in counts.items() if n > 1]
    ordered = [d for d in VERSION_PRIORITY if d in changed]
    return (ordered or sorted(changed))[:limit]


VERSION_TABLE_COLUMNS = ("version_dimension", "version_value", "first_day", "last_day", "traces",
                         "successful_task_rate", "thumbs_down_rate", "error_rate",
                         "correctness_mean", "labelled", "cost_per_request_usd")


def versions_table(versions: pd.DataFrame, dimensions: Sequence[str]) -> pd.DataFrame:
    """The versions of ``dimensions`` for people: rates as percentages, costs in dollars."""
    shown = versions[versions["version_dimension"].isin(dimensions)][
        list(VERSION_TABLE_COLUMNS)].copy()
    shown["traces"] = shown["traces"].astype(int)
    shown["labelled"] = shown["labelled"].fillna(0).astype(int)
    for col in ("successful_task_rate", "thumbs_down_rate", "error_rate"):
        shown[col] = shown[col].map(lambda v: f"{v:.1%}" if pd.notna(v) else "")
    shown["correctness_mean"] = shown["correctness_mean"].map(
        lambda v: f"{v:.2f}" if pd.notna(v) else "")
    shown["cost_per_request_usd"] = shown["cost_per_request_usd"].map(
        lambda v: f"${v:.4f}" if pd.notna(v) else "")
    shown["version_value"] = shown["version_value"].map(lambda v: short(v, 16))
    return shown
