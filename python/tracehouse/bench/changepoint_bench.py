"""Benchmark of `tracehouse.detect` against ruptures' PELT and binary segmentation.

Run: `python -m tracehouse.bench.changepoint_bench [--series N] [--seed S]`.

Generates a seeded set of labelled synthetic series shaped like LLM-ops metrics (rates with
binomial noise given a daily request count, lognormal latencies, gamma-noise costs, Poisson
request counts; weekly seasonality, trends, outliers, 0-3 level shifts, 30-180 daily points)
plus a few hand-made "real-world-like" shapes, then prints precision, recall and F1 (a detection
within `margin` points of a true change counts once), the share of change-free series with any
detection, and the mean runtime per series. These series are a sanity check, not a tuning set:
the detector's defaults come from the literature, not from this file.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import ruptures as rpt

from tracehouse.detect import change_points

FloatArray = np.ndarray
Detector = Callable[["Series"], list[int]]


@dataclass(frozen=True)
class Series:
    """One labelled series: values, optional weights, seasonal period, true change indices."""

    name: str
    kind: str
    values: FloatArray
    truth: tuple[int, ...]
    weights: FloatArray | None = None
    period: int = 7
    plain: bool = False


# --- synthetic generators ----------------------------------------------------------------


def _weekly(rng: np.random.Generator, n: int, amplitude: float) -> FloatArray:
    """Return a multiplicative weekly profile (weekend dip) starting on a random weekday."""
    base = np.array([1.0, 1.02, 1.03, 1.01, 0.98, 1 - amplitude, 1 - 0.9 * amplitude])
    return np.roll(base / base.mean(), rng.integers(7))[np.arange(n) % 7]


def _steps(rng: np.random.Generator, n: int) -> tuple[int, ...]:
    """Return 0-3 sorted change indices, at least 4 from the ends and 8 apart."""
    k = int(rng.choice(4, p=[0.3, 0.35, 0.2, 0.15]))
    for _ in range(50):
        idx = np.sort(rng.choice(np.arange(4, n - 4), size=k, replace=False))
        if k == 0 or np.all(np.diff(np.r_[0, idx, n]) >= 8):
            return tuple(int(i) for i in idx)
    return ()


def _log_level(
    rng: np.random.Generator, n: int, truth: tuple[int, ...], sd: float, trend: float
) -> FloatArray:
    """Return a log-level path: shifts of 2-6 noise SDs at `truth` plus a linear `trend`."""
    path = np.linspace(0.0, trend, n)
    for i in truth:
        path[i:] += rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 6.0) * sd
    return path


def _spikes(rng: np.random.Generator, n: int, truth: tuple[int, ...]) -> FloatArray:
    """Return a mask of 0-2 outlier runs of 1-2 points, 5 apart and 3 away from true changes."""
    mask = np.zeros(n, dtype=bool)
    for _ in range(int(rng.integers(0, 3))):
        i = int(rng.integers(0, n - 1))
        far = all(abs(i - t) > 3 for t in truth) and not mask[max(i - 5, 0) : i + 6].any()
        if far:
            mask[i : i + int(rng.integers(1, 3))] = True
    return mask


def synthetic_series(rng: np.random.Generator, number: int) -> Series:
    """Return one random labelled daily series of a random metric kind."""
    n = int(rng.integers(30, 181))
    truth = _steps(rng, n)
    kind = ("rate", "latency", "cost", "count")[int(rng.integers(4))]
    seasonal = bool(rng.random() < 0.5)
    season = _weekly(rng, n, rng.uniform(0.05, 0.35)) if seasonal else np.ones(n)
    trend = rng.uniform(-0.4, 0.4) if rng.random() < 0.3 else 0.0
    spikes = _spikes(rng, n, truth)
    weights = None
    if kind == "rate":
        volume = math.exp(rng.uniform(math.log(30), math.log(20000)))
        reqs = np.maximum(rng.poisson(volume * _weekly(rng, n, 0.4)), 1)
        p0 = rng.uniform(0.01, 0.3)
        sd = math.sqrt((1 - p0) / (p0 * volume))  # relative SD of the rate on a typical day
        p = np.clip(p0 * np.exp(_log_level(rng, n, truth, sd, trend)) * season**0.5, 1e-4, 0.95)
        p = np.where(spikes, np.minimum(p * 4 + 0.05, 0.95), p)
        values = rng.binomial(reqs, p) / reqs
        weights = reqs.astype(np.float64)
    elif kind == "latency":
        sd = rng.uniform(0.03, 0.25)
        level = rng.uniform(200.0, 5000.0) * np.exp(_log_level(rng, n, truth, sd, trend)) * season
        values = level * np.exp(rng.normal(0.0, sd, n) + spikes * rng.uniform(1.0, 2.0))
    elif kind == "cost":
        shape = rng.uniform(20.0, 400.0)
        sd = 1.0 / math.sqrt(shape)
        level = rng.uniform(0.001, 0.05) * np.exp(_log_level(rng, n, truth, sd, trend)) * season
        values = level * rng.gamma(shape, 1.0 / shape, n) * np.where(spikes, 5.0, 1.0)
    else:
        lam = rng.uniform(50.0, 5000.0)
        sd = 1.0 / math.sqrt(lam)
        level = lam * np.exp(_log_level(rng, n, truth, sd, trend)) * season
        values = rng.poisson(level * np.where(spikes, 3.0, 1.0)).astype(np.float64)
    plain = not seasonal and trend == 0.0
    return Series(f"syn{number:03d}", kind, values, truth, weights, plain=plain)


# --- hand-made real-world-like shapes -----------------------------------------------------


def handmade(rng: np.random.Generator) -> list[Series]:
    """Return a few hand-made series shaped like incidents seen in production LLM systems."""
    day = np.arange(120)
    out: list[Series] = []
    # A deploy raises p95 latency for a week, then it is rolled back.
    lat = 900.0 * np.exp(rng.normal(0, 0.08, 120)) * np.where((day >= 50) & (day < 57), 1.5, 1)
    out.append(Series("deploy_rollback", "handmade", lat, (50, 57)))
    # Organic traffic growth with a weekly pattern: no change.
    cnt = rng.poisson(800 * (1 + day / 150) * _weekly(rng, 120, 0.3)).astype(np.float64)
    out.append(Series("traffic_growth", "handmade", cnt, ()))
    # A one-day outage spikes the error rate: not a change.
    reqs = rng.poisson(3000, 120)
    p = np.where(day == 70, 0.4, 0.02)
    out.append(Series("outage_day", "handmade", rng.binomial(reqs, p) / reqs, (), reqs * 1.0))
    # A low-volume segment whose tool error rate triples.
    reqs = np.maximum(rng.poisson(25, 120), 1)
    p = np.where(day >= 80, 0.15, 0.05)
    out.append(
        Series(
            "low_volume_tool_errors", "handmade", rng.binomial(reqs, p) / reqs, (80,), reqs * 1.0
        )
    )
    # Cheaper model routed in: cost per request drops 40% on top of a weekly pattern.
    cost = 0.02 * _weekly(rng, 120, 0.2) * np.where(day >= 60, 0.6, 1) * rng.gamma(100, 0.01, 120)
    out.append(Series("model_switch_cost", "handmade", cost, (60,)))
    # Retrieval score drifting like a random walk (index refresh noise): no labelled change.
    drift = np.cumsum(rng.normal(0, 0.004, 120))
    ar = np.zeros(120)
    e = rng.normal(0, 0.01, 120)
    for i in range(1, 120):
        ar[i] = 0.8 * ar[i - 1] + e[i]
    out.append(Series("retrieval_score_wander", "handmade", 0.7 + drift + ar, ()))
    # Hourly latency for 90 days with a daily cycle and a regression at hour 1500.
    hour = np.arange(2160)
    daily = 1 + 0.25 * np.sin(2 * np.pi * (hour % 24) / 24)
    lat = 1200 * daily * np.where(hour >= 1500, 1.15, 1) * np.exp(rng.normal(0, 0.1, 2160))
    out.append(Series("hourly_latency_regression", "handmade", lat, (1500,), None, 24))
    return out


# --- public real-world series -------------------------------------------------------------


def public_series() -> list[Series]:
    """Return public real-world series with published change points, from installed packages.

    Nothing is downloaded: each series ships inside a PyPI package (a dev dependency); one whose
    package is missing is left out with a note on stderr.

    * `nile`: annual flow of the Nile at Aswan, 1871-1970 (100 points), shipped as
      `statsmodels.datasets.nile`. The change point is the one of Cobb, G. W. (1978), "The
      problem of the Nile: conditional solution to a changepoint problem", *Biometrika* 65(2),
      243-251: the mean flow drops after 1898 (the Aswan dam was begun in 1898), so the new
      regime starts in 1899, index 28. Annual data: no seasonal period.
    """
    import sys

    out: list[Series] = []
    try:
        from statsmodels.datasets import nile
    except ImportError:
        print("statsmodels not installed: the Nile series is left out", file=sys.stderr)
    else:
        data = nile.load().data
        years = np.asarray(data["year"], dtype=np.int64)
        flow = np.asarray(data["volume"], dtype=np.float64)
        out.append(Series("nile (Cobb 1978)", "public", flow,
                          (int(np.flatnonzero(years == 1899)[0]),), None, 1))
    return out


# --- detectors ----------------------------------------------------------------------------


def _bic_penalty(x: FloatArray) -> float:
    """Return the BIC penalty `2 sigma^2 log n`, sigma = MAD of first differences / sqrt(2)."""
    d = np.diff(x)
    sigma = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0)
    return 2.0 * max(sigma, 1e-12) ** 2 * math.log(x.size)


def _ruptures(algo: type[rpt.Pelt] | type[rpt.Binseg]) -> Detector:
    """Return a detector running a ruptures search with the l2 cost and the BIC penalty."""

    def run(s: Series) -> list[int]:
        x = s.values.astype(np.float64)
        bkps = algo(model="l2", min_size=2, jump=1).fit(x).predict(pen=_bic_penalty(x))
        return [int(b) for b in bkps[:-1]]

    return run


DETECTORS: dict[str, Detector] = {
    "tracehouse (defaults)": lambda s: change_points(s.values),
    "tracehouse (period, weights)": lambda s: change_points(
        s.values, weights=s.weights, period=s.period
    ),
    "ruptures Pelt l2 BIC": _ruptures(rpt.Pelt),
    "ruptures Binseg l2 BIC": _ruptures(rpt.Binseg),
}


# --- scoring ------------------------------------------------------------------------------


def matches(found: list[int], truth: tuple[int, ...], margin: int) -> int:
    """Return the number of true changes matched one-to-one by a detection within `margin`."""
    used: set[int] = set()
    hit = 0
    for t in truth:
        close = [f for f in found if abs(f - t) <= margin and f not in used]
        if close:
            used.add(min(close, key=lambda f: abs(f - t)))
            hit += 1
    return hit


@dataclass
class Tally:
    """Running totals for one detector."""

    tp1: int = 0
    tp5: int = 0
    found: int = 0
    true: int = 0
    quiet: int = 0
    quiet_fired: int = 0
    seconds: float = 0.0
    series: int = 0

    def add(self, found: list[int], truth: tuple[int, ...], seconds: float) -> None:
        """Add one series' detections."""
        self.tp1 += matches(found, truth, 1)
        self.tp5 += matches(found, truth, 5)
        self.found += len(found)
        self.true += len(truth)
        self.quiet += not truth
        self.quiet_fired += (not truth) and bool(found)
        self.seconds += seconds
        self.series += 1

    def row(self) -> tuple[float, ...]:
        """Return precision, recall, F1 (margin 1), F1 (margin 5), false-alarm share, ms."""

        def f1(tp: int) -> float:
            p = tp / self.found if self.found else 1.0
            r = tp / self.true if self.true else 1.0
            return 2 * p * r / (p + r) if p + r else 0.0

        precision = self.tp1 / self.found if self.found else 1.0
        recall = self.tp1 / self.true if self.true else 1.0
        alarms = self.quiet_fired / self.quiet if self.quiet else 0.0
        ms = 1000 * self.seconds / max(self.series, 1)
        return precision, recall, f1(self.tp1), f1(self.tp5), alarms, ms


