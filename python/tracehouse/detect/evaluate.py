"""Score published change points against a generator truth file (pure functions over rows).

Definitions (docs/detection.md):

* An **incident** is the truth rows sharing a name up to the first `.` (`route_downgrade-1`
  and `route_downgrade-1.model_share` are one incident with two entries); each entry lists a
  segment and the metrics it moves with their direction.
* A change point **finds** an incident when its metric is listed by an entry with the same
  direction, its segment overlaps that entry's segment (see `segments.overlaps`), and its
  period `[change_at, change_at + 1 period)` meets `[start - 1 day, start + 1 day]`, it is
  not dated before the start (its dated period, the hour for a change located to the hour,
  ends after `start - 2 h`: a change cannot precede its cause), and the incident **owns** it
  (`owner`): of the incidents whose window and segment it falls in, one whose truth predicts
  its metric and direction there, then the one whose segment it matches most closely, then
  the nearest start.
  **Recall** = incidents found / incidents judged, where an incident is judged if its new
  regime holds at least `MIN_DAYS_AFTER` (3) whole days (UTC periods) in the lake, from the
  first whole day after its start to its end (or the lake's end): the detector's shortest
  regime is three periods and a period the change happened during is a transition, not part
  of the regime. An incident that started on the lake's last days ("too recent"), or was fixed
  before it held three whole days ("too short"), cannot be found; it is listed as such and its
  change points still count for precision.
* A change point **belongs** to an incident when its period meets `[start - 1 day, end + 1 day]`
  (end = the lake's end while the incident is still open) and either its metric is listed by
  any of the incident's entries (either direction: recoveries belong too) and its segment
  overlaps one of the incident's segments, or its metric and segment match one of the truth's
  `side_effects` (a metric the injected mechanism also moves, in a segment overlapping the one
  it moves in: a smaller model is also faster). Side effects never *find* an incident.
  **Precision** = change points that belong to some incident / change points.
* **Top-1 attribution** (`attribution`) = found incidents with a cause whose main finding
  change point (`main_change_point`: of the paging metric, the first listed, if it finds the
  incident; the highest `score`) names the cause first, or in the group tied first
  (`evidence.top_group`) / found incidents with a cause. **Cause listed** (a diagnostic, the
  former attribution): the cause is named anywhere among a belonging change point's suspects.
* **Location error**: hours from that change point's `change_at` to the rollout
  `[start, full_time]` of the truth (0 anywhere in a canary's ramp).
* **Time to alert**: hours from the start to the earliest `alert_time` of a finding change
  point: the end of the third period of its new regime (the detector's shortest regime).
* **Delay** of a found incident: `change_at - start` of its earliest finding change point, in
  hours (a daily job reports the change once that period is complete, one day later at most).
* **Explained precision** (a diagnostic, not a target): change points that belong to some
  incident, or fall in an incident's window and an overlapping segment in a metric its truth
  lists neither as moved nor as a side effect (a *collateral* change), / change points.
  What it leaves out are changes no injected incident explains.
* **False points per series per month**: change points that belong to no incident / series
  judged / (days / 30). On a `--no-incidents` control lake every change point is false.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tracehouse.detect.attribution import cause_name
from tracehouse.detect.evidence import top_group
from tracehouse.detect.segments import is_within, overlaps
from tracehouse.errors import NotPublishedError

DAY = timedelta(days=1)
MIN_DAYS_AFTER = 3
MIN_REGIME = 3  # the detector's shortest regime, in periods
PERIOD = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


@dataclass
class Incident:
    """An injected incident: its window, cause, and the (segment, {metric: direction}) it moves."""

    name: str
    start: datetime
    end: datetime | None
    cause: str | None
    entries: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: (segment, metric) pairs the mechanism also moves (the truth's `side_effects`): they
    #: belong to the incident (precision) but do not find it (recall).
    side_effects: list[tuple[str, str]] = field(default_factory=list)
    #: When the cause reached all its traffic (a canary: hours after `start`; else `start`).
    full: datetime | None = None
    #: Versions that shipped within minutes of the cause and do nothing.
    shipped_with: list[str] = field(default_factory=list)

    def location_error_hours(self, at: datetime) -> float:
        """Hours from `at` to the rollout `[start, full]` (0 inside: any point of a canary's
        ramp is a right location)."""
        full = self.full or self.start
        if at < self.start:
            return (self.start - at).total_seconds() / 3600.0
        return max((at - full).total_seconds(), 0.0) / 3600.0

    @property
    def metrics(self) -> set[str]:
        """Every metric any entry lists."""
        return {m for _, d in self.entries for m in d}

    @property
    def segments(self) -> list[str]:
        """Every entry's segment."""
        return [s for s, _ in self.entries]


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def incidents_from_truth(rows: Sequence[dict[str, Any]]) -> list[Incident]:
    """Return the incidents of truth-file rows, grouped by name up to the first `.`."""
    out: dict[str, Incident] = {}
    for r in rows:
        name = str(r["name"]).split(".", 1)[0]
        direction = dict(r.get("direction") or {})
        for m in r.get("metrics") or []:
            direction.setdefault(m, "up")
        inc = out.get(name)
        if inc is None:
            start = _ts(r["start_time"])
            assert start is not None
            inc = out[name] = Incident(name, start, _ts(r.get("end_time")), r.get("cause"),
                                       full=_ts(r.get("full_time")) or start,
                                       shipped_with=list(r.get("shipped_with") or []))
        inc.entries.append((str(r.get("segment") or "all"), direction))
        for side in r.get("side_effects") or []:
            inc.side_effects.append((str(side.get("segment") or "all"), str(side["metric"])))
    return sorted(out.values(), key=lambda i: (i.start, i.name))


