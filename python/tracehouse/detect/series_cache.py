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

The suspected causes of a change are read from the traces of its window (three days either
side, `detect.evidence`): most of a run's detection time. :class:`EvidenceCache` keeps them
keyed by the change (metric, segment, time), its candidate versions and the content of the
days its window reads (a per-day fingerprint of `marts.fct_requests`: rows and an
order-independent hash of every column, one DuckDB scan per run), so a change whose window no
build touched is not read again.

Both caches live in the warehouse database (``detect.series_cache``, ``detect.evidence_cache``,
not published) and hold the entries of the last run only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from tracehouse.detect.changepoint import ChangePoint, detect

SCHEMA = "detect"
TABLE = f"{SCHEMA}.series_cache"
EVIDENCE_TABLE = f"{SCHEMA}.evidence_cache"
#: The modules whose code decides a change's suspected causes.
EVIDENCE_MODULES = ("evidence.py", "attribution.py")
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


@cache
def evidence_digest() -> str:
    """A digest of the attribution code's source."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in EVIDENCE_MODULES:
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


def _exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? "
        "and table_name = ?", [schema, name],
    ).fetchall()[0][0])


def day_fingerprints(con: duckdb.DuckDBPyConnection) -> dict[date, str]:
    """Per UTC day of `event_time`: rows and summed row hashes of `marts.fct_requests`."""
    if not _exists(con, "marts.fct_requests"):
        return {}
    rows = con.execute(
        "select cast(timezone('UTC', event_time) as date), count(*), "
        "coalesce(sum(hash(t)::hugeint), 0)::varchar "
        "from marts.fct_requests as t group by 1"
    ).fetchall()
    return {d: f"{n}:{h}" for d, n, h in rows if d is not None}


Causes = Callable[[], list[str]]


@dataclass
class EvidenceCache:
    """The suspected causes of the last run's changes, by change and window content."""

    days: dict[date, str]
    window: tuple[timedelta, timedelta]
    known: dict[str, list[str]] = field(default_factory=dict)
    used: dict[str, list[str]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def key(self, metric: str, segment_key: str, change_at: datetime,
            parts: Sequence[Any]) -> str:
        """The hash of a change, its ranking inputs and the days its window reads."""
        lo = (change_at - self.window[0]).astimezone(UTC).date()
        hi = (change_at + self.window[1]).astimezone(UTC).date()
        days = [self.days.get(lo + timedelta(days=i), "-") for i in range((hi - lo).days + 1)]
        digest = hashlib.sha256(evidence_digest().encode())
        digest.update(repr((metric, segment_key, change_at.astimezone(UTC).isoformat(),
                            list(parts), days)).encode())
        return digest.hexdigest()

    def causes(self, key: str, rank: Causes) -> list[str]:
        """The cached causes of ``key``, or ``rank()``'s."""
        found = self.known.get(key, self.used.get(key))
        if found is None:
            self.misses += 1
            found = rank()
        else:
            self.hits += 1
        self.used[key] = found
        return list(found)

    def summary(self) -> str:
        """E.g. ``causes of 3 changes read, 80 reused``."""
        return f"causes of {self.misses} change(s) read, {self.hits} reused"


def load_evidence(con: duckdb.DuckDBPyConnection,
                  window: tuple[timedelta, timedelta]) -> EvidenceCache:
    """The evidence cache the last run left, with today's per-day fingerprints."""
    out = EvidenceCache(days=day_fingerprints(con), window=window)
    if _exists(con, EVIDENCE_TABLE):
        for key, causes in con.execute(f"select key, causes from {EVIDENCE_TABLE}").fetchall():
            out.known[key] = list(causes)
    return out


def save_evidence(con: duckdb.DuckDBPyConnection, evidence: EvidenceCache) -> None:
    """Replace the warehouse's evidence cache with this run's entries."""
    con.execute(f"create schema if not exists {SCHEMA}")
    keys = sorted(evidence.used)
    table = pa.table({"key": keys, "causes": [evidence.used[k] for k in keys]},
                     schema=pa.schema([("key", pa.string()), ("causes", pa.list_(pa.string()))]))
    con.register("_th_evidence_cache", table)
    try:
        con.execute(f"create or replace table {EVIDENCE_TABLE} as select * from _th_evidence_cache")
    finally:
        con.unregister("_th_evidence_cache")


def load(con: duckdb.DuckDBPyConnection) -> SeriesCache:
    """The cache the last run left in the warehouse (empty if none)."""
    if not _exists(con, TABLE):
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
