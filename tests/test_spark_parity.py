"""The same dbt project on Spark and on DuckDB gives the same marts (`make test-spark`).

One small generated lake (late feedback, duplicate deliveries and quarantined rows: the
generator's defaults plus ``bad_rows``) is built by DuckDB and by a local SparkSession (dbt-spark
``method: session``; one session for the whole test: dbt runs in this process). Every mart is
compared row for row; then a day is appended, both engines build incrementally, and every mart is
compared again.

Tolerances, stated once:
- doubles: relative 1e-9 (``FLOAT_RTOL``; absolute 1e-12 near zero). Sums of doubles already go
  through ``exact_sum`` (a decimal sum), so the two engines agree far closer than this.
- quantiles (``latency_p95_ms``, ``latency_p50_ms``, the stage latency and eval-candidate
  thresholds): DuckDB ``quantile_cont`` and Spark ``percentile`` are both exact with linear
  interpolation between the two closest ranks (the same definition; Spark's
  ``percentile_approx`` is not used), so the same 1e-9 applies. A divergence here is a bug,
  not noise.
- everything else (text, integers, booleans, dates, timestamps to the microsecond, lists in
  order, structs) exactly.

Spark's data tests are not run here (each is a Spark job: minutes on 2 cores); the DuckDB build
runs them, and equal marts carry them over. Skipped unless ``TRACEHOUSE_TEST_SPARK=1`` (set by
``make test-spark``, which installs ``.[spark]``); needs Java 17.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

needs_spark = pytest.mark.skipif(
    os.environ.get("TRACEHOUSE_TEST_SPARK") != "1",
    reason="Spark parity runs with `make test-spark` (TRACEHOUSE_TEST_SPARK=1)",
)

START = date(2026, 1, 1)
FIRST_DAYS, TRACES_PER_DAY, SEED, BAD_ROWS = 2, 40, 11, 0.01
FLOAT_RTOL, FLOAT_ATOL = 1e-9, 1e-12
QUICK = ["--resource-type", "model", "--resource-type", "seed"]


def _close(a: Any, b: Any) -> bool:
    """Equal, with doubles (also inside lists and structs) to FLOAT_RTOL."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=FLOAT_ATOL)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return math.isclose(float(a), float(b), rel_tol=FLOAT_RTOL, abs_tol=FLOAT_ATOL)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return bool(a == b)


