"""Traffic shape: how many traces a day brings, and when in the day they start."""

from __future__ import annotations

from datetime import date
from typing import Final

import numpy as np

from tracehouse.generator.world import US_PER_S, rng_for, to_us

# Mon..Sun relative volume; averages 1.0 over a week.
WEEKDAY_FACTOR: Final = (1.13, 1.16, 1.15, 1.12, 1.04, 0.72, 0.68)
_HOURS = np.arange(24) + 0.5
# Global customer base, peaking in European and American business hours (UTC).
HOUR_WEIGHT: Final = (
    0.18
    + np.exp(-(((_HOURS - 10.0) / 3.2) ** 2))
    + 1.15 * np.exp(-(((_HOURS - 16.5) / 3.6) ** 2))
)
HOUR_CUM: Final = np.cumsum(HOUR_WEIGHT / HOUR_WEIGHT.sum())
MIDNIGHT_STRADDLERS: Final = 2  # traces per day forced to start in the day's last seconds


def traces_on(seed: int, day: date, traces_per_day: int) -> int:
    """How many traces ``day`` brings: the weekly shape times a little day-to-day noise."""
    rng = rng_for(seed, "volume", day.toordinal())
    factor = WEEKDAY_FACTOR[day.weekday()] * float(np.exp(rng.normal(0.0, 0.04)))
    return max(1, round(traces_per_day * factor))


def start_times(rng: np.random.Generator, day: date, n: int) -> np.ndarray:
    """Sorted root start times (µs) over the day, following the diurnal curve.

    The last few traces start in the day's final seconds, so that their spans straddle midnight.
    """
    hour = np.searchsorted(HOUR_CUM, rng.random(n), side="right").clip(0, 23)
    t = to_us(day) + ((hour + rng.random(n)) * 3600 * US_PER_S).astype(np.int64)
    k = min(MIDNIGHT_STRADDLERS, n // 50)
    if k:
        t[:k] = to_us(day) + 86_400 * US_PER_S - (rng.uniform(0.5, 2.5, k) * US_PER_S).astype(
            np.int64
        )
    return np.sort(t)
