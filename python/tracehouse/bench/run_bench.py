"""`make bench`: what each `tracehouse run` costs as the lake grows, against a single-scan floor.

For each lake size (``--sizes 1M,10M``; 30M opt-in; default ``1M``), on a generated lake of
30 days:

1. ``tracehouse run`` four times, each in a child process whose resident memory (with its
   children) is sampled every 50 ms: a **full** build, **+1 hour** of new data, **+1 day**, and
   **nothing new**. Per run: seconds of each step (land, batches, build, detect, marts, publish)
   and the peak memory while the step ran.
2. The **reference**: one hand-written DuckDB query that scans the raw spans once and computes the
   core per-trace rollup into a table (the practical floor of a full build). Every figure gets
   its ratio to it.
3. Three **dashboard questions** (p95 latency by stage and day for one route; cost per successful
   task by model and week; retrieval hit rate by retriever version), answered from the published
   marts (DuckDB over the Parquet files) and from the raw lake by DuckDB, polars and chDB (if the
   ``bench`` extra is installed). The raw-lake versions are simplified answers (no dedup, the
   first llm span's model, the latest price per model, no annotation correctness): a floor for
   a peer, not the warehouse's exact definitions.

Medians of ``--repeats`` runs for the reference and the questions (the pipeline runs once per
kind: each changes the lake). Prints a table and writes JSON (``--json``). Timings depend on the
machine and its load: the JSON records both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

DAYS = 30
SEED = 11
SPANS_PER_TRACE = 13.1  # measured on generated lakes
SIZES = {"100K": 100_000, "1M": 1_000_000, "3M": 3_000_000, "10M": 10_000_000, "30M": 30_000_000}
ROUTE = "standard"
STEPS = ("land", "batches", "build", "freshness", "detect", "marts", "publish", "notify")


# ---------------------------------------------------------------- lakes


def make_lakes(root: Path, spans: int) -> tuple[Path, Path, date]:
    """The bench lake (30 days) and, aside, the next two days' batches to land from."""
    from tracehouse.generator import generate

    lake, more = root / "lake", root / "more"
    traces_per_day = max(100, round(spans / (DAYS * SPANS_PER_TRACE)))
    start = date(2026, 1, 1)
    if not (lake / "_generator.json").exists():
        generate(lake, start=start, days=DAYS, traces_per_day=traces_per_day, seed=SEED,
                 progress=False)
    if not more.exists():
        more.mkdir(parents=True)
        shutil.copy(lake / "_generator.json", more / "_generator.json")
        generate(more, start=start + timedelta(days=DAYS), days=2,
                 traces_per_day=traces_per_day, seed=SEED, progress=False)
    return lake, more, start + timedelta(days=DAYS)


def land_window(more: Path, lake: Path, lo: datetime, hi: datetime, name: str) -> int:
    """Land the rows of ``more`` whose ingest_time is in [lo, hi) into ``lake``, one batch per
    dataset (as a producer landing that window would). Returns rows landed."""
    import duckdb

    from tracehouse.lake import write_batch

    landed = 0
    con = duckdb.connect()
    for dataset in ("spans", "feedback", "annotations"):
        glob = str(more / dataset / "dt=*" / "*.parquet")
        table = con.sql(
            f"select * exclude (dt) from read_parquet('{glob}', hive_partitioning = true) "
            f"where ingest_time >= '{lo.isoformat()}' and ingest_time < '{hi.isoformat()}'"
        ).to_arrow_table()
        report = write_batch(lake, dataset, table, source="bench", batch_id=f"{name}-{dataset}",
                             ingest_time=hi)
        landed += report.accepted
    con.close()
    return landed


# ---------------------------------------------------------------- runs with memory sampling


