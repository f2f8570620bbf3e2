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
import re
import secrets
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


#: The column that identifies a row of `marts.fct_requests` (one row per trace).
ROW_KEY = "trace_id"


def _columns_of(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = 'marts' "
        "and table_name = 'fct_requests' order by ordinal_position").fetchall()]


def column_day_fingerprints(con: duckdb.DuckDBPyConnection, columns: Sequence[str],
                            days: tuple[date, date]) -> dict[tuple[date, str], str]:
    """Per UTC day of `event_time` in `days` (first, last) and per column of `columns`: rows
    and summed hashes of `(trace_id, column)` in `marts.fct_requests`, in one scan.

    With one row per trace, these pairs determine the day's rows projected on the columns, so
    two days with equal fingerprints of a query's columns give the query the same rows (a
    day whose trace ids repeat gets a fingerprint that matches nothing).
    """
    if not columns:
        return {}
    q = '"' + ROW_KEY + '"'
    sums = ", ".join(f'coalesce(sum(hash({q}, "{c}")::hugeint), 0)::varchar' for c in columns)
    lo, hi = days
    rows = con.execute(
        f"select cast(timezone('UTC', event_time) as date) as d, count(*), "
        f"count(distinct {q}), {sums} from marts.fct_requests "
        f"where event_time >= ?::date::timestamptz and event_time < ?::date::timestamptz "
        f"group by 1", [lo.isoformat(), (hi + timedelta(days=1)).isoformat()],
    ).fetchall()
    out: dict[tuple[date, str], str] = {}
    nonce = secrets.token_hex(16)
    for d, n, distinct, *hashes in rows:
        if d is None:
            continue
        for c, h in zip(columns, hashes, strict=True):
            out[(d, c)] = f"{n}:{h}" if n == distinct else f"repeated:{nonce}"
    return out


Causes = Callable[[], list[str]]


@dataclass
class EvidenceCache:
    """The suspected causes of the last run's changes, by change and window content.

    The window content is fingerprinted day by day: over the columns its query reads
    (:meth:`prepare`, then :meth:`key` with ``columns``), so that a late label that changes
    ``is_successful_task`` on an old day does not re-read the evidence of an error-rate change
    there; or, without ``columns``, over whole rows.
    """

    days: dict[date, str]
    window: tuple[timedelta, timedelta]
    known: dict[str, list[str]] = field(default_factory=dict)
    used: dict[str, list[str]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    con: duckdb.DuckDBPyConnection | None = None
    table_columns: list[str] | None = None
    column_days: dict[tuple[date, str], str] = field(default_factory=dict)
    _rows_read: bool = False

    def _span(self, change_at: datetime) -> list[date]:
        lo = (change_at - self.window[0]).astimezone(UTC).date()
        hi = (change_at + self.window[1]).astimezone(UTC).date()
        return [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]

    def columns_of(self, sql: str | None) -> list[str] | None:
        """The columns of `marts.fct_requests` that the query `sql` names (None: fingerprint
        whole rows: no table, or a table without `trace_id`)."""
        if sql is None:
            return []
        if self.table_columns is None:
            self.table_columns = (_columns_of(self.con) if self.con is not None
                                  and _exists(self.con, "marts.fct_requests") else [])
        if ROW_KEY not in self.table_columns:
            return None
        named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql))
        return [c for c in self.table_columns if c in named]

    def prepare(self, spans: Sequence[tuple[datetime, list[str] | None]]) -> None:
        """Fingerprint, in one scan, the columns and days the given changes' windows read
        (`(change_at, columns)`; columns None: whole rows)."""
        wanted: set[str] = set()
        days: list[date] = []
        for change_at, columns in spans:
            if columns is None:
                self._whole_rows()
                continue
            span = self._span(change_at)
            missing = [c for c in columns if any((d, c) not in self.column_days for d in span)]
            if missing:
                wanted.update(missing)
                days += span
        if wanted and self.con is not None:
            order = [c for c in (self.table_columns or []) if c in wanted]
            found = column_day_fingerprints(self.con, order, (min(days), max(days)))
            for d in set(days):
                for c in order:
                    self.column_days.setdefault((d, c), found.get((d, c), "-"))

    def _whole_rows(self) -> None:
        if not self._rows_read and self.con is not None:
            self.days = day_fingerprints(self.con)
        self._rows_read = True

    def key(self, metric: str, segment_key: str, change_at: datetime,
            parts: Sequence[Any], columns: Sequence[str] | None = None) -> str:
        """The hash of a change, its ranking inputs and the days its window reads: over the
        `columns` its query names (see :meth:`prepare`), or whole rows (None)."""
        span = self._span(change_at)
        if columns is None:
            self._whole_rows()
            content: list[Any] = [self.days.get(d, "-") for d in span]
        else:
            self.prepare([(change_at, list(columns))])
            content = [sorted(columns),
                       [[self.column_days.get((d, c), "-") for c in columns] for d in span]]
        digest = hashlib.sha256(evidence_digest().encode())
        digest.update(repr((metric, segment_key, change_at.astimezone(UTC).isoformat(),
                            list(parts), content)).encode())
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
    """The evidence cache the last run left; the content of `marts.fct_requests` is
    fingerprinted through `con` when a key needs it."""
    out = EvidenceCache(days={}, window=window, con=con)
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