def _sort_key(row: tuple[Any, ...]) -> tuple[str, ...]:
    """A row's order that does not depend on the last bits of its doubles."""

    def norm(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, list | tuple):
            return "[" + ",".join(norm(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ",".join(f"{k}:{norm(x)}" for k, x in sorted(v.items())) + "}"
        return "\0" if v is None else str(v)

    return tuple(norm(v) for v in row)


def _marts(con: duckdb.DuckDBPyConnection, db: str) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_catalog = ? AND table_schema = 'marts' ORDER BY table_name",
        [db],
    ).fetchall()
    return [r[0] for r in rows]


def compare_marts(duck_db: Path, spark_db: Path) -> dict[str, int]:
    """Assert every mart of the two warehouses is equal row for row; return mart -> rows."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"ATTACH '{duck_db}' AS duck (READ_ONLY)")
        con.execute(f"ATTACH '{spark_db}' AS spark (READ_ONLY)")
        names = _marts(con, "duck")
        assert names, "the DuckDB build has no marts"
        assert _marts(con, "spark") == names
        compared: dict[str, int] = {}
        for name in names:
            cols_d = [r[0] for r in con.execute(f"DESCRIBE duck.marts.{name}").fetchall()]
            cols_s = [r[0] for r in con.execute(f"DESCRIBE spark.marts.{name}").fetchall()]
            assert cols_s == cols_d, f"{name}: columns differ"
            rows_d = sorted(con.execute(f"SELECT * FROM duck.marts.{name}").fetchall(),
                            key=_sort_key)
            rows_s = sorted(con.execute(f"SELECT * FROM spark.marts.{name}").fetchall(),
                            key=_sort_key)
            assert len(rows_s) == len(rows_d), (
                f"{name}: {len(rows_s)} rows on Spark, {len(rows_d)} on DuckDB"
            )
            for i, (rd, rs) in enumerate(zip(rows_d, rows_s, strict=True)):
                bad = [
                    f"{c}: duckdb {x!r} != spark {y!r}"
                    for c, x, y in zip(cols_d, rd, rs, strict=True)
                    if not _close(x, y)
                ]
                assert not bad, f"{name} row {i}: " + "; ".join(bad[:5])
            compared[name] = len(rows_d)
        return compared
    finally:
        con.close()


def test_compare_marts_catches_a_difference(tmp_path: Path) -> None:
    """The comparison fails on a changed value beyond the tolerance, passes within it."""
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for path, value in ((a, 1.0), (b, 1.0 + 1e-12)):
        con = duckdb.connect(str(path))
        con.execute("CREATE SCHEMA marts")
        con.execute(f"CREATE TABLE marts.m AS SELECT 1 AS k, {value}::DOUBLE AS v, [1, 2] AS l")
        con.close()
    assert compare_marts(a, b) == {"m": 1}
    con = duckdb.connect(str(b))
    con.execute("UPDATE marts.m SET v = 1.0 + 1e-6")
    con.close()
    with pytest.raises(AssertionError, match="v: duckdb"):
        compare_marts(a, b)


@pytest.fixture(scope="module")
def lake_and_warehouses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from tracehouse.generator import generate

    root = tmp_path_factory.mktemp("spark_parity")
    lake = root / "lake"
    generate(lake, start=START, days=FIRST_DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED,
             bad_rows=BAD_ROWS, progress=False)
    yield {"root": root, "lake": lake, "duck": root / "duck", "spark": root / "spark"}


def _build(lake: Path, warehouse: Path, engine: str) -> float:
    """Models and seeds on ``engine``; a Spark build's marts are then loaded for comparison."""
    from tracehouse import engines
    from tracehouse.warehouse import dbt_invoke

    started = time.perf_counter()
    engines.prepare(engine, warehouse)
    res = dbt_invoke(["build", *QUICK], lake=lake, warehouse=warehouse, engine=engine)
    assert res.success, "\n".join(res.failures)
    if engine != "duckdb":
        engines.import_marts(warehouse)
    return time.perf_counter() - started


@pytest.mark.slow
@pytest.mark.spark
@needs_spark
def test_spark_marts_equal_duckdb_marts_full_and_incremental(
    lake_and_warehouses: dict[str, Path],
) -> None:
    from tracehouse.generator import generate
    from tracehouse.publish import publish
    from tracehouse.warehouse import warehouse_db

    lake, duck, spark = (lake_and_warehouses[k] for k in ("lake", "duck", "spark"))
    timings: dict[str, float] = {}
    timings["duckdb full"] = _build(lake, duck, "duckdb")
    timings["spark full"] = _build(lake, spark, "spark")
    first = compare_marts(warehouse_db(duck), warehouse_db(spark))

    generate(lake, start=date.fromordinal(START.toordinal() + FIRST_DAYS), days=1,
             traces_per_day=TRACES_PER_DAY, seed=SEED, bad_rows=BAD_ROWS, progress=False)
    timings["duckdb incremental"] = _build(lake, duck, "duckdb")
    timings["spark incremental"] = _build(lake, spark, "spark")
    second = compare_marts(warehouse_db(duck), warehouse_db(spark))

    # The appended day reached the marts (the incremental builds did something).
    assert second["fct_requests"] > first["fct_requests"]
    # Publish reads a Spark-built warehouse the same way as a DuckDB-built one.
    published = publish(spark, "spark-parity")
    assert published.tables == second
    print(f"\nmarts equal after the full build: {first}")
    print(f"marts equal after +1 day incremental: {second}")
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
