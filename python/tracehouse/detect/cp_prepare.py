"""Input preparation for change-point detection: validity mask, noise scale, despiking, seasonality.

Every function here is vectorised numpy and pure. The detector works on the *valid* points only
(finite value, finite positive weight); these helpers turn a raw series into standardised,
despiked, optionally deseasonalised values plus the inverse-variance weights that go with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Consistency constant: MAD * 1.4826 estimates a Gaussian standard deviation.
MAD_TO_SD = 1.482602218505602
#: Consistency constant: mean absolute deviation * sqrt(pi/2) estimates a Gaussian SD.
MEANAD_TO_SD = 1.2533141373155001
#: Winsorising point of `robust_scale`, in MAD-SDs, and E[min(Z^2, K^2)] for a standard normal Z.
WINSOR_K = 3.0
WINSOR_CONSISTENCY = 0.9950072780106278
#: Hampel filter: points beyond this many noise SDs from the local median are replaced by it.
HAMPEL_K = 3.0
#: Hampel filter half-window: isolated runs of up to this many outlying points are removed.
HAMPEL_HALF_WINDOW = 2


@dataclass(frozen=True)
class PreparedSeries:
    """A series reduced to its valid points, ready for segmentation.

    `index` holds the original 0-based positions of the valid points; `level` is the despiked
    (and deseasonalised, if a period was given) series on the original scale; `y` is `level`
    centred and divided by `sigma`, so one unit is one noise SD of a point of weight 1; `w` are
    the weights rescaled to mean 1.
    """

    index: IntArray
    level: FloatArray
    y: FloatArray
    w: FloatArray
    sigma: float
    centre: float


def robust_scale(x: FloatArray) -> float:
    """Return a robust, efficient SD estimate of `x`.

    The SD of `x` winsorised at 3 MAD-SDs from its median, divided by its Gaussian consistency
    factor: as robust to outliers as the MAD but nearly as efficient as the plain SD (the MAD
    alone wastes almost two thirds of the data). If the MAD is 0 (a series of many ties: integer
    counts, rates that are mostly 0) the scaled mean absolute deviation is used instead; 0 only
    for a constant `x`.
    """
    if x.size == 0:
        return 0.0
    centre = np.median(x)
    dev = np.abs(x - centre)
    mad = float(np.median(dev)) * MAD_TO_SD
    if mad <= 0.0:
        return float(np.mean(dev)) * MEANAD_TO_SD
    clipped = np.minimum(dev, WINSOR_K * mad)
    return float(np.sqrt(np.mean(clipped * clipped) / WINSOR_CONSISTENCY))


def diff_noise_scale(y: FloatArray, w: FloatArray) -> float:
    """Return the noise SD of a weight-1 point, from weighted first differences.

    Differences cancel level shifts (except at the few change points, which the MAD ignores)
    and linear trends, so this estimates the point-to-point noise, not the spread of the series.
    Each difference is standardised by the SD it would have under `var_i = sigma^2 / w_i`.
    """
    d = np.diff(y) / np.sqrt(1.0 / w[:-1] + 1.0 / w[1:])
    return robust_scale(d) if d.size else 0.0


def rolling_median(y: FloatArray, half_window: int) -> FloatArray:
    """Return the centred rolling median of `y` over `2 * half_window + 1` points.

    The first and last `half_window` points take the median of the first / last full window,
    so a spike of up to `half_window` points at either end is still a minority in its window
    (reflecting or shrinking the window at the edges would make it a majority).
    """
    h = min(half_window, (y.size - 1) // 2)
    if h <= 0:
        return y.copy()
    windows = np.lib.stride_tricks.sliding_window_view(y, 2 * h + 1)
    return np.pad(np.median(windows, axis=1), h, mode="edge")


def hampel_filter(y: FloatArray, noise_sd: FloatArray) -> FloatArray:
    """Return `y` with points further than `HAMPEL_K * noise_sd` from the local median replaced.

    The classic Hampel identifier: the replacement is the centred 5-point rolling median. A real
    level shift that lasts at least 3 points is untouched, because its points are the majority
    of their windows; a spike of 1 or 2 points is not.
    """
    local = rolling_median(y, HAMPEL_HALF_WINDOW)
    return np.where(np.abs(y - local) > HAMPEL_K * noise_sd, local, y)


def seasonal_profile(index: IntArray, y: FloatArray, period: int, length: int) -> FloatArray:
    """Return the robust seasonal component of each valid point (zero-mean over one period).

    The level is a centred rolling median over one full period (the seasonal pattern cancels
    out of it); the profile of each phase is the median of the detrended points of that phase.
    Returns zeros if there are fewer than two full periods of data or any phase has fewer than
    two observations.
    """
    if period < 2 or y.size < 2 * period:
        return np.zeros_like(y)
    level = rolling_median(y, period // 2)
    cycles = -(-length // period)
    grid = np.full(cycles * period, np.nan)
    grid[index] = y - level
    by_phase = grid.reshape(cycles, period)
    if np.min(np.sum(np.isfinite(by_phase), axis=0)) < 2:
        return np.zeros_like(y)
    profile = np.nanmedian(by_phase, axis=0)
    profile -= profile.mean()
    return profile[index % period]


def prepare(
    values: ArrayLike, weights: ArrayLike | None, period: int | None,
    noise_floor: float = 0.0,
) -> PreparedSeries | None:
    """Return the prepared valid points of a series, or None if there are none.

    Points with a non-finite value, or a non-finite or non-positive weight, are dropped.
    `noise_floor` is a lower bound on the noise SD of a point of weight 1 (in the units of
    `weights` as given): e.g. `sqrt(p (1 - p))` for a share `p` weighted by its denominator,
    whose binomial sampling noise no real series can undercut. It matters for sparse counts (a
    rate of 1% on 40 requests a day is mostly zeros, whose differences are mostly 0, so the
    robust scale of the differences collapses).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != x.shape:
        msg = f"weights has {w.size} points, values has {x.size}"
        raise ValueError(msg)
    ok = np.isfinite(x) & np.isfinite(w) & (w > 0)
    index = np.flatnonzero(ok)
    if index.size == 0:
        return None
    x, w = x[ok], w[ok]
    mean_w = float(w.mean())
    w = w / mean_w
    if period is not None:
        x = x - seasonal_profile(index, x, int(period), int(ok.size))
    sigma = max(diff_noise_scale(x, w), float(noise_floor) / np.sqrt(mean_w))
    if sigma > 0.0:
        x = hampel_filter(x, sigma / np.sqrt(w))
    centre = float(np.median(x))
    scale = sigma if sigma > 0.0 else 1.0
    return PreparedSeries(
        index=index, level=x, y=(x - centre) / scale, w=w, sigma=sigma, centre=centre
    )