def run_child(lake: Path, warehouse: Path, full_refresh: bool) -> dict[str, Any]:
    """One `tracehouse run` in a child process: seconds and peak RSS per step, total."""
    import psutil

    cmd = [sys.executable, "-m", "tracehouse.bench.run_bench", "--child", str(lake),
           str(warehouse)] + (["--full-refresh"] if full_refresh else [])
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    samples: list[tuple[float, int]] = []
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
                samples.append((time.perf_counter(), rss))
                time.sleep(0.05)
        except psutil.Error:
            return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ends: list[tuple[str, float]] = []
    result: dict[str, Any] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("BENCH-RESULT "):
            result = json.loads(line[len("BENCH-RESULT "):])
            continue
        name = line.split(" ", 1)[0].strip()
        if name in STEPS:
            ends.append((name, time.perf_counter()))
    proc.wait()
    done.set()
    sampler.join()
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"tracehouse run failed (exit {proc.returncode})")
    steps: dict[str, dict[str, float]] = {}
    previous = started
    for name, end in ends:
        peak = max((rss for t, rss in samples if previous <= t <= end), default=0)
        seconds = next((s["seconds"] for s in result.get("steps", []) if s["name"] == name),
                       end - previous)
        steps[name] = {"seconds": round(seconds, 3), "peak_mb": round(peak / 2**20)}
        previous = end
    return {
        "seconds": round(total, 2),
        "steps_seconds": round(sum(s["seconds"] for s in steps.values()), 2),
        "peak_mb": round(max((r for _, r in samples), default=0) / 2**20),
        "steps": steps,
        "summaries": {s["name"]: s["summary"] for s in result.get("steps", [])},
    }


def child(lake: str, warehouse: str, full_refresh: bool) -> int:
    """The child side of :func:`run_child`: run the pipeline, print step lines and a JSON."""
    from tracehouse.pipeline import run

    result = run(lake, warehouse, full_refresh=full_refresh, progress=False,
                 echo=lambda line: print(line, flush=True))
    steps = [{"name": s.name, "seconds": s.seconds, "summary": s.summary} for s in result.steps]
    print("BENCH-RESULT " + json.dumps({"steps": steps}), flush=True)
    return 0


# ---------------------------------------------------------------- reference and questions


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reference_sql(lake: Path) -> str:
    """The single-scan floor: every span once, rolled up per trace into a table."""
    glob = lake / "spans" / "dt=*" / "*.parquet"
    return f"""
        create or replace table trace_rollup as
        select
            trace_id,
            min(event_time) as first_span_at,
            max(end_time) as last_span_end_at,
            count(*) as span_count,
            arg_min(route_name, parent_span_id is not null) as route_name,
            arg_min(task_type, parent_span_id is not null) as task_type,
            arg_min(status, parent_span_id is not null) as root_status,
            max(duration_ms) filter (where parent_span_id is null) as duration_ms,
            sum(coalesce(cost_usd_estimate, 0)) as cost_usd_estimate,
            sum(input_tokens) as input_tokens,
            sum(output_tokens) as output_tokens,
            count(*) filter (where status = 'error') as error_span_count,
            count(*) filter (where span_type = 'tool_call') as tool_call_count,
            max(ingest_time) as last_span_ingest_at
        from read_parquet('{glob}')
        group by trace_id
    """


def _duckdb(threads_memory: dict[str, str]) -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"set memory_limit = '{threads_memory['TRACEHOUSE_DUCKDB_MEMORY_LIMIT']}'")
    con.execute(f"set threads = {threads_memory['TRACEHOUSE_DUCKDB_THREADS']}")
    return con


def mart_questions(marts: Path) -> dict[str, str]:
    """The three questions over the published marts (DuckDB SQL), as a dashboard asks them: from
    the question's aggregate mart (day grain, additive counts), not from the request fact.
    `tests/test_pipeline.py` checks the answers equal the ones computed from fct_requests."""
    latency = marts / "agg_route_stage_latency.parquet"
    cost = marts / "agg_cost_per_successful_task.parquet"
    retrieval = marts / "agg_retrieval_quality.parquet"
    return {
        "p95_latency_by_stage_day": f"""
            select trace_date, span_type, duration_ms_p95 as p95_ms
            from read_parquet('{latency}') where route_name = '{ROUTE}'""",
        "cost_per_successful_task_by_model_week": f"""
            select model_name, date_trunc('week', trace_date) as week,
                   sum(cost_usd) / nullif(sum(successful_task_count), 0) as usd
            from read_parquet('{cost}') group by all""",
        "retrieval_hit_rate_by_retriever_version": f"""
            select retriever_version,
                   sum(hit_included_count) / sum(judged_trace_count) as hit_rate,
                   sum(judged_trace_count) as judged
            from read_parquet('{retrieval}') group by all having sum(judged_trace_count) > 0""",
    }