def load_truth(path: Path | str) -> list[Incident]:
    """Return the incidents of a generator truth file (a JSON list of rows)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = data.get("incidents", [])
    return incidents_from_truth(data)


def _at(cp: dict[str, Any]) -> datetime:
    at = _ts(cp["change_at"])
    if at is None:
        raise ValueError("a change point without change_at")
    return at


def _meets(cp: dict[str, Any], lo: datetime, hi: datetime) -> bool:
    at = _at(cp)
    return at + PERIOD.get(cp.get("grain") or "day", DAY) > lo and at <= hi


def finds(cp: dict[str, Any], inc: Incident) -> bool:
    """Return True if the change point finds the incident's onset (see module doc); without
    looking at the other incidents (`score` also asks that the incident owns it: `owner`)."""
    if not _meets(cp, inc.start - DAY, inc.start + DAY):
        return False
    if _at(cp) + dated_period(cp) <= inc.start - LOCATION_SLACK:
        return False  # dated (to the hour or the day) before the incident started
    return predicts(cp, inc, side_effects=False)


#: How far before an incident's start a change point located to the hour may be dated.
LOCATION_SLACK = timedelta(hours=2)


def dated_period(cp: dict[str, Any]) -> timedelta:
    """The precision of a change point's `change_at`: a daily change left at midnight (not
    located to the hour) is dated to its day, every other one to its hour."""
    at = _at(cp)
    if (cp.get("grain") or "day") == "day" and at == _day_floor(at):
        return DAY
    return PERIOD["hour"]


def predicts(cp: dict[str, Any], inc: Incident, *, side_effects: bool = True) -> bool:
    """Does the incident's truth list the change point's metric, in its direction, for an
    overlapping segment (or, with `side_effects`, as a side effect there)?"""
    seg = cp["segment_key"]
    if any(d.get(cp["metric"]) == cp["direction"] and overlaps(seg, s) for s, d in inc.entries):
        return True
    return side_effects and any(m == cp["metric"] and overlaps(seg, s)
                                for s, m in inc.side_effects)


def specificity(segment_key: str, inc: Incident) -> int:
    """How closely a change point's segment matches the incident's: 2 the segment of one of its
    entries, 1 inside one (`route_name=standard` in an `all` incident), 0 merely overlapping
    (a cross-cutting segment), -1 not at all."""
    segs = inc.segments
    if segment_key in segs:
        return 2
    if any(is_within(segment_key, s) for s in segs):
        return 1
    return 0 if any(overlaps(segment_key, s) for s in segs) else -1


def owner(cp: dict[str, Any], incidents: Sequence[Incident], lake_end: datetime
          ) -> Incident | None:
    """The one incident a change point is matched to, among those whose window and segment it
    falls in (`collateral`): one whose truth predicts its metric and direction there
    (`predicts`), then the one whose segment it matches most closely (its own segment before a
    broader one that contains it), then the nearest start."""
    pool = [i for i in incidents if collateral(cp, i, lake_end)]
    if not pool:
        return None
    at = _at(cp)
    return max(pool, key=lambda i: (
        predicts(cp, i),
        specificity(cp["segment_key"], i),
        -abs((at - i.start).total_seconds()),
    ))


def collateral(cp: dict[str, Any], inc: Incident, lake_end: datetime) -> bool:
    """Return True if the change point is in the incident's window and segment, any metric."""
    end = inc.end or lake_end
    if not _meets(cp, inc.start - DAY, end + DAY):
        return False
    return any(overlaps(cp["segment_key"], seg) for seg in inc.segments)


