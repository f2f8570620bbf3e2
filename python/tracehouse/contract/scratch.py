"""A reusable in-memory DuckDB connection per thread, for the writer's short vectorised queries.

Opening a DuckDB connection and setting its time zone costs ~50-80 ms, more than validating a
small batch; the lake writer validates every batch, so it keeps one connection per thread (and
per process: a connection is never used across a fork) and registers its Arrow tables on it
only for the duration of a query.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

_LOCAL = threading.local()


@contextmanager
def scratch(
    *tables: tuple[str, object], also: tuple[str, ...] = ()
) -> Iterator[duckdb.DuckDBPyConnection]:
    """This thread's scratch connection (``TimeZone = 'UTC'``) with ``(name, table)`` registered.

    The names (and the names in ``also``, which the caller may register) are unregistered on
    exit, so no table is kept alive; a nested use in the same thread gets a connection of its
    own.
    """
    con: duckdb.DuckDBPyConnection | None = getattr(_LOCAL, "con", None)
    if con is None or getattr(_LOCAL, "pid", None) != os.getpid():
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        _LOCAL.con, _LOCAL.pid, _LOCAL.busy = con, os.getpid(), False
    own = _LOCAL.busy
    if own:  # nested: a fresh connection, closed on exit
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
    else:
        _LOCAL.busy = True
    names: list[str] = list(also)
    try:
        for name, table in tables:
            con.register(name, table)
            names.append(name)
        yield con
    finally:
        if own:
            con.close()
        else:
            for name in names:
                con.unregister(name)
            _LOCAL.busy = False
