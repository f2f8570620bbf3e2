"""DuckDB's memory limit and thread count for the warehouse build, from the machine.

``profiles.yml`` reads ``TRACEHOUSE_DUCKDB_MEMORY_LIMIT`` and ``TRACEHOUSE_DUCKDB_THREADS``; a
value the user set wins, otherwise :func:`duckdb_env` fills them from this machine: threads = the
CPUs this process may use, memory = 60 % of physical memory, capped at 6 GB (the issue's peak
budget at 10M spans; DuckDB spills to ``<warehouse>/.tmp`` beyond it).
"""

from __future__ import annotations

import os

MEMORY_CAP_BYTES = 6 * 1024**3
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