def belongs(cp: dict[str, Any], inc: Incident, lake_end: datetime) -> bool:
    """Return True if the change point belongs to the incident (see module doc)."""
    end = inc.end or lake_end
    if not _meets(cp, inc.start - DAY, end + DAY):
        return False
    if any(m == cp["metric"] and overlaps(cp["segment_key"], seg) for seg, m in inc.side_effects):
        return True
    if cp["metric"] not in inc.metrics:
        return False
    return any(overlaps(cp["segment_key"], seg) for seg in inc.segments)


def main_change_point(hits: Sequence[dict[str, Any]], inc: Incident) -> dict[str, Any] | None:
    """The finding change point a person reads first: of the incident's paging metric (the
    first metric of its first entry: what an on-call engineer is paged on) if one finds it,
    else of any of its metrics; the most certain (highest `score`) of those."""
    if not hits:
        return None
    paging = next(iter(inc.entries[0][1]), None) if inc.entries else None
    pool = [cp for cp in hits if cp["metric"] == paging] or list(hits)
    return max(pool, key=lambda cp: float(cp.get("score") or 0.0))


def alert_time(cp: dict[str, Any]) -> datetime:
    """When the change point could first be raised: the end of the `MIN_REGIME`-th period of
    its new regime (the detector's shortest regime), periods of the series' grain (a daily
    change located to the hour still needs its days)."""
    period = PERIOD.get(cp.get("grain") or "day", DAY)
    at = _at(cp)
    at = _day_floor(at) if period == DAY else at.replace(minute=0, second=0, microsecond=0)
    return at + MIN_REGIME * period


