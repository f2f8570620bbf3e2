"""Benchmark of the detection job: runtime over all series of a 90-day lake, and its scores.

Run: `python -m tracehouse.bench.detect_bench [--days 90] [--traces-per-day 1000]
[--seeds 3 5] [--eval-days 42] [--workdir DIR]`.

1. Generates a `--days` lake (seed of the first `--seeds`), builds it, and times the job
   (`run_detection`: read series, detect on every series, dedup, attribute, alert, write) three
   times without its caches (every run as cold as the first); prints the series count and the
   best and median times.
2. For each seed, and for a `--no-incidents` control lake, generates an `--eval-days` lake,
   builds, detects, publishes and prints recall, precision, attribution, median delay and
   false change points per series per month (`tracehouse.detect.evaluate`).

The comparison of the detector with ruptures' PELT and binary segmentation on labelled series
is `tracehouse.bench.changepoint_bench` (run by `make bench` too).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path


def time_job(days: int, traces_per_day: int, seed: int, workdir: Path, repeat: int = 3) -> str:
    """Return a line: the job's runtime over every series of a generated `days`-day lake."""
    from tracehouse.detect.job import run_detection
    from tracehouse.generator import generate
    from tracehouse.warehouse import build

    lake, warehouse = workdir / f"lake-{days}d", workdir / f"warehouse-{days}d"
    t = time.perf_counter()
    generate(lake, start=date(2026, 1, 1), days=days, traces_per_day=traces_per_day, seed=seed,
             progress=False)
    gen = time.perf_counter() - t
    t = time.perf_counter()
    res = build(lake, warehouse)
    if not res.success:
        raise RuntimeError(f"dbt build failed: {res.failures[:3]}")
    built = time.perf_counter() - t
    times, result = [], None
    for i in range(repeat):
        result = run_detection(warehouse, f"bench-{i}", cached=False)
        times.append(result.seconds)
    assert result is not None
    return (
        f"{days}-day lake x {traces_per_day}/day (generate {gen:.0f}s, build {built:.0f}s): "
        f"{result.series_checked}/{result.series_total} series judged, "
        f"{result.change_points.num_rows} change points; job best {min(times):.2f}s, "
        f"median {statistics.median(times):.2f}s"
    )


def main(argv: list[str] | None = None) -> int:
    """Print the job's runtime and its evaluation figures; `argv` as on the command line."""
    from tracehouse.detect.evalrun import generated_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90, help="days of the timing lake")
    parser.add_argument("--traces-per-day", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--eval-days", type=int, default=42, help="days of each eval lake")
    parser.add_argument("--eval-traces-per-day", type=int, default=1500)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the lakes and warehouses here (default: a temp folder)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tracehouse-detect-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(time_job(args.days, args.traces_per_day, args.seeds[0], workdir), flush=True)
        runs = [(seed, True) for seed in args.seeds] + [(args.seeds[0], False)]
        for seed, incidents in runs:
            run = generated_run(
                workdir / f"eval-{seed}-{'incidents' if incidents else 'control'}",
                seed=seed, days=args.eval_days, traces_per_day=args.eval_traces_per_day,
                start=date(2026, 2, 2), incidents=incidents,
            )
            print(run.line(), flush=True)
            for inc in run.score.incidents:
                state = ("found" if inc.found else "MISSED") if inc.judged else inc.unjudged
                attributed = {None: "no cause", True: "cause named", False: "cause NOT named"}
                print(f"    {inc.name:<26} {inc.segment:<44} {state:<10} "
                      f"{attributed[inc.attributed]}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
