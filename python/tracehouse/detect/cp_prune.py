"""Local significance of candidate change points: trend-aware gains, pruning, long-run variance.

PELT on a mean-shift cost answers "where would steps fit best?". It does not know that a linear
trend is not a staircase, nor that autocorrelated noise makes a wandering level look like
steps. This module re-tests every candidate locally, on the window between its two neighbours:

* `gain_const`: drop in weighted RSS from fitting two means instead of one (the CUSUM / likelihood
  ratio statistic of a single level shift);
* `gain_trend`: drop in weighted RSS from adding a step to a straight line fitted to the window.
  On a pure trend a staircase step barely beats the line, so its gain collapses;
* the smaller of the two, divided by a long-run variance factor estimated from the residuals
  (DeCAFS-style: autocorrelated noise inflates the variance of a segment mean by
  `(1 + phi) / (1 - phi)`), must exceed the penalty, otherwise the weakest candidate is removed
  and its neighbours re-tested (backward elimination).

All statistics come from prefix sums, vectorised over candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracehouse.detect.cp_prepare import FloatArray, IntArray, robust_scale

#: Largest lag-1 autocorrelation the long-run variance correction will believe.
MAX_PHI = 0.9
#: Ridge added to normal equations, relative to their scale, so degenerate windows cannot fail.
RIDGE = 1e-10


@dataclass(frozen=True)
class Sums:
    """Prefix sums (leading 0) of the weighted moments needed for local fits on time `t`."""

    w: FloatArray
    wt: FloatArray
    wtt: FloatArray
    wy: FloatArray
    wty: FloatArray
    t: FloatArray

    @classmethod
    def of(cls, t: FloatArray, y: FloatArray, w: FloatArray) -> Sums:
        """Return the prefix sums of a series `y` observed at times `t` with weights `w`."""

        def cum(a: FloatArray) -> FloatArray:
            return np.concatenate((np.zeros(1), np.cumsum(a)))

        return cls(
            w=cum(w), wt=cum(w * t), wtt=cum(w * t * t), wy=cum(w * y), wty=cum(w * t * y), t=t
        )


def _window(s: Sums, lo: IntArray, hi: IntArray, origin: FloatArray) -> tuple[FloatArray, ...]:
    """Return the sums over `[lo, hi)` of w, wT, wT^2, wy, wTy with `T = t - origin`."""
    sw = s.w[hi] - s.w[lo]
    swt = s.wt[hi] - s.wt[lo]
    swtt = s.wtt[hi] - s.wtt[lo]
    swy = s.wy[hi] - s.wy[lo]
    swty = s.wty[hi] - s.wty[lo]
    return (
        sw,
        swt - origin * sw,
        swtt - 2.0 * origin * swt + origin * origin * sw,
        swy,
        swty - origin * swy,
    )


def _explained(gram: FloatArray, rhs: FloatArray) -> FloatArray:
    """Return `rhs . solve(gram, rhs)` batched: the weighted sum of squares a fit explains."""
    scale = np.abs(gram).max(axis=(1, 2), keepdims=True) + 1.0
    eye = np.eye(gram.shape[-1])[None]
    beta = np.linalg.solve(gram + RIDGE * scale * eye, rhs[..., None])[..., 0]
    return np.sum(beta * rhs, axis=1)


def local_gains(s: Sums, a: IntArray, b: IntArray, c: IntArray) -> FloatArray:
    """Return the local gain of a step at `b` within the window `[a, c)`, batched over windows."""
    origin = s.t[a]
    w, wt, wtt, wy, wty = _window(s, a, c, origin)
    wr, wtr, _, wyr, _ = _window(s, b, c, origin)
    wl, wyl = w - wr, wy - wyr
    gain_const = wyl * wyl / wl + wyr * wyr / wr - wy * wy / w
    line = _explained(
        np.stack((np.stack((w, wt), -1), np.stack((wt, wtt), -1)), -2),
        np.stack((wy, wty), -1),
    )
    line_step = _explained(
        np.stack(
            (
                np.stack((w, wt, wr), -1),
                np.stack((wt, wtt, wtr), -1),
                np.stack((wr, wtr, wr), -1),
            ),
            -2,
        ),
        np.stack((wy, wty, wyr), -1),
    )
    # Which null explains the window better, one level or one line? Only in the second case
    # must a step prove itself on top of the line: a staircase along a trend then collapses,
    # while a plain level shift (better fitted by two levels than by a line) keeps full power.
    stepish = wyl * wyl / wl + wyr * wyr / wr >= line
    return np.where(stepish, gain_const, line_step - line)


def _bounds(cps: IntArray, n: int) -> tuple[IntArray, IntArray, IntArray]:
    """Return the (previous boundary, change, next boundary) triples of each change point."""
    edges = np.concatenate(([0], cps, [n])).astype(np.intp)
    return edges[:-2], edges[1:-1], edges[2:]


def gains(s: Sums, cps: IntArray, n: int) -> FloatArray:
    """Return the local gain of every change point given its neighbours."""
    if cps.size == 0:
        return np.zeros(0)
    return local_gains(s, *_bounds(cps, n))


def eliminate(s: Sums, cps: IntArray, n: int, threshold: float) -> IntArray:
    """Return `cps` after repeatedly dropping the weakest changes whose gain is below `threshold`.

    Each round drops every failing change that is weaker than both its neighbouring changes
    (always including the weakest overall), then re-tests the survivors: the same as dropping
    one at a time wherever failures are not adjacent, but in a few rounds instead of one per
    change on long series.
    """
    while cps.size:
        g = gains(s, cps, n)
        padded = np.concatenate(([np.inf], g, [np.inf]))
        drop = (g < threshold) & (g <= padded[:-2]) & (g < padded[2:])
        if not drop.any():
            break
        cps = cps[~drop]
    return cps


def refine(s: Sums, cps: IntArray, n: int, min_size: int) -> IntArray:
    """Return `cps` with each change moved to the best position between its neighbours.

    After neighbours are pruned a surviving change may fit better a point or two away; one
    left-to-right pass re-places each change at the argmax of its local gain.
    """
    out = cps.copy()
    for j in range(out.size):
        a = 0 if j == 0 else int(out[j - 1])
        c = n if j == out.size - 1 else int(out[j + 1])
        b = np.arange(a + min_size, c - min_size + 1, dtype=np.intp)
        if b.size > 1:
            g = local_gains(s, np.full_like(b, a), b, np.full_like(b, c))
            out[j] = b[int(np.argmax(g))]
    return out


def long_run_factor(s: Sums, y: FloatArray, w: FloatArray, cps: IntArray) -> float:
    """Return the long-run variance of the residuals, in units of the white-noise variance.

    Residuals are taken from a separate weighted line per segment (so trends and steps do not
    count as noise). With robust marginal SD `sx` and lag-1 autocorrelation `phi` estimated from
    the robust SD of within-segment differences (`var(diff) = 2 sx^2 (1 - phi)`), returns
    `sx^2 (1 + phi) / (1 - phi)`, floored at 1.
    """
    n = y.size
    edges = np.concatenate(([0], cps, [n])).astype(np.intp)
    a, b = edges[:-1], edges[1:]
    origin = s.t[a]
    sw, swt, swtt, swy, swty = _window(s, a, b, origin)
    gram = np.stack((np.stack((sw, swt), -1), np.stack((swt, swtt), -1)), -2)
    scale = np.abs(gram).max(axis=(1, 2), keepdims=True) + 1.0
    beta = np.linalg.solve(
        gram + RIDGE * scale * np.eye(2)[None], np.stack((swy, swty), -1)[..., None]
    )[..., 0]
    seg = np.repeat(np.arange(a.size), b - a)
    fit = beta[seg, 0] + beta[seg, 1] * (s.t - origin[seg])
    r = np.sqrt(w) * (y - fit)
    sx = robust_scale(r)
    if sx <= 0.0:
        return 1.0
    same = seg[1:] == seg[:-1]
    dr = np.diff(r)[same]
    sd = robust_scale(dr) / np.sqrt(2.0) if dr.size else sx
    phi = float(np.clip(1.0 - (sd * sd) / (sx * sx), 0.0, MAX_PHI))
    return max(1.0, sx * sx * (1.0 + phi) / (1.0 - phi))


def _mad(x: FloatArray) -> float:
    """Return the median absolute deviation of `x` (unscaled)."""
    return float(np.median(np.abs(x - np.median(x))))


def lagged_diff_factor(y: FloatArray, w: FloatArray, cps: IntArray | None = None) -> float:
    """Return the long-run variance factor implied by lag-1 and lag-2 differences.

    For AR(1) noise of marginal variance `sx^2`, half the variance of lag-`k` differences is
    `v_k = sx^2 (1 - phi^k)`, so `phi = v_2 / v_1 - 1` (Romano et al. 2022 estimate DeCAFS'
    parameters the same way). Differences cancel level shifts and trends except at a handful
    of points, which the robust scale ignores. The estimate is shrunk by one standard error
    (about `1 / sqrt(n)`) so white noise does not pay for its sampling noise. Returns
    `(1 + phi) / (1 - phi)^2`, the long-run variance in units of `v_1`.

    `cps` (candidate change points, e.g. PELT's) are the places where that cancellation fails:
    a step spoils one lag-1 but two lag-2 differences, and a step spread over two periods (a
    change in the middle of a day) spoils two and three. On a short series with a few large
    steps that is a quarter of the lag-2 differences, more than the winsorised scale can
    absorb, and the factor explodes (phi clipped at 0.9: a factor of 190 that hides every
    change). So differences touching a point within `[c - 2, c + 1]` of a candidate are left
    out, as long as at least 8 of each remain.
    """
    n = y.size
    if n < 8:
        return 1.0
    d1 = np.diff(y) / np.sqrt(1.0 / w[1:] + 1.0 / w[:-1])
    d2 = (y[2:] - y[:-2]) / np.sqrt(1.0 / w[2:] + 1.0 / w[:-2])
    if cps is not None and cps.size:
        near = np.zeros(n, dtype=bool)
        for off in (-2, -1, 0, 1):
            idx = cps + off
            near[idx[(idx >= 0) & (idx < n)]] = True
        keep1 = ~(near[:-1] | near[1:])
        keep2 = ~(near[:-2] | near[1:-1] | near[2:])
        if keep1.sum() >= 8 and keep2.sum() >= 8:
            d1, d2 = d1[keep1], d2[keep2]
    if min(_mad(d1), _mad(d2)) <= 0.0:
        return 1.0  # mostly tied differences (counts, mostly-zero rates): no reliable estimate
    v1, v2 = robust_scale(d1) ** 2, robust_scale(d2) ** 2
    phi = float(np.clip(v2 / v1 - 1.0 - 1.0 / np.sqrt(n), 0.0, MAX_PHI))
    return (1.0 + phi) / (1.0 - phi) ** 2