def raw_duckdb_questions(lake: Path, prices: Path) -> dict[str, str]:
    """The three questions straight from the raw lake (DuckDB SQL; simplified, see module)."""
    spans = lake / "spans" / "dt=*" / "*.parquet"
    feedback = lake / "feedback" / "dt=*" / "*.parquet"
    annotations = lake / "annotations" / "dt=*" / "*.parquet"
    roots = f"""(select trace_id, route_name, model_name, status, event_time,
                   json_extract_string(attributes, '$.final_status') as final_status
                 from read_parquet('{spans}') where parent_span_id is null)"""
    return {
        "p95_latency_by_stage_day": f"""
            select cast(r.event_time as date) as trace_date, s.span_type,
                   quantile_cont(s.duration_ms, 0.95) as p95_ms
            from read_parquet('{spans}') s join {roots} r using (trace_id)
            where r.route_name = '{ROUTE}' group by all""",
        "cost_per_successful_task_by_model_week": f"""
            with prices as (
                select * from read_csv('{prices}', header = true)
                qualify row_number() over (partition by model_name
                                           order by effective_from desc) = 1),
            cost as (
                select s.trace_id, sum(coalesce(s.cost_usd_estimate,
                    (coalesce(s.input_tokens, 0) * p.input_usd_per_1m
                     + coalesce(s.output_tokens, 0) * p.output_usd_per_1m) / 1e6, 0)) as usd,
                    any_value(s.model_name) filter (where s.span_type = 'llm') as llm_model
                from read_parquet('{spans}') s left join prices p using (model_name)
                group by 1),
            negative as (
                select distinct trace_id from read_parquet('{feedback}')
                where feedback_type in ('thumbs_down', 'escalation', 'task_abandoned'))
            select c.llm_model as model_name, date_trunc('week', r.event_time) as week,
                   sum(c.usd) / nullif(count(*) filter (where r.status = 'ok'
                       and coalesce(r.final_status, 'success') = 'success'
                       and n.trace_id is null), 0) as usd
            from {roots} r join cost c using (trace_id)
            left join negative n using (trace_id) group by all""",
        "retrieval_hit_rate_by_retriever_version": f"""
            with judged as (
                select trace_id, any_value(relevant_chunk_ids) as relevant
                from read_parquet('{annotations}') where len(relevant_chunk_ids) > 0
                group by 1),
            per_trace as (
                select trace_id,
                    any_value(retriever_version) filter (where span_type = 'retrieval') as rv,
                    flatten(list(cast(json_extract(attributes, '$.included_chunk_ids')
                        as varchar[])) filter (where span_type = 'context_assembly')) as included
                from read_parquet('{spans}')
                where span_type in ('retrieval', 'context_assembly')
                    and trace_id in (select trace_id from judged)
                group by 1)
            select rv as retriever_version,
                   avg(list_has_any(included, relevant)::int) as hit_rate, count(*) as judged
            from per_trace join judged using (trace_id) group by all""",
    }


