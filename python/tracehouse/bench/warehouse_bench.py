"""Warehouse build benchmark: generate a lake of about N spans, time full and incremental builds.

Run: ``python -m tracehouse.bench.warehouse_bench --spans 10000000`` (default 2,000,000).
Prints figures; asserts nothing. The target: 10M spans build on 2 cores in well under a minute.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

SPANS_PER_TRACE_ESTIMATE = 15


def main(argv: list[str] | None = None) -> int:
    """Generate, build full, append a day, build incrementally; print spans and seconds."""
    from tracehouse.generator import generate
    from tracehouse.warehouse import build, warehouse_db

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=2_000_000,
                        help="approximate spans in the lake")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None, help="keep lake and warehouse here")
    args = parser.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="tracehouse-bench-"))
    lake, warehouse = root / "lake", root / "warehouse"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.rmtree(warehouse, ignore_errors=True)
    traces_per_day = max(100, args.spans // (args.days * SPANS_PER_TRACE_ESTIMATE))
    start = date(2026, 1, 1)
    try:
        t0 = time.perf_counter()
        generate(lake, start=start, days=args.days, traces_per_day=traces_per_day, seed=11,
                 progress=True)
        gen_s = time.perf_counter() - t0
        con = duckdb.connect()
        spans = con.execute(
            f"SELECT count(*) FROM read_parquet('{lake}/spans/dt=*/*.parquet')"
        ).fetchone()[0]  # type: ignore[index]
        con.close()
        print(f"lake: {spans:,} spans ({args.days} days x {traces_per_day:,} traces/day), "
              f"generated in {gen_s:.1f}s ({spans / gen_s:,.0f} spans/s)")

        full = build(lake, warehouse, full_refresh=True, progress=True)
        print(f"full build:        {full.elapsed_s:6.1f}s  ok={full.success} "
              f"({spans / full.elapsed_s:,.0f} spans/s)")
        noop = build(lake, warehouse, progress=True)
        print(f"incremental, no new data: {noop.elapsed_s:6.1f}s  ok={noop.success}")
        generate(lake, start=start + timedelta(days=args.days), days=1,
                 traces_per_day=traces_per_day, seed=11, progress=False)
        inc = build(lake, warehouse, progress=True)
        print(f"incremental, +1 day + late rows: {inc.elapsed_s:6.1f}s  ok={inc.success}")
        size = warehouse_db(warehouse).stat().st_size / 1e6
        print(f"warehouse file: {size:,.0f} MB")
        for r in (full, noop, inc):
            for failure in r.failures[:3]:
                print(f"  failure: {failure}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
