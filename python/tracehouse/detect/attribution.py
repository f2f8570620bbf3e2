"""Suspected causes of a change: the versions first seen close to it, in its segment or overall.

Rule (documented in docs/detection.md):

* A candidate is a row of `marts.dim_versions` whose `first_seen_at` falls in the window
  `[change_at - 2 periods, change_at + 1 period)`. `change_at` is the start of the first period
  of the new regime, so for daily series this covers a deploy on the day before, on the day
  of, or (when a late-evening deploy only moved the next day) two days before the change.
* Its scope must overlap the change's segment: the same segment, `all`, or a segment that can
  share traffic with it (`validator_name=policy` for a change in `task_type=support`).
* Ranking: first by distance between `first_seen_at` and `change_at` in whole periods (within
  one period of the change before one to two periods away); then same segment, then `all`,
  then other overlapping scopes; then specific component versions before whole-deploy
  identifiers (`release_sha`, `app_version`, which change at every deploy); then by exact
  distance; then by name. A version listed under several scopes is named once, at its best
  rank. At most `MAX_CAUSES` (6) are listed: about one deploy and a half.
* Each cause reads `<version_dimension>=<version_value> first seen <first_seen_at, ISO UTC>`,
  e.g. `prompt_version=sup-v6 first seen 2026-01-14T06:00Z`; "first seen" is the time of the
  first request in that scope that carried the version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tracehouse.detect.segments import ALL, overlaps

#: Version dimensions that change at every deploy: named only after specific components.
GENERIC_DIMENSIONS = frozenset({"release_sha", "app_version", "release", "deployment_id"})
#: At most this many causes per change.
MAX_CAUSES = 6
#: Window around `change_at`, in periods of the series' grain.
PERIODS_BEFORE = 2
PERIODS_AFTER = 1
GRAIN_PERIOD = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


@dataclass(frozen=True)
class Version:
    """One row of `dim_versions` that attribution uses."""

    dimension: str
    value: str
    scope_key: str
    first_seen_at: datetime


def versions_from_rows(rows: Sequence[dict[str, Any]]) -> list[Version]:
    """Return `Version`s from `dim_versions` rows (dicts with the mart's column names)."""
    out = []
    for r in rows:
        seen = r.get("first_seen_at")
        if seen is None or r.get("version_value") is None:
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        out.append(
            Version(
                dimension=str(r["version_dimension"]),
                value=str(r["version_value"]),
                scope_key=str(r.get("scope_key") or ALL),
                first_seen_at=seen,
            )
        )
    return out


def format_cause(version: Version) -> str:
    """Return `dim=value first seen YYYY-MM-DDTHH:MMZ`."""
    when = version.first_seen_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return f"{version.dimension}={version.value} first seen {when}"


def cause_name(cause: str) -> str:
    """Return the `dim=value` part of a formatted cause."""
    return cause.split(" first seen ", 1)[0]


def _scope_rank(scope: str, segment: str) -> int | None:
    if scope == segment:
        return 0
    if scope == ALL:
        return 1
    return 2 if overlaps(scope, segment) else None


def suspected_causes(
    segment_key: str,
    change_at: datetime,
    versions: Sequence[Version],
    *,
    grain: str = "day",
    limit: int = MAX_CAUSES,
) -> list[str]:
    """Return the ranked suspected causes of a change in `segment_key` starting at `change_at`."""
    period = GRAIN_PERIOD.get(grain, timedelta(days=1))
    if change_at.tzinfo is None:
        change_at = change_at.replace(tzinfo=UTC)
    lo, hi = change_at - PERIODS_BEFORE * period, change_at + PERIODS_AFTER * period
    best: dict[tuple[str, str], tuple[tuple[int, int, int, float, str], Version]] = {}
    for v in versions:
        if not lo <= v.first_seen_at < hi:
            continue
        rank = _scope_rank(v.scope_key, segment_key)
        if rank is None:
            continue
        distance = abs((v.first_seen_at - change_at).total_seconds())
        bucket = int(distance // period.total_seconds())
        key = (bucket, rank, int(v.dimension in GENERIC_DIMENSIONS), distance, v.dimension)
        name = (v.dimension, v.value)
        if name not in best or key < best[name][0]:
            best[name] = (key, v)
    ranked = sorted(best.values(), key=lambda kv: (kv[0], kv[1].value))
    return [format_cause(v) for _, v in ranked[:limit]]


def attribute(
    changes: Sequence[tuple[str, datetime, str]], versions: Sequence[Version]
) -> list[list[str]]:
    """Return the suspected causes of each `(segment_key, change_at, grain)`."""
    return [suspected_causes(s, t, versions, grain=g) for s, t, g in changes]
