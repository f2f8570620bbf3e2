"""Change points of a series, remembered across runs by the content of the detector's input.

The detector (`changepoint.detect`) is a pure function of its input: the values, the weights,
the seasonal period, the penalty and the noise floor. A run that adds one hour of data leaves
most series as they were (every series whose segment saw no new traffic, and the penalty is
the same while the number of series judged is), so their change points are those of the last
run. The cache maps a content hash of that input (and of the detector's code) to the change
points it gave; a series whose input changed in any way hashes differently and is detected
again. Trailing missing points are left out of the hash: the detector drops missing points and
indexes the others by position from the start, so a series that only grew a missing period
at its end (a new hour without traffic) has the same change points.

The cache lives in the warehouse database (``detect.series_cache``, not published) and holds
the entries of the last run only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from tracehouse.detect.changepoint import ChangePoint, detect

SCHEMA = "detect"
TABLE = f"{SCHEMA}.series_cache"
#: The modules whose code decides a series' change points: a change to any invalidates the cache.
DETECTOR_MODULES = ("changepoint.py", "cp_prepare.py", "cp_pelt.py", "cp_prune.py")
CACHE_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("idx", pa.list_(pa.int64())),
    ("value_before", pa.list_(pa.float64())),
    ("value_after", pa.list_(pa.float64())),
    ("score", pa.list_(pa.float64())),
])


@cache
def detector_digest() -> str:
    """A digest of the detector's source."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in DETECTOR_MODULES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def series_key(y: np.ndarray, w: np.ndarray | None, period: int | None, penalty: float,
               noise_floor: float) -> str:
    """The content hash of one detector input (trailing missing points left out)."""
    y = np.ascontiguousarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    if w is not None:
        w = np.ascontiguousarray(w, dtype=np.float64)
        ok &= np.isfinite(w) & (w > 0)
    valid = np.flatnonzero(ok)
    end = int(valid[-1]) + 1 if valid.size else 0
    digest = hashlib.sha256(detector_digest().encode())
    digest.update(f"{period}|{float(penalty).hex()}|{float(noise_floor).hex()}|{end}|".encode())
    digest.update(y[:end].tobytes())
    digest.update(b"|none" if w is None else w[:end].tobytes())
    return digest.hexdigest()


@dataclass
class SeriesCache:
    """The change points of the last run's series; counts this run's hits and misses."""

    known: dict[str, list[ChangePoint]] = field(default_factory=dict)
    used: dict[str, list[ChangePoint]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def detect(self, y: np.ndarray, w: np.ndarray | None, period: int | None, *,
               penalty: float, noise_floor: float) -> list[ChangePoint]:
        """`changepoint.detect(y, w, period, ...)`, from the cache when the input is known."""
        key = series_key(y, w, period, penalty, noise_floor)
        found = self.known.get(key)
        if found is None:
            found = self.used.get(key)
        if found is None:
            self.misses += 1
            found = detect(y, w, period, penalty=penalty, noise_floor=noise_floor)
        else:
            self.hits += 1
        self.used[key] = found
        return found

    def summary(self) -> str:
        """E.g. ``12 series detected, 140 reused (input as already detected)``."""
        return f"{self.misses} series detected, {self.hits} reused (input as already detected)"

    def table(self) -> pa.Table:
        """This run's entries as a table of `CACHE_SCHEMA`."""
        keys = sorted(self.used)
        cps = [self.used[k] for k in keys]
        return pa.table({
            "key": keys,
            "idx": [[c.index for c in v] for v in cps],
            "value_before": [[c.value_before for c in v] for v in cps],
            "value_after": [[c.value_after for c in v] for v in cps],
            "score": [[c.score for c in v] for v in cps],
        }, schema=CACHE_SCHEMA)


def load(con: duckdb.DuckDBPyConnection) -> SeriesCache:
    """The cache the last run left in the warehouse (empty if none)."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? "
        "and table_name = ?", [SCHEMA, TABLE.split(".")[1]],
    ).fetchall()[0][0]
    if not exists:
        return SeriesCache()
    table = con.sql(f"select * from {TABLE}").to_arrow_table()
    known = {
        key: [ChangePoint(index=int(i), value_before=float(b), value_after=float(a),
                          score=float(s)) for i, b, a, s in zip(idx, before, after, score,
                                                                strict=True)]
        for key, idx, before, after, score in zip(
            *(table[c].to_pylist() for c in CACHE_SCHEMA.names), strict=True)
    }
    return SeriesCache(known=known)


def save(con: duckdb.DuckDBPyConnection, series: SeriesCache) -> None:
    """Replace the warehouse's cache with this run's entries."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.register("_th_series_cache", series.table())
    try:
        con.execute(f"create or replace table {TABLE} as select * from _th_series_cache")
    finally:
        con.unregister("_th_series_cache")