def raw_polars_questions(lake: Path, prices: Path) -> dict[str, Callable[[], object]]:
    """The same three questions with polars (lazy scans of the raw lake)."""
    import polars as pl

    spans = pl.scan_parquet(str(lake / "spans" / "dt=*" / "*.parquet"), hive_partitioning=False)
    feedback = pl.scan_parquet(str(lake / "feedback" / "dt=*" / "*.parquet"),
                               hive_partitioning=False)
    annotations = pl.scan_parquet(str(lake / "annotations" / "dt=*" / "*.parquet"),
                                  hive_partitioning=False)
    roots = spans.filter(pl.col("parent_span_id").is_null()).select(
        "trace_id", "route_name", "model_name", "status", "event_time",
        pl.col("attributes").str.json_path_match("$.final_status").alias("final_status"))

    def q1() -> object:
        r = roots.filter(pl.col("route_name") == ROUTE).select(
            "trace_id", pl.col("event_time").dt.date().alias("trace_date"))
        return (spans.select("trace_id", "span_type", "duration_ms").join(r, on="trace_id")
                .group_by("trace_date", "span_type")
                .agg(pl.col("duration_ms").quantile(0.95, "linear").alias("p95_ms"))
                .collect())

    def q2() -> object:
        price = (pl.scan_csv(str(prices)).sort("effective_from")
                 .group_by("model_name").last()
                 .select("model_name", "input_usd_per_1m", "output_usd_per_1m"))
        cost = (spans.select("trace_id", "span_type", "model_name", "input_tokens",
                             "output_tokens", "cost_usd_estimate")
                .join(price, on="model_name", how="left")
                .with_columns(pl.coalesce(
                    "cost_usd_estimate",
                    (pl.col("input_tokens").fill_null(0) * pl.col("input_usd_per_1m")
                     + pl.col("output_tokens").fill_null(0) * pl.col("output_usd_per_1m")) / 1e6,
                    pl.lit(0.0)).alias("usd"))
                .group_by("trace_id").agg(pl.col("usd").sum(), pl.col("model_name").filter(
                    pl.col("span_type") == "llm").first().alias("llm_model")))
        negative = (feedback.filter(pl.col("feedback_type").is_in(
            ["thumbs_down", "escalation", "task_abandoned"])).select("trace_id").unique()
            .with_columns(pl.lit(True).alias("negative")))
        return (roots.join(cost, on="trace_id").join(negative, on="trace_id", how="left")
                .with_columns(((pl.col("status") == "ok")
                               & (pl.col("final_status").fill_null("success") == "success")
                               & pl.col("negative").is_null()).alias("ok"),
                              pl.col("event_time").dt.truncate("1w").alias("week"))
                .group_by("llm_model", "week")
                .agg((pl.col("usd").sum() / pl.col("ok").sum()).alias("usd"))
                .collect())

    def q3() -> object:
        judged = (annotations.filter(pl.col("relevant_chunk_ids").list.len() > 0)
                  .group_by("trace_id").agg(pl.col("relevant_chunk_ids").first()))
        relevant = (judged.explode("relevant_chunk_ids")
                    .rename({"relevant_chunk_ids": "chunk_id"}))
        included = (spans.filter(pl.col("span_type") == "context_assembly")
                    .join(judged.select("trace_id"), on="trace_id", how="semi")
                    .select("trace_id", pl.col("attributes").str.json_path_match(
                        "$.included_chunk_ids").str.json_decode(pl.List(pl.String))
                        .alias("chunk_id"))
                    .explode("chunk_id"))
        hits = included.join(relevant, on=["trace_id", "chunk_id"]).select("trace_id").unique()
        versions = (spans.filter(pl.col("span_type") == "retrieval")
                    .join(judged.select("trace_id"), on="trace_id", how="semi")
                    .group_by("trace_id").agg(pl.col("retriever_version").first().alias("rv")))
        return (judged.select("trace_id").join(versions, on="trace_id", how="left")
                .join(hits.with_columns(pl.lit(True).alias("hit")), on="trace_id", how="left")
                .group_by("rv").agg(pl.col("hit").fill_null(False).mean().alias("hit_rate"),
                                    pl.len())
                .collect())

    return {"p95_latency_by_stage_day": q1, "cost_per_successful_task_by_model_week": q2,
            "retrieval_hit_rate_by_retriever_version": q3}


