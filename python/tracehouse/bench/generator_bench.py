"""Benchmark the generator end to end (simulation, validation, Parquet writing).

    python -m tracehouse.bench.generator_bench [--days 7] [--traces-per-day 20000] [--seed 1]
        [--workers N]

Generates into a temporary lake (deleted afterwards unless ``--keep``) and prints spans/s, the
CPU seconds spent (this process and its workers) and the load average while it ran: on a shared
machine, spans per CPU second are the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
from datetime import date
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the throughput."""
    from tracehouse.generator import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--traces-per-day", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: one per core, fewer for a small job)")
    parser.add_argument("--keep", action="store_true", help="keep the lake and print its path")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="tracehouse-bench-"))
    try:
        cpu0 = _cpu_s()
        report = generate(root / "lake", start=date(2026, 1, 1), days=args.days,
                          traces_per_day=args.traces_per_day, seed=args.seed, progress=False,
                          workers=args.workers)
        cpu = _cpu_s() - cpu0
        load = os.getloadavg()[0]
        rows = sum(report.received.values())
        print(f"generator: {args.days} days x {args.traces_per_day:,} traces/day, seed {args.seed}")
        print(f"  spans {report.received['spans']:,}  feedback {report.received['feedback']:,}  "
              f"annotations {report.received['annotations']:,}  ({rows:,} rows, "
              f"{report.batches} batches)")
        print(f"  {report.elapsed_s:.2f} s  ->  {report.spans_per_s:,.0f} spans/s end to end")
        print(f"  {cpu:.2f} CPU s  ->  {report.received['spans'] / cpu:,.0f} spans per CPU s; "
              f"load average (1 min) at the end {load:.2f} on {os.cpu_count()} cores")
        if args.keep:
            print(f"  lake kept at {root / 'lake'}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def _cpu_s() -> float:
    """User + system CPU seconds of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
