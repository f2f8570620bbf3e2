"""Behaviour of the change-point detector `tracehouse.detect.change_points` / `detect`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tracehouse.detect import ALGORITHM_NAME, ChangePoint, change_points, detect


def _noise(seed: int, n: int, sd: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, n)


def _near(found: list[int], target: int, margin: int = 1) -> bool:
    return any(abs(i - target) <= margin for i in found)


@pytest.mark.parametrize("seed", range(5))
def test_single_step_found_within_one_index(seed: int) -> None:
    x = 100.0 + _noise(seed, 90)
    x[55:] += 4.0
    found = change_points(x)
    assert len(found) == 1
    assert _near(found, 55)


@pytest.mark.parametrize("seed", range(5))
def test_two_steps_found(seed: int) -> None:
    x = _noise(seed, 120)
    x[40:] += 4.0
    x[85:] -= 6.0
    found = change_points(x)
    assert len(found) == 2
    assert _near(found, 40)
    assert _near(found, 85)


def test_constant_series_has_no_change() -> None:
    assert change_points(np.full(100, 3.25)) == []
    assert change_points(np.zeros(10)) == []


def test_pure_noise_false_positive_rate_is_low() -> None:
    fired = sum(bool(change_points(_noise(seed, 30 + seed % 150))) for seed in range(200))
    assert fired <= 10  # at most 5% of series with any change point


def test_heavy_tailed_noise_false_positive_rate_is_low() -> None:
    rng = np.random.default_rng(7)
    fired = sum(bool(change_points(rng.standard_t(3, 90))) for _ in range(200))
    assert fired <= 10


@pytest.mark.parametrize("width", [1, 2])
def test_outlier_spike_is_not_a_change(width: int) -> None:
    for seed in range(10):
        x = 50.0 + _noise(seed, 90)
        x[40 : 40 + width] += 25.0
        assert change_points(x) == []


@pytest.mark.parametrize("slope", [0.05, 0.3, 2.0])
def test_linear_trend_does_not_fire_repeatedly(slope: float) -> None:
    for seed in range(10):
        x = slope * np.arange(120) + _noise(seed, 120)
        assert len(change_points(x)) <= 1


def test_linear_trend_rarely_fires_at_all() -> None:
    fired = sum(bool(change_points(0.2 * np.arange(90) + _noise(seed, 90))) for seed in range(50))
    assert fired <= 5


def _weekly(n: int) -> np.ndarray:
    return np.tile([1.0, 1.2, 1.1, 1.0, 0.9, -2.5, -2.7], n // 7 + 1)[:n]


def test_weekly_seasonality_with_period_does_not_fire() -> None:
    fired = sum(
        bool(change_points(10.0 + _weekly(91) + _noise(seed, 91, 0.3), period=7))
        for seed in range(50)
    )
    assert fired <= 3


def test_step_on_top_of_weekly_seasonality_is_found() -> None:
    for seed in range(10):
        x = 10.0 + _weekly(91) + _noise(seed, 91, 0.3)
        x[60:] += 1.5
        found = change_points(x, period=7)
        assert len(found) == 1
        assert _near(found, 60)


def test_nans_are_skipped_and_indices_refer_to_the_input() -> None:
    x = 5.0 + _noise(3, 100)
    x[60:] += 4.0
    x[[3, 20, 58, 59, 61, 90]] = np.nan
    found = change_points(x)
    assert found == [60]


def test_all_nan_and_empty_series() -> None:
    assert change_points(np.full(30, np.nan)) == []
    assert change_points([]) == []


@pytest.mark.parametrize("n", range(8))
def test_very_short_series_yields_nothing(n: int) -> None:
    x = np.r_[np.zeros(n // 2), np.full(n - n // 2, 100.0)] + _noise(0, n, 0.01)
    assert change_points(x) == []


def test_scale_and_offset_invariance() -> None:
    for seed in range(10):
        x = _noise(seed, 90)
        x[30:] += 2.5
        x[70:] -= 1.5
        base = change_points(x)
        assert change_points(x * 1e6) == base
        assert change_points(x * 1e-6 + 1e3) == base


def test_weights_discount_noisy_low_weight_points() -> None:
    rng = np.random.default_rng(11)
    n = np.where(np.arange(120) % 2 == 0, 8000, 4)
    rate = rng.binomial(n, 0.05) / n
    shifted = rate.copy()
    late_small = (np.arange(120) >= 60) & (n == 4)
    shifted[late_small] = rng.binomial(4, 0.5, late_small.sum()) / 4
    # Unweighted, half the late points jumped: a change. Weighted, the 8,000-request points
    # did not move, and the 4-request points are noise.
    assert change_points(shifted, weights=n) == []


def test_weights_still_find_a_change_on_heavy_points() -> None:
    rng = np.random.default_rng(12)
    n = rng.integers(500, 5000, 120)
    p = np.where(np.arange(120) >= 70, 0.08, 0.05)
    found = change_points(rng.binomial(n, p) / n, weights=n)
    assert _near(found, 70)


def test_invalid_weights_count_as_missing() -> None:
    x = _noise(5, 90)
    x[50:] += 4.0
    w = np.ones(90)
    w[[10, 50]] = [0.0, np.nan]
    assert change_points(x, weights=w) == [51]
    with pytest.raises(ValueError, match="weights"):
        change_points(x, weights=np.ones(3))


def test_deterministic() -> None:
    x = np.abs(_noise(9, 180)) + np.repeat([1.0, 3.0, 2.0], 60)
    assert all(change_points(x) == change_points(x) for _ in range(3))
    assert detect(x) == detect(x.copy())


def test_detect_reports_levels_and_scores() -> None:
    x = 0.02 + _noise(4, 90, 0.002)
    x[45:] += 0.01
    (cp,) = detect(x)
    assert isinstance(cp, ChangePoint)
    assert cp.index == 45
    assert cp.value_before == pytest.approx(0.02, abs=0.001)
    assert cp.value_after == pytest.approx(0.03, abs=0.001)
    assert cp.direction == "up"
    assert cp.relative_change == pytest.approx(0.5, abs=0.1)
    assert cp.score > 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.index = 3  # type: ignore[misc]


def test_bigger_change_scores_higher() -> None:
    x = _noise(8, 120)
    x[40:] += 2.0
    x[80:] += 6.0
    small, large = detect(x)
    assert large.score > small.score


def test_change_points_is_the_index_view_of_detect() -> None:
    x = _noise(2, 150)
    x[50:] += 3.0
    x[100:] -= 3.0
    assert change_points(x) == [cp.index for cp in detect(x)]
    assert ALGORITHM_NAME


@pytest.mark.parametrize("seed", range(5))
def test_change_during_a_period_is_one_change_dated_to_that_period(seed: int) -> None:
    # a rate of 1% jumps to 98% at 14:00 on day 12 and back at 09:00 on day 17, with weekly
    # seasonality removed: the two partial days sit between the levels; without the transition
    # rule the 3-point minimum segment turned them into a staircase dated days early
    rng = np.random.default_rng(seed)
    n = np.full(35, 300.0)
    p = np.full(35, 0.01)
    p[12], p[13:17], p[17] = 0.01 * 14 / 24 + 0.98 * 10 / 24, 0.98, 0.98 * 9 / 24 + 0.01 * 15 / 24
    x = rng.binomial(n.astype(int), p) / n
    found = detect(x, n, 7, noise_floor=float(np.sqrt(0.05 * 0.95)))
    assert [cp.index for cp in found] == [12, 17]
    assert found[0].value_after > 0.95 and found[1].value_after < 0.05


def test_noise_floor_keeps_sparse_rates_quiet() -> None:
    # a 1% rate on 20-50 requests a day (the job's penalty for 300 series): mostly zeros, so the
    # robust scale of the differences collapses and, without the binomial floor, runs of zeros
    # read as regimes (3 of these 40 series)
    pen = 3 * np.log(35) + 2 * np.log(300)
    fp = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = rng.integers(20, 50, 35).astype(float)
        x = rng.binomial(n.astype(int), 0.01) / n
        fp += bool(detect(x, n, 7, penalty=pen, noise_floor=float(np.sqrt(0.01 * 0.99))))
    assert fp == 0
