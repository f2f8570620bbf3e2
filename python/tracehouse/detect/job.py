"""The detection job: every metric x segment x grain series -> `change_points` and `alerts` marts.

`run_detection(warehouse, run_id)` reads `marts.metric_daily` (and `marts.metric_hourly` when
asked for the hour grain) and `marts.dim_versions` from the warehouse DuckDB, runs the detector
(`tracehouse.detect.detect`) on every series that is big and long enough to judge, reports each
distinct change once (`dedup`), names its suspected causes (`attribution`), derives the alerts
(`alerts`) and writes both tables into the warehouse's `marts` schema, so that `publish` exports
them with every other mart. The series are pivoted once into `series x period` matrices; the
per-series work is the detector itself (a few ms for a daily series).

Per series:

* rates, means and percentiles are detected on their values with the denominator `n` as
  inverse-variance weights (a change on 8 requests a day weighs 1/1000 of one on 8,000), counts
  (`request_count`) on the log of the count without weights, so that growth is a trend (which
  the detector does not cut into steps) and weekly traffic shape a seasonal profile;
* a seasonal profile of one week (daily) or one day (hourly) is removed first;
* periods with `n = 0` are missing values, not zeros;
* series whose median `n` per period is below `min_median_n` (30), or with fewer than two full
  seasonal periods of data, are skipped as too small to judge;
* the penalty per change is the detector's `3 log n` plus `2 log S` for the `S` series judged
  together (a Bonferroni correction: the Gaussian tail `P(z^2 > x) ~ exp(-x / 2)` divided by
  `S`), so that the false alarms of a run do not grow with the number of segments.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracehouse.contract.schemas import CHANGE_POINTS_SCHEMA
from tracehouse.detect import series_cache
from tracehouse.detect.alerts import ALERTS_SCHEMA, evaluate_alerts
from tracehouse.detect.attribution import MAX_CAUSES, Version, candidates, versions_from_rows
from tracehouse.detect.changepoint import ALGORITHM_NAME, detect
from tracehouse.detect.changes import Change
from tracehouse.detect.dedup import deduplicate
from tracehouse.detect.evidence import (
    WINDOW_AFTER,
    WINDOW_BEFORE,
    ranked_causes,
    release_order,
    window_sql,
)
from tracehouse.detect.locate import refine
from tracehouse.detect.segments import ALL
from tracehouse.detect.series_cache import EvidenceCache, SeriesCache
from tracehouse.errors import NotPublishedError
from tracehouse.resources import apply_limits

MARTS = "marts"
SERIES_TABLES = {"day": "metric_daily", "hour": "metric_hourly"}
PERIOD = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
SEASON = {"day": 7, "hour": 24}
HourlyReader = Callable[[Sequence[tuple[str, str]]], "Panel | None"]
#: Metrics that are counts (detected on log scale, unweighted) rather than rates or means.
COUNT_METRICS = frozenset({"request_count"})


@dataclass(frozen=True)
class DetectConfig:
    """Knobs of the job; the defaults are the documented behaviour."""

    grains: tuple[str, ...] = ("day", "hour")
    #: Metrics also judged hour by hour, where the hourly series has the traffic (a tool outage
    #: alerts within hours): the fast operational metrics, and every share measured on the
    #: trace itself when it is produced (binomial, so the noise floor holds hour by hour).
    #: Not the user-feedback rates (feedback arrives hours to days after its trace, so the last
    #: hours are incomplete) nor the means of heavy-tailed costs.
    hourly_metrics: frozenset[str] = frozenset({
        "latency_p50_ms", "latency_p95_ms", "error_rate", "tool_timeout_rate",
        "tool_error_rate", "guardrail_block_rate",
        "citation_mismatch_rate", "context_truncation_rate", "model_share",
        "retrieval_zero_result_rate", "tool_call_rate", "required_tool_missing_rate",
        "format_parse_failure_rate",
    })
    #: Skip a series whose median denominator per period is below this.
    min_median_n: float = 30.0
    #: Skip a series with fewer periods holding data than this many seasonal periods.
    min_seasons: int = 2
    #: Penalty per change: `log_factor * log(points) + multiplicity * log(series judged)`.
    log_factor: float = 3.0
    multiplicity: float = 2.0


@dataclass
class Panel:
    """All series of one grain as `series x period` matrices (NaN value / 0 n where missing)."""

    grain: str
    periods: np.ndarray  # int64 microseconds since the epoch, UTC, evenly spaced
    metrics: np.ndarray  # str per series
    segments: np.ndarray  # str per series
    value: np.ndarray  # float64 [S, T]
    n: np.ndarray  # float64 [S, T]

    def period_at(self, i: int) -> datetime:
        """Return the start of period `i` as an aware UTC datetime."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(self.periods[i]))

    def index_of(self) -> dict[tuple[str, str], int]:
        """Return `{(metric, segment_key): row}`."""
        return {(m, s): i for i, (m, s) in enumerate(zip(self.metrics, self.segments, strict=True))}


