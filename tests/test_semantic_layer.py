"""The semantic layer: MetricFlow's metrics equal `metric_daily` on a built warehouse."""

from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path

import pytest

from tracehouse.publication import connect
from tracehouse.semantic import query, run_mf

pytestmark = pytest.mark.slow

#: MetricFlow metric -> its namesake in metric_daily.
SAME_AS = {
    "requests": "request_count",
    "cost_per_successful_task": "cost_per_successful_task_usd",
    "cost_per_request": "cost_per_request_usd",
    "task_success_rate": "task_success_rate",
    "thumbs_down_rate": "thumbs_down_rate",
    "escalation_rate": "escalation_rate",
    "error_rate": "error_rate",
    "tool_call_rate": "tool_call_rate",
    "retrieval_hit_rate": "retrieval_hit_rate",
    "latency_p95_ms": "latency_p95_ms",
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tracehouse.generator import generate
    from tracehouse.pipeline import run

    root = tmp_path_factory.mktemp("semantic")
    generate(root / "lake", start=date(2026, 1, 1), days=3, traces_per_day=150, seed=5,
             progress=False)
    run(root / "lake", root / "warehouse", progress=False, echo=lambda _line: None)
    return root / "warehouse"


def _metric_daily(warehouse: Path, segment_prefix: str) -> dict[tuple[str, str, str], float]:
    con = connect(warehouse)
    try:
        rows = con.execute(
            "select metric, strftime(period_start, '%Y-%m-%d'), segment_key, value "
            "from metric_daily where value is not null and "
            f"(segment_key = 'all' or segment_key like '{segment_prefix}=%')"
        ).fetchall()
    finally:
        con.close()
    return {(m, d, s): v for m, d, s, v in rows}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_mf_validate_configs_passes(warehouse: Path) -> None:
    done = run_mf(["validate-configs"], warehouse)
    counts = re.findall(r"ERRORS: (\d+), FUTURE_ERRORS: (\d+)", done.stdout)
    # Semantic validations, then the same against the warehouse's tables: all clean.
    assert len(counts) >= 2 and all(c == ("0", "0") for c in counts), done.stdout[-3000:]
    assert "Successfully validated metrics against data warehouse" in done.stdout


def test_every_metric_by_day_equals_metric_daily(warehouse: Path) -> None:
    table = query(list(SAME_AS), ["metric_time__day"], warehouse)
    expected = _metric_daily(warehouse, "route_name")
    compared = 0
    for row in table.to_pylist():
        day = str(row["metric_time__day"])[:10]
        for mf_name, md_name in SAME_AS.items():
            got, want = row[mf_name], expected.get((md_name, day, "all"))
            assert (got is None) == (want is None), (mf_name, day, got, want)
            if want is not None:
                assert _close(float(got), want), (mf_name, day, got, want)
                compared += 1
    assert table.num_rows == 3
    assert compared >= 3 * (len(SAME_AS) - 1)


def test_metrics_by_route_equal_the_route_segments(warehouse: Path) -> None:
    metrics = ["requests", "cost_per_successful_task", "thumbs_down_rate", "latency_p95_ms"]
    table = query(metrics, ["metric_time__day", "trace__route_name"], warehouse)
    expected = _metric_daily(warehouse, "route_name")
    routes = set()
    for row in table.to_pylist():
        day, route = str(row["metric_time__day"])[:10], row["trace__route_name"]
        routes.add(route)
        for mf_name in metrics:
            want = expected.get((SAME_AS[mf_name], day, f"route_name={route}"))
            got = row[mf_name]
            assert (got is None) == (want is None), (mf_name, day, route, got, want)
            if want is not None:
                assert _close(float(got), want), (mf_name, day, route, got, want)
    assert len(routes) >= 2


def test_mf_reads_the_publication_not_the_build_database(warehouse: Path) -> None:
    build_db = warehouse / "tracehouse.duckdb"
    aside = warehouse / "tracehouse.duckdb.aside"
    build_db.rename(aside)
    try:
        table = query(["requests"], ["metric_time__day"], warehouse)
    finally:
        aside.rename(build_db)
    assert table.num_rows == 3 and sum(table.column("requests").to_pylist()) > 0
    assert not (warehouse / "tracehouse.duckdb.aside").exists()
