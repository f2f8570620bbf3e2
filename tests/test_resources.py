"""DuckDB's limits come from the machine, capped so a run's peak stays under 6 GB, and reach the
run's own connections (checks, detection, publication), not only dbt's."""

from __future__ import annotations

from pathlib import Path

import duckdb

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
