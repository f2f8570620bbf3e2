"""Which engine builds the warehouse: DuckDB (embedded, the default) or Spark.

The dbt project is the same for both; an engine is a dbt target of ``profiles.yml`` plus what the
build needs around it. DuckDB builds straight into ``<warehouse>/tracehouse.duckdb``. Spark keeps
its tables in its own catalog (``<warehouse>/spark/`` for the local session), so after a Spark
build every mart is exported to Parquet (dbt's on-run-end ``export_marts``) and loaded into
``<warehouse>/tracehouse.duckdb``'s ``marts`` schema by :func:`import_marts`: checks, detection,
publish and the readers then read the marts the same way whichever engine built them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tracehouse.errors import TracehouseError

ENGINES: tuple[str, ...] = ("duckdb", "spark")
LAKE_DATASETS: tuple[str, ...] = ("spans", "feedback", "annotations")
SPARK_EXPORT_DIR = Path("spark") / "marts_export"


class EngineError(TracehouseError, ValueError):
    """An unknown engine, or an engine whose packages are not installed."""


def check_engine(engine: str) -> str:
    """Return ``engine`` if known; raise :class:`EngineError` naming the choices otherwise."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "spark":
        try:
            import dbt.adapters.spark  # noqa: F401
        except ImportError:
            raise EngineError(
                "the spark engine needs dbt-spark and pyspark: pip install -e '.[spark]' "
                "(and Java 17)"
            ) from None
    return engine


def dbt_target(engine: str) -> str:
    """The profiles.yml target of an engine: ``$TRACEHOUSE_SPARK_TARGET`` (e.g. spark_cluster)
    overrides the local ``spark`` session target."""
    if engine == "spark":
        return os.environ.get("TRACEHOUSE_SPARK_TARGET", "spark")
    return engine


def lake_missing_datasets(lake: Path | str) -> list[str]:
    """The lake datasets with no Parquet file yet (Spark SQL cannot test for a folder)."""
    lake = Path(lake)
    return [d for d in LAKE_DATASETS if not any((lake / d).glob("dt=*/*.parquet"))]


def export_dir(warehouse: Path | str) -> Path:
    """Where a Spark build writes its marts as Parquet (one folder of part files per mart)."""
    return Path(warehouse) / SPARK_EXPORT_DIR


def dbt_vars(engine: str, lake: Path | str, warehouse: Path | str) -> dict[str, object]:
    """The dbt vars an engine's build needs besides the project's own."""
    if engine != "spark":
        return {}
    folder = export_dir(warehouse)
    return {
        "lake_missing_datasets": lake_missing_datasets(lake),
        "marts_export_dir": str(folder.resolve()),
    }


def prepare(engine: str, warehouse: Path | str) -> None:
    """Before a build: clear the previous Spark export so that no stale mart is imported."""
    if engine == "spark":
        shutil.rmtree(export_dir(warehouse), ignore_errors=True)
        (Path(warehouse) / "spark").mkdir(parents=True, exist_ok=True)


def _utc_select(con: Any, files: str) -> str:
    """Select list over exported Parquet: a timestamp without time zone (INT96, or a writer that
    does not mark UTC) is a UTC instant in Spark's UTC session: read it as TIMESTAMPTZ, the type
    the DuckDB build gives it."""
    items = []
    for name, kind, *_ in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{files}')"
    ).fetchall():
        quoted = '"' + name.replace('"', '""') + '"'
        if kind in ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"):
            items.append(f"CAST({quoted} AS TIMESTAMPTZ) AS {quoted}")
        else:
            items.append(quoted)
    return ", ".join(items)


def import_marts(warehouse: Path | str) -> dict[str, int]:
    """Load a Spark build's exported marts into ``<warehouse>/tracehouse.duckdb`` (schema marts).

    Each mart replaces the table of the same name; returns mart name -> rows. Call it after a
    successful Spark build and before checks, detection and publish.
    """
    import duckdb

    from tracehouse.warehouse import MARTS_SCHEMA, warehouse_db

    folder = export_dir(warehouse)
    marts = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not marts:
        raise EngineError(f"the Spark build exported no marts into {folder}")
    counts: dict[str, int] = {}
    con = duckdb.connect(str(warehouse_db(warehouse)))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{MARTS_SCHEMA}"')
        con.execute("BEGIN")
        for mart in marts:
            files = str(mart / "*.parquet")
            kind = con.execute(
                "SELECT table_type FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name = ?",
                [MARTS_SCHEMA, mart.name],
            ).fetchone()
            if kind and kind[0] == "VIEW":
                con.execute(f'DROP VIEW "{MARTS_SCHEMA}"."{mart.name}"')
            con.execute(
                f'CREATE OR REPLACE TABLE "{MARTS_SCHEMA}"."{mart.name}" AS '
                f"SELECT {_utc_select(con, files)} FROM read_parquet('{files}')"
            )
            row = con.execute(f'SELECT count(*) FROM "{MARTS_SCHEMA}"."{mart.name}"').fetchone()
            counts[mart.name] = int(row[0]) if row else 0
        con.execute("COMMIT")
    finally:
        con.close()
    return counts