def raw_chdb_questions(lake: Path, prices: Path) -> dict[str, str]:
    """The same three questions in ClickHouse SQL for chDB (the engine under Langfuse)."""
    spans = f"file('{lake}/spans/dt=*/*.parquet', Parquet)"
    feedback = f"file('{lake}/feedback/dt=*/*.parquet', Parquet)"
    annotations = f"file('{lake}/annotations/dt=*/*.parquet', Parquet)"
    roots = f"""(select trace_id, route_name, model_name, status, event_time,
                   JSONExtractString(attributes, 'final_status') as final_status
                 from {spans} where parent_span_id is null)"""
    return {
        "p95_latency_by_stage_day": f"""
            select toDate(r.event_time) as trace_date, s.span_type,
                   quantileExactInclusive(0.95)(s.duration_ms) as p95_ms
            from {spans} as s inner join {roots} as r on s.trace_id = r.trace_id
            where r.route_name = '{ROUTE}' group by trace_date, s.span_type""",
        "cost_per_successful_task_by_model_week": f"""
            with prices as (
                select model_name, argMax(input_usd_per_1m, effective_from) as pin,
                       argMax(output_usd_per_1m, effective_from) as pout
                from file('{prices}', CSVWithNames) group by model_name),
            cost as (
                select s.trace_id as trace_id, sum(coalesce(s.cost_usd_estimate,
                    (coalesce(s.input_tokens, 0) * p.pin + coalesce(s.output_tokens, 0) * p.pout)
                    / 1e6, 0)) as usd, anyIf(s.model_name, s.span_type = 'llm') as llm_model
                from {spans} as s left join prices as p on s.model_name = p.model_name
                group by s.trace_id),
            negative as (
                select distinct trace_id from {feedback}
                where feedback_type in ('thumbs_down', 'escalation', 'task_abandoned'))
            select c.llm_model as model_name, toStartOfWeek(r.event_time) as week,
                   sum(c.usd) / nullIf(countIf(r.status = 'ok'
                       and coalesce(nullIf(r.final_status, ''), 'success') = 'success'
                       and n.trace_id = ''), 0) as usd
            from {roots} as r inner join cost as c on r.trace_id = c.trace_id
            left join negative as n on r.trace_id = n.trace_id
            group by model_name, week""",
        "retrieval_hit_rate_by_retriever_version": f"""
            with judged as (
                select trace_id, any(relevant_chunk_ids) as relevant
                from {annotations} where length(relevant_chunk_ids) > 0 group by trace_id),
            per_trace as (
                select trace_id,
                    anyIf(retriever_version, span_type = 'retrieval') as rv,
                    arrayFlatten(groupArrayIf(JSONExtract(attributes, 'included_chunk_ids',
                        'Array(String)'), span_type = 'context_assembly')) as included
                from {spans}
                where span_type in ('retrieval', 'context_assembly')
                    and trace_id in (select trace_id from judged)
                group by trace_id)
            select rv as retriever_version, avg(hasAny(included, relevant)) as hit_rate,
                   count() as judged
            from per_trace as p inner join judged as j on p.trace_id = j.trace_id
            group by rv
            settings schema_inference_make_columns_nullable = 0""",
    }


