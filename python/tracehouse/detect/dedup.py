"""One row per distinct change: report a change where it lives, not in every segment it shows in.

A local incident (say `required_tool_missing_rate` rising on `route_name=standard`) also moves
`all`, and echoes in every segment that shares traffic with the standard route (`task_type=*`,
`model_name=*`). A global one moves `all` and, proportionally, every segment. The rule:

1. **Cluster**: changes of the same metric, grain and direction whose `change_at` lie within
   `CLUSTER_PERIODS` (2) periods of another change of the cluster (single linkage: a segment
   whose own series placed the change a day or two late still joins), among segments that measure
   the same quantity ("family": for most metrics all segments of a metric form one family; each
   `model_share` segment and each `span_type=` latency segment is its own quantity).
2. **Find where the change lives**, from each change's contribution to the overall move (the
   segment's share of the denominator times its move, measured by the job over a week either
   side of one common time per cluster: the `all` change's, else the median). For each
   dimension, the one or two segments of that dimension with the largest contributions are a
   *driver* if together they explain at least `EXPLAIN` (60%) of the move of `all`, hold at
   most `MAX_SHARE` (75%) of the traffic, and moved at least `CONCENTRATION` (1.5) times more
   than their traffic share alone would (a change spread evenly over all traffic explains
   exactly its share). Among drivers, the most concentrated (smallest share)
   wins; its segment(s) are kept.
3. Without a driver, a cluster that contains `all` is a global change: keep `all` only.
   Without either, keep the segments of the dimension holding the largest contribution.
4. Everything else in the cluster is an echo and dropped.
5. Across metrics: a `request_count` change in a `model_name=` segment with a `model_share`
   change in the same segment, direction and window is the same traffic shift: keep
   `model_share`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from tracehouse.detect.changes import Change
from tracehouse.detect.segments import ALL, segment_dims

CLUSTER_PERIODS = 2
EXPLAIN = 0.6
MAX_SHARE = 0.75
CONCENTRATION = 1.5
MAX_DRIVERS = 2
#: Metrics whose segments each measure their own quantity (no `all`-level sum).
PER_SEGMENT_METRICS = frozenset({"model_share"})
#: Per-segment dimensions of a metric whose segments are different quantities.
PER_SEGMENT_DIMS = {"latency_p95_ms": frozenset({"span_type"})}
#: (redundant metric, metric that says the same) in the same segment.
REDUNDANT = (("request_count", "model_share"),)
PERIOD = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


def family(metric: str, segment_key: str) -> str:
    """Return the key of the segments that measure the same quantity as this one."""
    if metric in PER_SEGMENT_METRICS:
        return segment_key
    if segment_dims(segment_key) in PER_SEGMENT_DIMS.get(metric, ()):
        return segment_key
    return "segments"


def clusters(changes: Sequence[Change]) -> list[list[Change]]:
    """Return the changes grouped into clusters (rule 1), each sorted by time."""
    order = sorted(
        changes,
        key=lambda c: (c.metric, c.grain, family(c.metric, c.segment_key), c.direction,
                       c.change_at, c.segment_key),
    )
    out: list[list[Change]] = []
    for c in order:
        if out:
            last = out[-1][-1]
            tol = CLUSTER_PERIODS * PERIOD.get(c.grain, timedelta(days=1))
            same = (last.metric, last.grain, family(last.metric, last.segment_key),
                    last.direction) == (c.metric, c.grain, family(c.metric, c.segment_key),
                                        c.direction)
            if same and c.change_at - last.change_at <= tol:
                out[-1].append(c)
                continue
        out.append([c])
    return out


def _aligned(c: Change, value: float) -> float:
    """Return `value` signed so that positive means "in the change's direction"."""
    return value if c.direction == "up" else -value


Measure = Callable[[Sequence[Change], datetime], None]


def anchor(cluster: Sequence[Change]) -> datetime:
    """Return the common time of a cluster: its `all` change's, else the median change time."""
    for c in cluster:
        if c.segment_key == ALL:
            return c.change_at
    times = sorted(c.change_at for c in cluster)
    return times[(len(times) - 1) // 2]


def home(cluster: Sequence[Change], measure: Measure | None = None) -> list[Change]:
    """Return the change(s) of a cluster that are kept (rules 2-4).

    `measure(cluster, at)` re-measures the contributions of all members around one time.
    """
    if len(cluster) == 1:
        return list(cluster)
    if measure is not None:
        measure(cluster, anchor(cluster))
    overall = [c for c in cluster if c.segment_key == ALL]
    parts = [c for c in cluster if c.segment_key != ALL and math.isfinite(c.contribution)]
    if not parts:
        return overall or [max(cluster, key=lambda c: c.score)]
    ref = cluster[0]
    moves = [_aligned(ref, c.overall_move) for c in parts if math.isfinite(c.overall_move)]
    move = max(sorted(moves)[len(moves) // 2], 1e-12) if moves else 1e-12
    by_dim: dict[str, list[Change]] = {}
    for c in parts:
        by_dim.setdefault(segment_dims(c.segment_key), []).append(c)
    drivers: list[tuple[float, float, list[Change]]] = []
    for group in by_dim.values():
        members = sorted(group, key=lambda c: -_aligned(ref, c.contribution))
        for k in range(1, min(MAX_DRIVERS, len(members)) + 1):
            top = members[:k]
            explained = sum(_aligned(ref, c.contribution) for c in top) / move
            share = sum(c.share for c in top if math.isfinite(c.share))
            if explained >= EXPLAIN and share <= MAX_SHARE and explained >= CONCENTRATION * share:
                drivers.append((share, -explained, top))
                break
    if drivers:  # most concentrated; ties (e.g. a route served by one model) by segment key
        return min(drivers, key=lambda d: (round(d[0], 9), d[1], d[2][0].segment_key))[2]
    if overall:
        return overall
    biggest = max(parts, key=lambda c: _aligned(ref, c.contribution))
    return by_dim[segment_dims(biggest.segment_key)]


def _redundant(c: Change, kept: Sequence[Change]) -> bool:
    for metric, better in REDUNDANT:
        if c.metric != metric:
            continue
        tol = CLUSTER_PERIODS * PERIOD.get(c.grain, timedelta(days=1))
        if any(
            k.metric == better and k.segment_key == c.segment_key and k.grain == c.grain
            and k.direction == c.direction and abs(k.change_at - c.change_at) <= tol
            for k in kept
        ):
            return True
    return False


def deduplicate(changes: Sequence[Change], measure: Measure | None = None) -> list[Change]:
    """Return one change per distinct change (rules 1-5), sorted by time, metric, segment."""
    kept = [c for cl in clusters(changes) for c in home(cl, measure)]
    kept = [c for c in kept if not _redundant(c, kept)]
    return sorted(kept, key=lambda c: (c.change_at, c.metric, c.grain, c.segment_key))
