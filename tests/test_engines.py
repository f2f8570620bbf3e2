"""Engine choice around the dbt build (no Spark needed): names, vars, and loading exported marts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tracehouse import engines
from tracehouse.warehouse import warehouse_db


def test_unknown_engine_is_a_clear_error() -> None:
    with pytest.raises(engines.EngineError, match="choose one of duckdb, spark"):
        engines.check_engine("snowflake")
    assert engines.check_engine("duckdb") == "duckdb"


def test_spark_vars_name_the_datasets_without_files(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "spans" / "dt=2026-01-01").mkdir(parents=True)
    (lake / "spans" / "dt=2026-01-01" / "b.parquet").write_bytes(b"")
    (lake / "feedback").mkdir()
    found = engines.dbt_vars("spark", lake, tmp_path / "w")
    assert found["lake_missing_datasets"] == ["feedback", "annotations"]
    assert str(found["marts_export_dir"]).endswith("spark/marts_export")
    assert engines.dbt_vars("duckdb", lake, tmp_path / "w") == {}


def test_import_marts_loads_exports_and_reads_naive_timestamps_as_utc(tmp_path: Path) -> None:
    warehouse = tmp_path / "w"
    folder = engines.export_dir(warehouse) / "metric_daily"
    folder.mkdir(parents=True)
    table = pa.table({
        "metric": ["error_rate", "request_count"],
        "period_start": pa.array([0, 86_400_000_000], type=pa.timestamp("us")),  # no zone
        "value": [0.25, 4.0],
    })
    pq.write_table(table.slice(0, 1), folder / "part-00000.parquet")
    pq.write_table(table.slice(1, 1), folder / "part-00001.parquet")
    # A stale view of the same name (a DuckDB build's) is replaced by the table.
    con = duckdb.connect(str(warehouse_db(warehouse)))
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE VIEW marts.metric_daily AS SELECT 1 AS x")
    con.close()

    assert engines.import_marts(warehouse) == {"metric_daily": 2}
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    kinds = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'metric_daily'").fetchall())
    assert kinds["period_start"] == "TIMESTAMP WITH TIME ZONE"
    rows = con.execute("SELECT metric, strftime(period_start, '%Y-%m-%d %H:%M%z'), value "
                       "FROM marts.metric_daily ORDER BY metric").fetchall()
    con.close()
    assert rows == [("error_rate", "1970-01-01 00:00+00", 0.25),
                    ("request_count", "1970-01-02 00:00+00", 4.0)]


def test_import_marts_without_an_export_fails(tmp_path: Path) -> None:
    with pytest.raises(engines.EngineError, match="exported no marts"):
        engines.import_marts(tmp_path / "w")