def run(series: list[Series]) -> dict[str, Tally]:
    """Return each detector's tally over `series`."""
    tallies = {name: Tally() for name in DETECTORS}
    for s in series:
        for name, det in DETECTORS.items():
            start = time.perf_counter()
            found = det(s)
            tallies[name].add(found, s.truth, time.perf_counter() - start)
    return tallies


def table(title: str, tallies: dict[str, Tally]) -> str:
    """Return a fixed-width table of the tallies."""
    head = f"{'detector':<30} {'prec':>6} {'recall':>6} {'F1@1':>6} {'F1@5':>6} {'FA':>6} {'ms':>7}"
    lines = [title, head, "-" * len(head)]
    for name, tally in tallies.items():
        p, r, f1, f5, fa, ms = tally.row()
        lines.append(f"{name:<30} {p:6.3f} {r:6.3f} {f1:6.3f} {f5:6.3f} {fa:6.3f} {ms:7.2f}")
    return "\n".join(lines)


def corpus(seed: int, count: int) -> Iterator[Series]:
    """Yield `count` synthetic series and then the hand-made ones, all from `seed`."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        yield synthetic_series(rng, i)
    yield from handmade(rng)


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark tables; `argv` as on the command line (None: sys.argv)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=400, help="number of synthetic series")
    parser.add_argument("--seed", type=int, default=20260101, help="seed of the generator")
    args = parser.parse_args(argv)
    series = list(corpus(args.seed, args.series))
    synthetic_part = [s for s in series if s.kind != "handmade"]
    print(table(f"All synthetic series (n={len(synthetic_part)})", run(synthetic_part)))
    plain = [s for s in synthetic_part if s.plain]
    print()
    print(table(f"Synthetic series without seasonality or trend (n={len(plain)})", run(plain)))
    for kind in ("rate", "latency", "cost", "count"):
        subset = [s for s in synthetic_part if s.kind == kind]
        print()
        print(table(f"{kind} series (n={len(subset)})", run(subset)))
    print()
    handmade_part = [s for s in series if s.kind == "handmade"]
    print(table(f"Hand-made real-world-like series (n={len(handmade_part)})", run(handmade_part)))
    print()
    public = public_series()
    if public:
        print(table(f"Public real-world series, published change points (n={len(public)})",
                    run(public)))
        print()
    for s in [*handmade_part, *public]:
        found = {name: det(s) for name, det in DETECTORS.items()}
        print(f"{s.name:<26} truth={list(s.truth)}")
        for name, f in found.items():
            print(f"    {name:<30} {f[:12]}{' ...' if len(f) > 12 else ''}")
    print()
    print("F1@k: a detection within k points of a true change; FA: share of change-free series")
    print("with any detection; ms: mean runtime per series.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