def time_questions(lake: Path, warehouse: Path, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds per question and engine (marts via DuckDB; raw via DuckDB/polars/chDB)."""
    from tracehouse.resources import duckdb_env
    from tracehouse.warehouse import project_dir

    prices = project_dir() / "seeds" / "model_prices.csv"
    settings = duckdb_env()
    out: dict[str, dict[str, float]] = {}
    con = _duckdb(settings)
    marts = warehouse / "marts"
    def run_duckdb(sql: str) -> Callable[[], object]:
        return lambda: con.execute(sql).fetchall()

    for name, sql in mart_questions(marts).items():
        out.setdefault(name, {})["marts (duckdb)"] = _median(run_duckdb(sql), repeats)
    for name, sql in raw_duckdb_questions(lake, prices).items():
        out[name]["raw duckdb"] = _median(run_duckdb(sql), repeats)
    con.close()
    for name, fn in raw_polars_questions(lake, prices).items():
        out[name]["raw polars"] = _median(fn, repeats)
    try:
        import chdb
    except ImportError:
        print("chdb not installed (pip install -e '.[bench]'): no chDB figures", flush=True)
    else:
        def run_chdb(sql: str) -> Callable[[], object]:
            return lambda: chdb.query(sql, "CSV")

        for name, sql in raw_chdb_questions(lake, prices).items():
            out[name]["raw chdb"] = _median(run_chdb(sql), repeats)
    return out


# ---------------------------------------------------------------- the bench


def bench_size(label: str, root: Path, repeats: int) -> dict[str, Any]:
    """Every figure for one lake size."""
    import duckdb

    from tracehouse.resources import duckdb_env

    spans_target = SIZES[label]
    t0 = time.perf_counter()
    lake, more, next_day = make_lakes(root, spans_target)
    generate_s = time.perf_counter() - t0
    warehouse = root / "warehouse"
    shutil.rmtree(warehouse, ignore_errors=True)
    glob = lake / "spans" / "dt=*" / "*.parquet"
    spans = duckdb.execute(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0]
    print(f"\n[{label}] lake: {spans:,} spans, {DAYS} days (made in {generate_s:.0f}s)", flush=True)

    con = _duckdb(duckdb_env())
    reference = _median(lambda: con.execute(reference_sql(lake)), repeats)
    con.close()
    print(f"[{label}] reference single scan: {reference:.2f}s", flush=True)

    runs: dict[str, Any] = {}
    midnight = datetime(next_day.year, next_day.month, next_day.day, tzinfo=UTC)
    plan = [
        ("full", None),
        ("+1 hour", (midnight, midnight + timedelta(hours=1))),
        ("+1 day", (midnight + timedelta(hours=1), midnight + timedelta(hours=25))),
        ("nothing new", ()),
    ]
    for kind, window in plan:
        landed = 0
        if window:
            landed = land_window(more, lake, window[0], window[1],
                                 f"bench-{kind.strip('+').replace(' ', '')}")
        runs[kind] = run_child(lake, warehouse, full_refresh=kind == "full")
        runs[kind]["rows_landed"] = landed
        print(f"[{label}] {kind:<12} {runs[kind]['seconds']:7.1f}s  peak "
              f"{runs[kind]['peak_mb']:,} MB  " + "  ".join(
                  f"{k} {v['seconds']:.1f}s" for k, v in runs[kind]["steps"].items()),
              flush=True)
    questions = time_questions(lake, warehouse, repeats)
    return {"spans": spans, "generate_s": round(generate_s, 1), "reference_s": round(reference, 3),
            "runs": runs, "questions": questions}


def machine() -> dict[str, Any]:
    """What the figures ran on, and how busy it was."""
    from tracehouse.resources import machine_memory_bytes, machine_threads

    memory = machine_memory_bytes()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": machine_threads(),
        "memory_gb": round(memory / 2**30, 1) if memory else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
    }


def table(results: dict[str, Any]) -> str:
    """The figures as a Markdown table (seconds; x = ratio to the size's reference)."""
    lines = ["| lake | what | seconds | x reference | peak MB | steps |",
             "|---|---|---|---|---|---|"]
    for label, r in results["sizes"].items():
        ref = r["reference_s"]
        lines.append(f"| {label} ({r['spans']:,} spans) | reference single scan | {ref:.2f} | 1 "
                     "| | |")
        for kind, run in r["runs"].items():
            steps = ", ".join(f"{k} {v['seconds']:.1f}" for k, v in run["steps"].items())
            lines.append(f"| | run: {kind} | {run['seconds']:.1f} | {run['seconds'] / ref:.1f} "
                         f"| {run['peak_mb']:,} | {steps} |")
        for question, engines in r["questions"].items():
            for engine, seconds in engines.items():
                lines.append(f"| | {question}: {engine} | {seconds:.3f} | {seconds / ref:.2f} "
                             "| | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the bench for each size; print the table; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=os.environ.get("TRACEHOUSE_BENCH_SIZES", "1M"),
                        help="comma-separated lake sizes: 100K, 1M, 3M, 10M, 30M (default: "
                        "env TRACEHOUSE_BENCH_SIZES, else 1M; `make bench BENCH_SIZES=1M,10M`)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timed query (median)")
    parser.add_argument("--root", type=Path, default=None,
                        help="keep lakes and warehouses here (reused when present)")
    parser.add_argument("--json", type=Path, default=Path("var/bench/run_bench.json"))
    parser.add_argument("--child", nargs=2, metavar=("LAKE", "WAREHOUSE"), help=argparse.SUPPRESS)
    parser.add_argument("--full-refresh", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], args.child[1], args.full_refresh)
    labels = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in labels if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {list(SIZES)}")
    base = args.root or Path(tempfile.mkdtemp(prefix="tracehouse-run-bench-"))
    results: dict[str, Any] = {"machine": machine(), "sizes": {}}
    loads: list[float] = []  # the 1-minute load average every 15 s while measuring
    stop = threading.Event()

    def sample_load() -> None:
        while not stop.wait(15.0):
            loads.append(round(os.getloadavg()[0], 2))

    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    try:
        for label in labels:
            results["sizes"][label] = bench_size(label, base / label, args.repeats)
    finally:
        stop.set()
        sampler.join()
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if loads:
        results["machine"]["load_1min_while_measuring"] = {
            "min": min(loads), "median": statistics.median(loads), "max": max(loads)}
    print("\n" + table(results))
    m = results["machine"]
    print(f"\nmachine: {m['cpus']} CPUs, {m['memory_gb']} GB, {m['platform']}; load average "
          f"{m['load_average']} -> {m['load_average_end']}"
          + (f"; 1-min load while measuring (min/median/max) "
             f"{m['load_1min_while_measuring']}" if "load_1min_while_measuring" in m else ""))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"JSON: {args.json}")
    if args.root is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
