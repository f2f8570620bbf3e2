"""PELT (Killick, Fearnhead & Eckley 2012) for a weighted Gaussian mean-shift cost.

The cost of a segment is its weighted residual sum of squares around its weighted mean,
`sum w y^2 - (sum w y)^2 / sum w`, which is -2 log-likelihood (up to a constant) of independent
Gaussian points with variance `1 / w` in the units of `y`. Segment sums come from prefix sums,
and each step of the recursion is vectorised over the surviving candidate change points, so the
only Python loop is over time (`n` steps of a few numpy calls).
"""

from __future__ import annotations

import numpy as np

from tracehouse.detect.cp_prepare import FloatArray, IntArray


def prefix_sums(y: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return prefix sums (with a leading 0) of `w`, `w * y` and `w * y^2`."""
    zero = np.zeros(1)
    return (
        np.concatenate((zero, np.cumsum(w))),
        np.concatenate((zero, np.cumsum(w * y))),
        np.concatenate((zero, np.cumsum(w * y * y))),
    )


def pelt(y: FloatArray, w: FloatArray, penalty: float, min_size: int) -> IntArray:
    """Return the optimal change points of `y` under a per-change `penalty`.

    A change point `c` is the position (into `y`) of the first point of a new segment; every
    segment has at least `min_size` points. Minimises the total segment cost plus
    `penalty * (number of changes)` exactly, pruning candidates that can never again be optimal.
    """
    n = y.size
    if n < 2 * min_size:
        return np.zeros(0, dtype=np.intp)
    s0, s1, s2 = prefix_sums(y, w)
    best = np.full(n + 1, np.inf)
    best[0] = -penalty
    last = np.zeros(n + 1, dtype=np.intp)
    # the surviving candidates, in increasing order, are buf[:m] (no reallocation per step)
    buf = np.zeros(n + 1, dtype=np.intp)
    m = 1
    for t in range(min_size, n + 1):
        fresh = t - min_size
        if fresh >= min_size:
            buf[m] = fresh
            m += 1
        cand = buf[:m]
        sw = s0[t] - s0[cand]
        sy = s1[t] - s1[cand]
        total = best[cand] + (s2[t] - s2[cand]) - sy * sy / sw
        k = int(total.argmin())
        best[t] = total[k] + penalty
        last[t] = cand[k]
        kept = cand[total <= best[t]]
        m = kept.size
        buf[:m] = kept
    changes: list[int] = []
    t = int(last[n])
    while t > 0:
        changes.append(t)
        t = int(last[t])
    return np.array(changes[::-1], dtype=np.intp)