def _day_floor(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _unjudged(inc: Incident, lake_end: datetime) -> str | None:
    """Why the incident cannot be judged (None if it can): fewer than `MIN_DAYS_AFTER` whole
    days of its new regime in the lake, because the lake ends too soon ("too recent") or the
    incident was fixed too soon ("too short")."""
    first = _day_floor(inc.start)
    if first < inc.start:
        first += DAY  # the start day is a transition period, not part of the regime
    end = min(inc.end or lake_end, lake_end)
    if (_day_floor(end) - first) >= timedelta(days=MIN_DAYS_AFTER):
        return None
    if (_day_floor(lake_end) - first) < timedelta(days=MIN_DAYS_AFTER):
        return "too recent"
    return "too short"


@dataclass
class IncidentScore:
    """How one incident was detected."""

    name: str
    segment: str
    start: datetime
    cause: str | None
    found: bool
    judged: bool
    delay_hours: float | None
    attributed: bool | None  # None: no cause to attribute (top-1: see `score`)
    change_points: int
    unjudged: str | None = None  # "too recent" / "too short", or None when judged
    #: The cause is named anywhere among the suspects of a belonging change point.
    cause_listed: bool | None = None
    #: Hours from the most certain finding change point's `change_at` to the rollout.
    location_error_hours: float | None = None
    #: Hours from the start until a detector could first raise it (see `alert_time`).
    time_to_alert_hours: float | None = None
    #: The first suspect (with its tied group) of the most certain finding change point.
    first_suspect: str | None = None
    #: Grain (`day` / `hour`) and metric of the finding change point that alerts first.
    alert_grain: str | None = None
    alert_metric: str | None = None


@dataclass
class DetectionScore:
    """The evaluation figures of one warehouse against one truth file."""

    incidents: list[IncidentScore]
    change_points: int
    belonging: int
    series_judged: int
    days: float
    collateral: int = 0

    @property
    def judged(self) -> list[IncidentScore]:
        """The incidents old enough to be found (see the module doc)."""
        return [i for i in self.incidents if i.judged]

    @property
    def recall(self) -> float:
        """Share of judged incidents found within 1 day of their start (NaN without any)."""
        if not self.judged:
            return math.nan
        return sum(i.found for i in self.judged) / len(self.judged)

    @property
    def precision(self) -> float:
        """Share of change points that belong to some incident (1 when there are none)."""
        return self.belonging / self.change_points if self.change_points else 1.0

    @property
    def attribution(self) -> float:
        """Share of found incidents with a cause whose change points name it (NaN if none)."""
        judged = [i for i in self.judged if i.found and i.attributed is not None]
        if not judged:
            return math.nan
        return sum(bool(i.attributed) for i in judged) / len(judged)

    @property
    def cause_listed(self) -> float:
        """Share of found incidents with a cause named anywhere among their suspects."""
        judged = [i for i in self.judged if i.found and i.cause_listed is not None]
        if not judged:
            return math.nan
        return sum(bool(i.cause_listed) for i in judged) / len(judged)

    @property
    def median_location_error_hours(self) -> float:
        """Median location error of found incidents, in hours (NaN if none found)."""
        errs = [i.location_error_hours for i in self.judged if i.location_error_hours is not None]
        return statistics.median(errs) if errs else math.nan

    @property
    def median_time_to_alert_hours(self) -> float:
        """Median time to alert of found incidents, in hours (NaN if none found)."""
        t = [i.time_to_alert_hours for i in self.judged if i.time_to_alert_hours is not None]
        return statistics.median(t) if t else math.nan

    def time_to_alert_by_grain(self) -> dict[str, float]:
        """Median time to alert of found incidents by the grain of the change point that
        alerts first: `hour` (a fast operational metric judged hour by hour) or `day`."""
        out: dict[str, list[float]] = {}
        for i in self.judged:
            if i.time_to_alert_hours is not None and i.alert_grain is not None:
                out.setdefault(i.alert_grain, []).append(i.time_to_alert_hours)
        return {g: statistics.median(v) for g, v in sorted(out.items())}

    @property
    def median_delay_hours(self) -> float:
        """Median `change_at - start` of found incidents, in hours (NaN if none found)."""
        delays = [i.delay_hours for i in self.judged if i.delay_hours is not None]
        return statistics.median(delays) if delays else math.nan

    @property
    def explained_precision(self) -> float:
        """Share of change points that belong to an incident or are collateral to one."""
        if not self.change_points:
            return 1.0
        return (self.belonging + self.collateral) / self.change_points

    @property
    def false_points(self) -> int:
        """Change points that belong to no incident."""
        return self.change_points - self.belonging

    @property
    def false_per_series_month(self) -> float:
        """False change points per judged series per 30 days."""
        if not self.series_judged or self.days <= 0:
            return math.nan
        return self.false_points / self.series_judged / (self.days / 30.0)

    def as_dict(self) -> dict[str, Any]:
        """Return the headline figures and the per-incident rows, JSON-ready."""
        return {
            "incidents": len(self.incidents),
            "incidents_judged": len(self.judged),
            "recall": self.recall,
            "precision": self.precision,
            "explained_precision": self.explained_precision,
            "collateral_points": self.collateral,
            "attribution": self.attribution,
            "top1_attribution": self.attribution,
            "cause_listed": self.cause_listed,
            "median_location_error_hours": self.median_location_error_hours,
            "median_time_to_alert_hours": self.median_time_to_alert_hours,
            "median_time_to_alert_hours_by_grain": self.time_to_alert_by_grain(),
            "median_delay_hours": self.median_delay_hours,
            "change_points": self.change_points,
            "false_points": self.false_points,
            "series_judged": self.series_judged,
            "days": self.days,
            "false_per_series_month": self.false_per_series_month,
            "per_incident": [
                {
                    "name": i.name,
                    "segment": i.segment,
                    "start": i.start.isoformat().replace("+00:00", "Z"),
                    "cause": i.cause,
                    "found": i.found,
                    "judged": i.judged,
                    "unjudged": i.unjudged,
                    "delay_hours": i.delay_hours,
                    "attributed": i.attributed,
                    "first_suspect": i.first_suspect,
                    "cause_listed": i.cause_listed,
                    "location_error_hours": i.location_error_hours,
                    "time_to_alert_hours": i.time_to_alert_hours,
                    "alert_grain": i.alert_grain,
                    "alert_metric": i.alert_metric,
                    "change_points": i.change_points,
                }
                for i in self.incidents
            ],
        }


def score(
    change_points: Sequence[dict[str, Any]],
    incidents: Sequence[Incident],
    *,
    lake_end: datetime,
    series_judged: int,
    days: float,
) -> DetectionScore:
    """Return the evaluation of `change_points` (contract rows) against `incidents`."""
    lake_end = _ts(lake_end) or lake_end
    belonging = side = 0
    per: dict[str, list[dict[str, Any]]] = {i.name: [] for i in incidents}
    for cp in change_points:
        owners = [i for i in incidents if belongs(cp, i, lake_end)]
        belonging += bool(owners)
        side += not owners and any(collateral(cp, i, lake_end) for i in incidents)
        for i in owners:
            per[i.name].append(cp)
    rows = []
    for inc in incidents:
        mine = per[inc.name]
        hits = [cp for cp in change_points
                if finds(cp, inc) and owner(cp, incidents, lake_end) is inc]
        delay = location = to_alert = None
        alerting: dict[str, Any] | None = None
        main = main_change_point(hits, inc)
        if hits:
            first = min(_at(cp) for cp in hits)
            delay = (first - inc.start).total_seconds() / 3600.0
            location = inc.location_error_hours(_at(main))  # type: ignore[arg-type]
            alerting = min(hits, key=alert_time)
            to_alert = (alert_time(alerting) - inc.start).total_seconds() / 3600.0
        reason = _unjudged(inc, lake_end)
        attributed = listed = None
        top = top_group(main["suspected_causes"] or []) if main is not None else []
        if inc.cause:
            listed = any(
                cause_name(c) == inc.cause for cp in mine for c in (cp["suspected_causes"] or [])
            )
            attributed = inc.cause in top
        rows.append(
            IncidentScore(
                name=inc.name,
                segment=" ".join(dict.fromkeys(inc.segments)),
                start=inc.start,
                cause=inc.cause,
                found=bool(hits),
                judged=reason is None,
                unjudged=reason,
                delay_hours=delay,
                attributed=attributed,
                change_points=len(mine),
                cause_listed=listed,
                location_error_hours=location,
                time_to_alert_hours=to_alert,
                first_suspect=" = ".join(top) or None,
                alert_grain=(alerting.get("grain") or "day") if alerting else None,
                alert_metric=alerting["metric"] if alerting else None,
            )
        )
    return DetectionScore(
        incidents=rows,
        change_points=len(change_points),
        belonging=belonging,
        series_judged=series_judged,
        days=days,
        collateral=side,
    )


def evaluate_warehouse(
    warehouse: Path | str, truth: Path | str | None, *, config: Any = None
) -> DetectionScore:
    """Return the evaluation of a warehouse's published change points against a truth file.

    Reads `<warehouse>/marts/change_points.parquet` and `metric_daily.parquet`; the series
    judged are counted with the job's own eligibility rule. `truth=None` (or an empty file)
    scores a control lake: every change point is false.
    """
    import pyarrow.parquet as pq

    from tracehouse.detect.job import DetectConfig, eligible, panel_from_table
    from tracehouse.publication import current_folder

    # The publication is resolved once, so both files come from the same run.
    folder = current_folder(warehouse) or Path(warehouse) / "marts"
    cp_path = folder / "change_points.parquet"
    if not cp_path.is_file():
        raise NotPublishedError(f"no published change points at {cp_path}: run the pipeline")
    cps = pq.read_table(cp_path).to_pylist()
    daily = folder / "metric_daily.parquet"
    panel = panel_from_table(pq.read_table(daily), "day") if daily.is_file() else None
    if panel is None or panel.periods.size == 0:
        raise NotPublishedError(f"no published metric_daily at {folder}")
    cfg = config or DetectConfig()
    judged = int(eligible(panel, cfg).sum())
    days = float(panel.periods.size)
    lake_end = panel.period_at(panel.periods.size - 1) + DAY
    incidents = load_truth(truth) if truth is not None else []
    return score(cps, incidents, lake_end=lake_end, series_judged=judged, days=days)