@dataclass
class DetectionResult:
    """What one detection run found."""

    run_id: str
    change_points: pa.Table
    alerts: pa.Table
    series_total: int = 0
    series_checked: int = 0
    raw_changes: int = 0
    seconds: float = 0.0
    skipped_reason: str | None = None
    checked_by_grain: dict[str, int] = field(default_factory=dict)
    cache: str | None = None  # e.g. "3 series detected, 150 reused (input as already detected)"

    def summary(self) -> str:
        """One line: series judged, changes found, alerts raised."""
        if self.skipped_reason:
            return f"skipped: {self.skipped_reason}"
        return (
            f"{self.series_checked}/{self.series_total} series judged, "
            f"{self.change_points.num_rows} change points ({self.raw_changes} before dedup), "
            f"{self.alerts.num_rows} alerts"
            + (f" ({self.cache})" if self.cache else "")
        )


# --- series ------------------------------------------------------------------------------


def panel_from_table(table: pa.Table, grain: str) -> Panel:
    """Return the panel of a long `metric_series` table (rows of other grains are ignored)."""
    if "grain" in table.column_names:
        mask = pc.equal(table["grain"], grain)
        table = table.filter(mask)
    step = int(PERIOD[grain].total_seconds() * 1_000_000)
    ts = table["period_start"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    t = ts.to_numpy(zero_copy_only=False).astype(np.int64)
    if t.size == 0:
        empty = np.zeros((0, 0))
        return Panel(grain, np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0, object),
                     empty, empty)
    t0 = (t.min() // step) * step
    col = (t - t0) // step
    length = int(col.max()) + 1
    keys = pc.binary_join_element_wise(table["metric"], table["segment_key"], "\x1f")
    encoded = pc.dictionary_encode(keys).combine_chunks()
    dictionary = np.asarray(encoded.dictionary.to_pylist(), dtype=str)
    order = np.argsort(dictionary)
    uniq = dictionary[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    row = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    value = np.full((uniq.size, length), np.nan)
    n = np.zeros((uniq.size, length))
    v = table["value"].to_numpy(zero_copy_only=False).astype(np.float64)
    nn = table["n"].fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
    value[row, col] = v
    n[row, col] = nn
    parts = np.char.partition(uniq, "\x1f")
    return Panel(
        grain=grain,
        periods=t0 + step * np.arange(length, dtype=np.int64),
        metrics=parts[:, 0].astype(object),
        segments=parts[:, 2].astype(object),
        value=value,
        n=n,
    )


def eligible(panel: Panel, config: DetectConfig) -> np.ndarray:
    """Return a boolean per series: big enough (median n) and long enough to judge."""
    if panel.value.size == 0:
        return np.zeros(panel.metrics.size, dtype=bool)
    has = np.isfinite(panel.value) & (panel.n > 0)
    big = np.median(panel.n, axis=1) >= config.min_median_n
    long = has.sum(axis=1) >= config.min_seasons * SEASON[panel.grain]
    return big & long


def _series_input(
    metric: str, value: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    ok = np.isfinite(value) & (n > 0)
    if metric in COUNT_METRICS:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ok & (value > 0), np.log(value), np.nan), None
    return np.where(ok, value, np.nan), np.where(ok, n, 0.0)


def is_share(metric: str) -> bool:
    """Return True if the metric is a share of its denominator (a binomial proportion)."""
    return metric.endswith("_rate") or metric == "model_share"


def binomial_floor(metric: str, value: np.ndarray, n: np.ndarray) -> float:
    """Return the binomial noise SD of one trial of a share metric, `sqrt(p (1 - p))` (else 0).

    `p` is the series' `n`-weighted mean. A share measured on `n` trials has at least the
    sampling variance `p (1 - p) / n`; the detector's noise estimate may not go below it.
    """
    if not is_share(metric):
        return 0.0
    ok = np.isfinite(value) & (n > 0)
    total = float(n[ok].sum())
    if total <= 0:
        return 0.0
    p = min(max(float((value[ok] * n[ok]).sum() / total), 0.0), 1.0)
    return math.sqrt(p * (1.0 - p))


def penalty(points: int, series: int, config: DetectConfig) -> float:
    """Return the penalty per change of a series of `points` valid points among `series`."""
    return config.log_factor * math.log(max(points, 2)) + config.multiplicity * math.log(
        max(series, 1)
    )


def detect_panel(
    panel: Panel, mask: np.ndarray, config: DetectConfig | None = None,
    series_cache: SeriesCache | None = None,
) -> list[Change]:
    """Return the changes found in every selected series of the panel, before dedup.

    With `series_cache`, a series whose detector input is the one the last run saw takes that
    run's change points (`detect.series_cache`); the others are detected.
    """
    config = config or DetectConfig()
    run = detect if series_cache is None else series_cache.detect
    out: list[Change] = []
    season = SEASON[panel.grain]
    judged = int(mask.sum())
    for s in np.flatnonzero(mask):
        metric = str(panel.metrics[s])
        y, w = _series_input(metric, panel.value[s], panel.n[s])
        valid = int(np.sum(np.isfinite(y) & (True if w is None else w > 0)))
        floor = binomial_floor(metric, panel.value[s], panel.n[s])
        for cp in run(y, w, season, penalty=penalty(valid, judged, config),
                      noise_floor=floor):
            before, after = cp.value_before, cp.value_after
            if metric in COUNT_METRICS:
                before, after = math.exp(before), math.exp(after)
            out.append(
                Change(
                    metric=metric,
                    grain=panel.grain,
                    segment_key=str(panel.segments[s]),
                    change_at=panel.period_at(cp.index),
                    value_before=before,
                    value_after=after,
                    score=cp.score,
                )
            )
    return out


def _mass(metric: str, value: np.ndarray, n: np.ndarray) -> np.ndarray:
    v = np.where(np.isfinite(value) & (n > 0), value, 0.0)
    return v if metric in COUNT_METRICS else v * n


def decompose(panel: Panel, changes: Sequence[Change], at: datetime | None = None) -> None:
    """Fill each change's `contribution`, `overall_move` and `share` (see `Change`).

    Over one seasonal period either side of the change (a whole week for daily series, so the
    weekly pattern cancels): the segment's mass (`value * n`, or the count) per unit of the
    `all` series' denominator, after minus before, is its contribution to the move of `all`.
    With `at`, every change is measured around that same time (dedup measures a cluster of
    changes around one time so that their contributions add up).
    """
    if panel.periods.size == 0:
        return
    rows = panel.index_of()
    season = SEASON[panel.grain]
    step = int(PERIOD[panel.grain].total_seconds() * 1_000_000)
    t0 = int(panel.periods[0])
    length = panel.periods.size
    for c in changes:
        s = rows.get((c.metric, c.segment_key))
        a = rows.get((c.metric, ALL))
        if s is None or a is None or c.grain != panel.grain:
            continue
        when = at or c.change_at
        i = int((int(when.timestamp() * 1_000_000) - t0) // step)
        lo, hi = max(0, i - season), min(length, i + season)
        if i <= lo or hi <= i:
            continue
        count = c.metric in COUNT_METRICS
        ms = _mass(c.metric, panel.value[s], panel.n[s])
        ma = _mass(c.metric, panel.value[a], panel.n[a])
        base_b = (i - lo) if count else panel.n[a, lo:i].sum()
        base_a = (hi - i) if count else panel.n[a, i:hi].sum()
        if base_b <= 0 or base_a <= 0:
            continue
        c.contribution = float(ms[i:hi].sum() / base_a - ms[lo:i].sum() / base_b)
        c.overall_move = float(ma[i:hi].sum() / base_a - ma[lo:i].sum() / base_b)
        denom_s = panel.value[s, lo:hi] if count else panel.n[s, lo:hi]
        denom_a = panel.value[a, lo:hi] if count else panel.n[a, lo:hi]
        total = float(np.nansum(denom_a))
        c.share = float(np.nansum(denom_s) / total) if total > 0 else math.nan


def traffic_shares(panel: Panel) -> dict[str, float]:
    """Return each segment's share of all requests over the panel (`request_count`)."""
    rows = panel.index_of()
    a = rows.get(("request_count", ALL))
    if a is None:
        return {}
    total = float(np.nansum(panel.value[a]))
    if total <= 0:
        return {}
    return {
        seg: float(np.nansum(panel.value[r]) / total)
        for (metric, seg), r in rows.items()
        if metric == "request_count"
    }


def segment_means(panel: Panel, metric: str) -> dict[str, float]:
    """Return each segment's `n`-weighted mean of `metric` over the panel."""
    out: dict[str, float] = {}
    for (m, seg), r in panel.index_of().items():
        if m != metric:
            continue
        ok = np.isfinite(panel.value[r]) & (panel.n[r] > 0)
        w = panel.n[r][ok].sum()
        if w > 0:
            out[seg] = float((panel.value[r][ok] * panel.n[r][ok]).sum() / w)
    return out


# --- the job -----------------------------------------------------------------------------


def locate_hours(changes: Sequence[Change], hourly: Panel | None) -> int:
    """Move each daily change's `change_at` to the hour it started, where the hourly series can
    say it (`detect.locate`); return how many moved."""
    if hourly is None or hourly.periods.size == 0:
        return 0
    rows = hourly.index_of()
    moved = 0
    for c in changes:
        r = rows.get((c.metric, c.segment_key))
        if c.grain != "day" or c.metric in COUNT_METRICS or r is None:
            continue
        at = refine(c, hourly.periods, hourly.value[r], hourly.n[r])
        if at is not None:
            c.change_at = at
            moved += 1
    return moved


#: Quantile of each percentile metric: an hourly percentile is judged only where an hour holds
#: `PERCENTILE_TAIL` observations beyond it (p95: 200 a hour), else it is mostly noise.
PERCENTILES = {"latency_p95_ms": 0.95, "latency_p50_ms": 0.5}
PERCENTILE_TAIL = 10.0


def hourly_eligible(panel: Panel, config: DetectConfig) -> np.ndarray:
    """The hourly series judged: fast operational metrics only, percentiles with enough tail."""
    mask = np.isin(panel.metrics.astype(str), sorted(config.hourly_metrics))
    if panel.n.size == 0:
        return mask
    med = np.median(panel.n, axis=1)
    for metric, q in PERCENTILES.items():
        rows = panel.metrics.astype(str) == metric
        mask &= ~rows | (med * (1.0 - q) >= PERCENTILE_TAIL)
    return mask


#: An hourly and a daily change of one metric and direction this close are one change.
SAME_CHANGE = timedelta(days=2)


def merge_grains(changes: Sequence[Change]) -> list[Change]:
    """Report a change found at both grains once.

    In the same segment the hourly change is kept (it can alert within hours and is located
    by its own grain) and the daily one dropped. Where they live in different segments both
    stay: the hourly one is the early alert (often in a broad segment such as `all`, which has
    the traffic to judge hour by hour), the daily one names the segment that drives it.
    """
    daily = [c for c in changes if c.grain == "day"]
    drop: set[int] = set()
    for h in (c for c in changes if c.grain == "hour"):
        for d in daily:
            if (d.metric == h.metric and d.direction == h.direction
                    and abs(d.change_at - h.change_at) <= SAME_CHANGE
                    and d.segment_key == h.segment_key):
                drop.add(id(d))
    return [c for c in changes if id(c) not in drop]


def attribute_changes(changes: Sequence[Change], versions: list[Version], con: object,
                      evidence: EvidenceCache | None = None) -> None:
    """Fill each change's suspected causes: the versions first seen near it (the timing prior),
    re-ranked by per-trace evidence read through `con` (`detect.evidence`; None: prior only).

    With `evidence`, a change whose inputs and window content (the columns its query reads, on
    the days of its window) the last run saw takes that run's causes
    (`detect.series_cache.EvidenceCache`); the content of every window is fingerprinted first,
    in one scan."""
    releases = release_order(versions)
    # day-sized window at either grain: a canary starts hours before its step
    plans = [(c, candidates(c.segment_key, c.change_at, versions, grain="day", metric=c.metric))
             for c in changes]
    columns: list[list[str] | None] = []
    if evidence is not None and con is not None:
        columns = [evidence.columns_of(window_sql(c.metric, c.segment_key, c.change_at,
                                                  candidates=[v for _, v in cands],
                                                  releases=releases))
                   for c, cands in plans]
        evidence.prepare([(c.change_at, cols) for (c, _), cols in zip(plans, columns,
                                                                      strict=True)])
    for i, (c, cands) in enumerate(plans):

        def rank(c: Change = c, cands: list[tuple[tuple[Any, ...], Version]] = cands
                 ) -> list[str]:
            return ranked_causes(con, c.metric, c.segment_key, c.change_at,
                                 ranked_candidates=cands, releases=releases, limit=MAX_CAUSES)

        if evidence is None or con is None:
            c.suspected_causes = rank()
            continue
        key = evidence.key(c.metric, c.segment_key, c.change_at,
                           [cands, sorted(releases.items()), MAX_CAUSES], columns=columns[i])
        c.suspected_causes = evidence.causes(key, rank)


def find_changes(
    panels: list[Panel], versions: list[Version], config: DetectConfig | None = None,
    *, hourly: Panel | HourlyReader | None = None, con: object = None,
    series_cache: SeriesCache | None = None, evidence: EvidenceCache | None = None,
) -> tuple[list[Change], int, int, int]:
    """Return (distinct changes with causes, raw change count, series total, series judged).

    `hourly` (the `metric_hourly` panel, or a function reading the hourly series of the given
    (metric, segment) pairs; default: the hour panel among `panels`) locates daily changes to
    the hour; `con` (a DuckDB
    connection to the warehouse) gives the per-trace evidence that ranks suspected causes;
    `series_cache` (see `detect_panel`) skips the detector on series the last run saw as they are,
    `evidence` (see `attribute_changes`) the evidence of changes whose window did not change.
    """
    config = config or DetectConfig()
    raw: list[Change] = []
    total = checked = 0
    for panel in panels:
        mask = eligible(panel, config)
        if panel.grain == "hour":
            mask &= hourly_eligible(panel, config)
        total += int(mask.size)
        checked += int(mask.sum())
        found = detect_panel(panel, mask, config, series_cache)
        decompose(panel, found)
        raw.extend(found)
    by_grain = {p.grain: p for p in panels}

    def measure(cluster: Sequence[Change], at: datetime) -> None:
        panel = by_grain.get(cluster[0].grain)
        if panel is not None:
            decompose(panel, cluster, at)

    kept = deduplicate(raw, measure)
    if callable(hourly):  # read the hourly series of the daily changes only
        hourly = hourly([(c.metric, c.segment_key) for c in kept if c.grain == "day"])
    elif hourly is None:
        hourly = by_grain.get("hour")
    locate_hours(kept, hourly)
    kept = merge_grains(kept)
    attribute_changes(kept, versions, con, evidence)
    return kept, len(raw), total, checked


def change_points_table(changes: list[Change], run_id: str) -> pa.Table:
    """Return the contract's `change_points` table of the changes."""
    rows = [c.as_row(ALGORITHM_NAME, run_id) for c in changes]
    return pa.Table.from_pylist(rows, schema=CHANGE_POINTS_SCHEMA)


def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [MARTS, name],
    ).fetchall()
    return bool(rows and rows[0][0])


def read_panels(
    con: duckdb.DuckDBPyConnection, grains: tuple[str, ...], *,
    metrics: dict[str, frozenset[str]] | None = None,
    series: Sequence[tuple[str, str]] | None = None,
) -> list[Panel]:
    """Return the panels of the grains whose series table exists in the warehouse.

    `metrics` narrows a grain to those metrics; `series` reads only these (metric, segment).
    """
    panels = []
    for grain in grains:
        name = SERIES_TABLES[grain]
        if not _table_exists(con, name):
            continue
        where = f"grain = '{grain}'"
        only = (metrics or {}).get(grain)
        if only is not None:
            where += " and metric in (" + ", ".join(f"'{m}'" for m in sorted(only)) + ")"
        if series is not None:
            if not series:
                continue
            pairs = ", ".join(
                "('" + m.replace("'", "''") + "', '" + g.replace("'", "''") + "')"
                for m, g in sorted(set(series))
            )
            where += f" and (metric, segment_key) in ({pairs})"
        table = con.sql(
            f"select metric, grain, period_start, segment_key, value, n from {MARTS}.{name} "
            f"where {where}"
        ).to_arrow_table()
        panels.append(panel_from_table(table, grain))
    return panels


def read_versions(con: duckdb.DuckDBPyConnection) -> list[Version]:
    """Return the rows of `marts.dim_versions` (none if the mart does not exist)."""
    if not _table_exists(con, "dim_versions"):
        return []
    rows = con.sql(
        f"select version_dimension, version_value, scope_key, first_seen_at "
        f"from {MARTS}.dim_versions"
    ).to_arrow_table().to_pylist()
    return versions_from_rows(rows)


def detect_tables(
    panels: list[Panel],
    versions: list[Version],
    run_id: str,
    config: DetectConfig | None = None,
    *,
    hourly: Panel | HourlyReader | None = None,
    con: object = None,
    series_cache: SeriesCache | None = None,
    evidence: EvidenceCache | None = None,
) -> DetectionResult:
    """Run detection, dedup, attribution and alerting on in-memory panels; write nothing.

    `hourly`, `con`, `series_cache` and `evidence`: see `find_changes`.
    """
    started = time.perf_counter()
    changes, raw, total, checked = find_changes(panels, versions, config, hourly=hourly, con=con,
                                                series_cache=series_cache, evidence=evidence)
    day = next((p for p in panels if p.grain == "day"), panels[0] if panels else None)
    alerts = evaluate_alerts(
        changes,
        run_id=run_id,
        traffic_share=traffic_shares(day) if day is not None else {},
        model_cost=segment_means(day, "cost_per_request_usd") if day is not None else {},
    )
    return DetectionResult(
        run_id=run_id,
        change_points=change_points_table(changes, run_id),
        alerts=alerts,
        series_total=total,
        series_checked=checked,
        raw_changes=raw,
        seconds=time.perf_counter() - started,
        cache="; ".join(c.summary() for c in (series_cache, evidence) if c is not None) or None,
    )


def write_tables(con: duckdb.DuckDBPyConnection, result: DetectionResult) -> None:
    """Replace `marts.change_points` and `marts.alerts` in the warehouse, in one transaction."""
    con.execute(f"create schema if not exists {MARTS}")
    con.register("_th_change_points", result.change_points)
    con.register("_th_alerts", result.alerts)
    try:
        con.execute("begin transaction")
        con.execute(
            f"create or replace table {MARTS}.change_points as select * from _th_change_points"
        )
        con.execute(f"create or replace table {MARTS}.alerts as select * from _th_alerts")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("_th_change_points")
        con.unregister("_th_alerts")


def run_detection(
    warehouse: Path | str,
    run_id: str,
    *,
    config: DetectConfig | None = None,
    write: bool = True,
    echo: Callable[[str], None] | None = None,
    cached: bool = True,
) -> DetectionResult:
    """Detect changes in the warehouse's metric series; write `marts.change_points` / `alerts`.

    Returns the result; with `write=False` the warehouse is opened read-only and left as is.
    With `cached` (the default) a series whose detector input the last writing run saw takes
    that run's change points (`detect.series_cache`, kept in the warehouse database); the
    result is the same as without.
    Without `marts.metric_daily` the job is skipped (result has `skipped_reason`).
    """
    from tracehouse.warehouse import warehouse_db

    config = config or DetectConfig()
    db = warehouse_db(warehouse)
    if not db.is_file():
        raise NotPublishedError(f"no warehouse database at {db}: build it first")
    started = time.perf_counter()
    con = apply_limits(duckdb.connect(str(db), read_only=not write))
    try:
        con.execute("set TimeZone = 'UTC'").fetchall()
        # A query slower than 2 s (the publication's day files are written meanwhile) would
        # print DuckDB's progress bar into the run's step lines.
        con.execute("set enable_progress_bar = false").fetchall()
        panels = read_panels(con, config.grains, metrics={"hour": config.hourly_metrics})
        if not panels:
            empty = DetectionResult(
                run_id=run_id,
                change_points=CHANGE_POINTS_SCHEMA.empty_table(),
                alerts=ALERTS_SCHEMA.empty_table(),
                skipped_reason=f"no {MARTS}.{SERIES_TABLES[config.grains[0]]} in the warehouse",
            )
            if write:
                write_tables(con, empty)
            return empty
        versions = read_versions(con)
        trace_reader = con if _table_exists(con, "fct_requests") else None
        known = series_cache.load(con) if cached else None
        evidence = (series_cache.load_evidence(con, (WINDOW_BEFORE, WINDOW_AFTER))
                    if cached and trace_reader is not None else None)

        def hourly_of(series: Sequence[tuple[str, str]]) -> Panel | None:
            return next(iter(read_panels(con, ("hour",), series=series)), None)

        result = detect_tables(panels, versions, run_id, config, hourly=hourly_of,
                               con=trace_reader, series_cache=known, evidence=evidence)
        if write:
            write_tables(con, result)
            if known is not None:
                series_cache.save(con, known)
            if evidence is not None:
                series_cache.save_evidence(con, evidence)
    finally:
        con.close()
    result.seconds = time.perf_counter() - started
    if echo:
        echo(result.summary())
    return result


def read_published_panel(warehouse: Path | str, grain: str = "day") -> Panel | None:
    """Return the panel of the published `metric_daily` (or hourly) mart, if published."""
    path = Path(warehouse) / "marts" / f"{SERIES_TABLES[grain]}.parquet"
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    return panel_from_table(pq.read_table(path), grain)
