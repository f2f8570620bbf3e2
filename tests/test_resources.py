"""DuckDB's limits come from the machine, capped so a run's peak stays under 6 GB, and reach the
run's own connections (checks, detection, publication), not only dbt's."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tracehouse.resources import MEMORY_CAP_BYTES, apply_limits, duckdb_env


def _mb(setting: str) -> float:
    value, unit = setting.split()
    return float(value) * {"MiB": 1, "GiB": 1024, "MB": 1 / 1.048576, "GB": 1000 / 1.048576}[unit]


def test_the_memory_limit_is_capped_below_the_6_gb_budget() -> None:
    limit = duckdb_env({})["TRACEHOUSE_DUCKDB_MEMORY_LIMIT"]
    assert limit.endswith("MB") and int(limit[:-2]) * 1024**2 <= MEMORY_CAP_BYTES
    assert MEMORY_CAP_BYTES <= 5 * 1024**3  # headroom for Python under 6 GB


def test_the_users_setting_wins() -> None:
    env = duckdb_env({"TRACEHOUSE_DUCKDB_MEMORY_LIMIT": "300MB", "TRACEHOUSE_DUCKDB_THREADS": "1"})
    assert env == {"TRACEHOUSE_DUCKDB_MEMORY_LIMIT": "300MB", "TRACEHOUSE_DUCKDB_THREADS": "1"}


def test_apply_limits_sets_them_on_a_connection() -> None:
    con = duckdb.connect()
    before = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # type: ignore[index]
    apply_limits(con, {"TRACEHOUSE_DUCKDB_MEMORY_LIMIT": "300MB", "TRACEHOUSE_DUCKDB_THREADS": "1"})
    after, threads = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()  # type: ignore[misc]
    assert abs(_mb(after) - 300 / 1.048576) < 2 and _mb(before) > _mb(after)
    assert int(threads) == 1
    con.close()


def test_apply_limits_works_on_a_read_only_connection(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    limits = {"TRACEHOUSE_DUCKDB_MEMORY_LIMIT": "256MB", "TRACEHOUSE_DUCKDB_THREADS": "2"}
    con = apply_limits(duckdb.connect(str(db), read_only=True), limits)
    assert int(con.execute("SELECT current_setting('threads')").fetchone()[0]) == 2  # type: ignore[index]
    con.close()


def test_the_temp_cap_is_half_the_free_disk_of_the_warehouse(tmp_path: Path) -> None:
    import shutil

    from tracehouse.resources import TEMP_DISK_SHARE, temp_limit

    free_mb = shutil.disk_usage(tmp_path).free / 1024**2
    # a warehouse folder not created yet is measured on its nearest existing parent
    env = duckdb_env({}, warehouse=tmp_path / "not" / "yet")
    cap = env["TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE"]
    assert cap == temp_limit(tmp_path / "not" / "yet") and cap.endswith("MB")
    assert abs(int(cap[:-2]) - free_mb * TEMP_DISK_SHARE) < free_mb * 0.02
    assert "TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE" not in duckdb_env({})  # no warehouse, no cap
    mine = duckdb_env({"TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE": "7GB"}, warehouse=tmp_path)
    assert mine["TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE"] == "7GB"


@pytest.mark.slow
def test_dbt_sets_the_temp_cap_on_its_database(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The on-run-start hook apply_temp_disk_limit runs `set max_temp_directory_size` with the
    run's cap on dbt's DuckDB (dbt's debug log has the statement and its status), and a global
    setting set on one cursor holds for the database's other cursors (dbt's threads)."""
    from datetime import date

    from tests.test_incremental_loads import SEED
    from tracehouse.generator import generate
    from tracehouse.warehouse import dbt_invoke

    lake, wh = tmp_path / "lake", tmp_path / "wh"
    generate(lake, start=date(2026, 1, 1), days=1, traces_per_day=20, seed=SEED, progress=False)
    monkeypatch.setenv("TRACEHOUSE_DBT_LOG_LEVEL", "debug")
    monkeypatch.setenv("TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE", "1234MB")
    res = dbt_invoke(["run", "--select", "base_lake__feedback"], lake=lake, warehouse=wh)
    assert res.success, res.failures
    log = (wh / "_dbt" / "logs" / "dbt.log").read_text()
    at = log.index("set max_temp_directory_size = '1234MB'")
    assert "SQL status: OK" in log[at:at + 2000]

    con = duckdb.connect()
    con.cursor().execute("set max_temp_directory_size = '1234MB'")
    (setting,) = con.execute("select current_setting('max_temp_directory_size')").fetchone()  # type: ignore[misc]
    assert setting == "1.1 GiB"
    con.close()
