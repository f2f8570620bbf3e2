"""The Spark row of the bench: one lake built by DuckDB and by local Spark, time and peak memory.

Run: ``python -m tracehouse.bench.spark_bench --spans 10000000`` (needs ``pip install -e
'.[spark]'`` and Java 17; default 1,000,000 spans over 30 days). For the scaling shape of the
scale-out path, not for speed: local Spark (``local[2]``) runs the same dbt models as a cluster
would, on this machine's cores.

For each engine (``--engines duckdb,spark``) a **full build** (models and seeds, as
``tracehouse run --engine`` builds them; data tests are timed by ``--with-tests``) runs in a child
process whose resident memory, with its children (Spark's JVM is one), is sampled every 100 ms.
With ``--incremental`` a day is then appended to the lake and each engine builds again. Prints a
table and writes JSON (``--json``). Figures depend on the machine and its load: the JSON records
the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

DAYS = 30
SEED = 11
SPANS_PER_TRACE = 13.1  # measured on generated lakes (as run_bench)
START = date(2026, 1, 1)
BUILD_ONLY = ["--resource-type", "model", "--resource-type", "seed"]


def make_lake(lake: Path, spans: int, days: int) -> int:
    """Generate a lake of about ``spans`` spans over ``days`` days (kept if already there)."""
    from tracehouse.generator import generate

    traces_per_day = max(100, round(spans / (days * SPANS_PER_TRACE)))
    if not (lake / "_generator.json").exists():
        generate(lake, start=START, days=days, traces_per_day=traces_per_day, seed=SEED,
                 progress=False)
    return traces_per_day


def lake_spans(lake: Path) -> int:
    """Rows in the lake's spans dataset."""
    import duckdb

    con = duckdb.connect()
    try:
        row = con.execute(
            f"SELECT count(*) FROM read_parquet('{lake}/spans/dt=*/*.parquet')"
        ).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def run_child(engine: str, lake: Path, warehouse: Path, with_tests: bool) -> dict[str, Any]:
    """One build in a child process; wall seconds, peak RSS of the process tree, dbt's node time."""
    import psutil

    cmd = [sys.executable, "-m", "tracehouse.bench.spark_bench", "--child", engine,
           str(lake), str(warehouse)] + (["--with-tests"] if with_tests else [])
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        try:
            parent = psutil.Process(proc.pid)
            while not done.is_set():
                try:
                    rss = parent.memory_info().rss + sum(
                        c.memory_info().rss for c in parent.children(recursive=True))
                except psutil.Error:
                    break
                peak[0] = max(peak[0], rss)
                time.sleep(0.1)
        except psutil.Error:
            return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None
    result: dict[str, Any] = {}
    for line in proc.stdout:
        if line.startswith("BENCH-RESULT "):
            result = json.loads(line[len("BENCH-RESULT "):])
    proc.wait()
    done.set()
    sampler.join()
    if proc.returncode != 0 or not result.get("success"):
        raise RuntimeError(f"{engine} build failed (exit {proc.returncode}): "
                           f"{result.get('failures', [])[:3]}")
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_mb": round(peak[0] / 2**20),
        **{k: v for k, v in result.items() if k not in ("success", "failures")},
    }


def child(engine: str, lake: str, warehouse: str, with_tests: bool) -> int:
    """The child side of :func:`run_child`: build, load a Spark build's marts, print a JSON line."""
    from tracehouse import engines
    from tracehouse.warehouse import dbt_invoke

    engines.prepare(engine, warehouse)
    args = ["build"] if with_tests else ["build", *BUILD_ONLY]
    started = time.perf_counter()
    res = dbt_invoke(args, lake=lake, warehouse=warehouse, engine=engine)
    build_s = time.perf_counter() - started
    out: dict[str, Any] = {"success": res.success, "failures": res.failures[:3],
                           "build_seconds": round(build_s, 1)}
    run_results = Path(warehouse) / "_dbt" / "target" / "run_results.json"
    if run_results.exists():
        nodes = json.loads(run_results.read_text())["results"]
        out["nodes"] = len(nodes)
        slow = sorted(nodes, key=lambda n: n["execution_time"], reverse=True)[:5]
        out["slowest"] = {n["unique_id"].split(".")[-1]: round(n["execution_time"], 1)
                          for n in slow}
    if res.success and engine != "duckdb":
        started = time.perf_counter()
        out["marts_rows"] = sum(engines.import_marts(warehouse).values())
        out["import_seconds"] = round(time.perf_counter() - started, 1)
    print("BENCH-RESULT " + json.dumps(out), flush=True)
    return 0


def table(results: dict[str, Any]) -> str:
    """A markdown table of the measured builds."""
    lines = ["| engine | build | seconds | peak MB | slowest nodes (s) |", "|---|---|---|---|---|"]
    for row in results["builds"]:
        slow = ", ".join(f"{k} {v}" for k, v in list(row.get("slowest", {}).items())[:3])
        lines.append(f"| {row['engine']} | {row['kind']} | {row['seconds']:,.1f} | "
                     f"{row['peak_mb']:,} | {slow} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Generate a lake, build it on each engine (full, optionally +1 day); print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=1_000_000, help="approximate lake spans")
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--incremental", action="store_true", help="append a day, build again")
    parser.add_argument("--with-tests", action="store_true", help="also run the data tests")
    parser.add_argument("--keep", type=Path, default=None, help="keep lake and warehouses here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "LAKE", "WAREHOUSE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        engine, child_lake, child_warehouse = args.child
        return child(engine, child_lake, child_warehouse, with_tests=args.with_tests)

    engine_names = [e.strip() for e in args.engines.split(",") if e.strip()]
    root = args.keep or Path(tempfile.mkdtemp(prefix="tracehouse-spark-bench-"))
    lake = root / "lake"
    # Local Spark at this size needs more than the profile's default 2g driver.
    os.environ.setdefault("TRACEHOUSE_SPARK_DRIVER_MEMORY", "6g")
    try:
        started = time.perf_counter()
        traces_per_day = make_lake(lake, args.spans, args.days)
        spans = lake_spans(lake)
        print(f"lake: {spans:,} spans ({args.days} days x {traces_per_day:,} traces/day), "
              f"ready in {time.perf_counter() - started:.1f}s", flush=True)
        results: dict[str, Any] = {
            "spans": spans, "days": args.days, "traces_per_day": traces_per_day,
            "cpus": os.cpu_count(), "load_before": os.getloadavg(), "builds": [],
            "spark_driver_memory": os.environ["TRACEHOUSE_SPARK_DRIVER_MEMORY"],
        }
        kinds = ["full", "+1 day"] if args.incremental else ["full"]
        for kind in kinds:
            if kind == "+1 day":
                from tracehouse.generator import generate

                generate(lake, start=START + timedelta(days=args.days), days=1,
                         traces_per_day=traces_per_day, seed=SEED, progress=False)
            for engine in engine_names:
                warehouse = root / f"warehouse-{engine}"
                if kind == "full":
                    shutil.rmtree(warehouse, ignore_errors=True)
                row = {"engine": engine, "kind": kind,
                       **run_child(engine, lake, warehouse, args.with_tests)}
                results["builds"].append(row)
                print(f"{engine} {kind}: {row['seconds']:.1f}s, peak {row['peak_mb']:,} MB, "
                      f"slowest {row.get('slowest')}", flush=True)
        results["load_after"] = os.getloadavg()
        print(table(results))
        print(f"load average before {results['load_before']}, after {results['load_after']}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
