"""DuckDB's memory limit and thread count for the warehouse build, from the machine.

``profiles.yml`` reads ``TRACEHOUSE_DUCKDB_MEMORY_LIMIT`` and ``TRACEHOUSE_DUCKDB_THREADS``; a
value the user set wins, otherwise :func:`duckdb_env` fills them from this machine: threads = the
CPUs this process may use, memory = 60 % of physical memory, capped at 5 GB, so that a run's peak
resident memory, DuckDB's buffers plus Python's share, stays under the 6 GB budget of issue 9 at
10M spans and more (DuckDB spills to ``<warehouse>/.tmp`` beyond it; at 10M spans the build peaked
at 6.4 GB with a 6 GB cap). :func:`apply_limits` gives the run's own DuckDB connections (checks,
detection, publication) the same limits: unset, DuckDB takes 80 % of the machine per instance.

The build's temp files are capped too (``TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE``, DuckDB's
``max_temp_directory_size``, set by the on-run-start hook ``apply_temp_disk_limit``): by default
half the free space of the warehouse's filesystem when the run starts (:func:`temp_limit`), not
DuckDB's 90 %, so that a build that spills leaves room for the lake to keep landing on the same
disk. A build that hits the cap fails with DuckDB's message (and is retried one node at a time,
tracehouse.warehouse.build), it does not fill the disk.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

MEMORY_CAP_BYTES = 5 * 1024**3
MEMORY_SHARE = 0.6
TEMP_DISK_SHARE = 0.5
MIN_TEMP_BYTES = 64 * 1024**2


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


def temp_limit(warehouse: Path | str) -> str:
    """:data:`TEMP_DISK_SHARE` of the free space on the filesystem of ``warehouse`` (or of its
    nearest existing parent), as a DuckDB size (``"12345MB"``), at least 64 MB."""
    probe = Path(warehouse).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    return f"{max(int(free * TEMP_DISK_SHARE), MIN_TEMP_BYTES) // 1024**2}MB"


def duckdb_env(environ: dict[str, str] | None = None,
               warehouse: Path | str | None = None) -> dict[str, str]:
    """The TRACEHOUSE_DUCKDB_* variables to set: the user's where given, else the machine's.
    With ``warehouse``, also the temp-file cap for a build into it (:func:`temp_limit`)."""
    environ = dict(os.environ) if environ is None else environ
    memory = machine_memory_bytes()
    limit = MEMORY_CAP_BYTES
    if memory is not None:
        limit = min(MEMORY_CAP_BYTES, int(memory * MEMORY_SHARE))
    env = {
        "TRACEHOUSE_DUCKDB_MEMORY_LIMIT": environ.get(
            "TRACEHOUSE_DUCKDB_MEMORY_LIMIT", f"{max(limit // 1024**2, 256)}MB"
        ),
        "TRACEHOUSE_DUCKDB_THREADS": environ.get(
            "TRACEHOUSE_DUCKDB_THREADS", str(machine_threads())
        ),
    }
    if warehouse is not None:
        env["TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE"] = (
            environ.get("TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE") or temp_limit(warehouse)
        )
    return env


def apply_limits(con: duckdb.DuckDBPyConnection,
                 environ: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """Set the memory limit and threads of :func:`duckdb_env` on ``con`` (its database instance)
    and return it. ``SET``, not ``connect(config=...)``: a second connection to a file this
    process already opened must not ask for another configuration."""
    env = duckdb_env(environ)
    con.execute(f"SET memory_limit = '{env['TRACEHOUSE_DUCKDB_MEMORY_LIMIT']}'")
    con.execute(f"SET threads = {int(env['TRACEHOUSE_DUCKDB_THREADS'])}")
    return con
