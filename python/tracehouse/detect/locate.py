"""Locate a daily change to the hour with `metric_hourly`.

A daily change's `change_at` is the first whole day of the new regime: the step itself happened
during that day or the day before (a transition period). Over the hours from two days before to
one day after it, the single weighted step (weights: the hourly denominator `n`) that best
separates the hourly values is found from cumulative sums; its start replaces `change_at` when

* the step goes the daily change's way,
* the hourly series has the traffic to say it: at least `MIN_HOURS` hours with data and a
  median of `MIN_MEDIAN_N` per hour, and
* the step stands out of the hourly noise: `|difference| / se >= MIN_Z`, the noise being the
  weighted residual variance about the two levels (so hours with few requests count little).

Otherwise the day stays. A canary (a share of the traffic for some hours) makes a ramp; the
step found is its steepest part, usually when the version reached all traffic.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from tracehouse.detect.changes import Change

MIN_HOURS = 24
MIN_MEDIAN_N = 1.0
MIN_Z = 4.0
MIN_SIDE = 3  # hours with data on each side of the step
BEFORE = timedelta(hours=48)
AFTER = timedelta(hours=24)


def best_step(y: np.ndarray, w: np.ndarray) -> tuple[int, float, float] | None:
    """Return (index of the first point after the step, difference after - before, z).

    `y`, `w`: the valid points only (finite value, positive weight), in time order.
    """
    m = len(y)
    if m < 2 * MIN_SIDE:
        return None
    cw = np.cumsum(w)
    cy = np.cumsum(w * y)
    cyy = np.cumsum(w * y * y)
    k = np.arange(MIN_SIDE, m - MIN_SIDE + 1)  # split before index k
    wl, wr = cw[k - 1], cw[-1] - cw[k - 1]
    sl, sr = cy[k - 1], cy[-1] - cy[k - 1]
    ssl, ssr = cyy[k - 1], cyy[-1] - cyy[k - 1]
    ml, mr = sl / wl, sr / wr
    rss = (ssl - sl * ml) + (ssr - sr * mr)
    best = int(np.argmin(rss))
    sigma2 = max(float(rss[best]) / max(m - 2, 1), 1e-18)
    se = math.sqrt(sigma2 * (1.0 / wl[best] + 1.0 / wr[best]))
    diff = float(mr[best] - ml[best])
    return int(k[best]), diff, abs(diff) / se if se > 0 else math.inf


def refine(
    change: Change, periods: np.ndarray, value: np.ndarray, n: np.ndarray
) -> datetime | None:
    """Return the hour the daily `change` started (None: keep the day). Hourly inputs of the
    change's series: `periods` (µs), `value`, `n`."""
    at = change.change_at
    lo = int((at - BEFORE).timestamp() * 1_000_000)
    hi = int((at + AFTER).timestamp() * 1_000_000)
    sel = (periods >= lo) & (periods < hi) & np.isfinite(value) & (n > 0)
    if sel.sum() < MIN_HOURS or float(np.median(n[sel])) < MIN_MEDIAN_N:
        return None
    t, y, w = periods[sel], value[sel], n[sel]
    step = best_step(y, w)
    if step is None:
        return None
    k, diff, z = step
    if z < MIN_Z or (diff > 0) != (change.direction == "up"):
        return None
    return datetime.fromtimestamp(int(t[k]) / 1_000_000, tz=at.tzinfo)
