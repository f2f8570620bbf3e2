"""DuckDB's memory limit and thread count for the warehouse build, from the machine.

``profiles.yml`` reads ``TRACEHOUSE_DUCKDB_MEMORY_LIMIT`` and ``TRACEHOUSE_DUCKDB_THREADS``; a
value the user set wins, otherwise :func:`duckdb_env` fills them from this machine: threads = the
CPUs this process may use, memory = 60 % of physical memory, capped at 5 GB, so that a run's peak
resident memory, DuckDB's buffers plus Python's share, stays under the 6 GB budget of issue 9 at
10M spans and more (DuckDB spills to ``<warehouse>/.tmp`` beyond it; at 10M spans the build peaked
at 6.4 GB with a 6 GB cap). :func:`apply_limits` gives the run's own DuckDB connections (checks,
detection, publication) the same limits: unset, DuckDB takes 80 % of the machine per instance.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

MEMORY_CAP_BYTES = 5 * 1024**3
MEMORY_SHARE = 0.6


def machine_memory_bytes() -> int | None:
    """Physical memory in bytes, or None when the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def machine_threads() -> int:
    """CPUs this process may run on (its affinity where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def duckdb_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The TRACEHOUSE_DUCKDB_* variables to set: the user's where given, else the machine's."""
    environ = dict(os.environ) if environ is None else environ
    memory = machine_memory_bytes()
    limit = MEMORY_CAP_BYTES
    if memory is not None:
        limit = min(MEMORY_CAP_BYTES, int(memory * MEMORY_SHARE))
    return {
        "TRACEHOUSE_DUCKDB_MEMORY_LIMIT": environ.get(
            "TRACEHOUSE_DUCKDB_MEMORY_LIMIT", f"{max(limit // 1024**2, 256)}MB"
        ),
        "TRACEHOUSE_DUCKDB_THREADS": environ.get(
            "TRACEHOUSE_DUCKDB_THREADS", str(machine_threads())
        ),
    }


def apply_limits(con: duckdb.DuckDBPyConnection,
                 environ: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """Set the memory limit and threads of :func:`duckdb_env` on ``con`` (its database instance)
    and return it. ``SET``, not ``connect(config=...)``: a second connection to a file this
    process already opened must not ask for another configuration."""
    env = duckdb_env(environ)
    con.execute(f"SET memory_limit = '{env['TRACEHOUSE_DUCKDB_MEMORY_LIMIT']}'")
    con.execute(f"SET threads = {int(env['TRACEHOUSE_DUCKDB_THREADS'])}")
    return con
