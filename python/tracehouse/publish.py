"""Publish the marts: every relation of schema ``marts`` as ``<warehouse>/marts/<name>.parquet``.

All files of a run go into a hidden ``<warehouse>/_publish/.<run_id>.partial/`` folder, which is
renamed to ``_publish/<run_id>/`` when whole; then the ``marts`` and ``marts.duckdb`` links are
swapped to it, each by one atomic rename (see :mod:`tracehouse.publication` for the layout and
what readers see). A run that fails or is killed before the swap leaves the previous publication
in place; its leftovers are removed at the next start.

The big day-partitioned marts (:data:`DAY_PARTITIONED`: ``fct_spans``, ``fct_requests``) are
published as a folder ``<name>.parquet/`` of one file per day, ``<YYYY-MM-DD>.parquet``
(``_undated.parquet`` for rows with no day). Only the days this run touched are written; every
other day's file is hard-linked from the current publication, so the cost follows the new data.
A day is rewritten when (:func:`days_to_write`):

- it holds a row of a trace with a base row stamped with a ``_loaded_at`` after the stamps the
  current publication recorded in its manifest (the build stamps every row it writes,
  macros/incremental/loaded.sql): for ``fct_requests`` (by ``trace_date``) a stamped span,
  feedback or label row; for ``fct_spans`` (by the span's own ``event_time`` day, so that a day's
  rows are selected by a range on a column of the span scan, read before any attribute is
  parsed) a stamped span of the trace, since feedback and labels do not change a span row, or
- its row count differs from the count the manifest recorded (retention deleted traces of it; a
  trace moved to another day; for ``fct_spans`` the count of its day column in the base span
  table, :data:`DAY_COUNTED_BY`, a one-column scan instead of the view's joins), or
- there is nothing to compare with: no previous manifest or day files, a full refresh, another
  dbt project or tracehouse code than the one recorded, other columns, base tables without
  stamps (a Spark build) or stamps older than the recorded ones (a rebuilt warehouse).

The days are written a few at a time (:func:`write_workers`). A ``fct_spans`` day touched by
stamped spans is written as its previous file's rows of untouched traces plus the view's rows of
the touched traces (:func:`_merge_days`), and written whole when its rows then disagree with the
mart's count of that day.

Any other mart whose content did not change since the current publication (same columns, row
count and order-independent content hash, computed by DuckDB) is hard-linked from it instead of
written again, so an unchanged mart costs one scan and no write while the swap stays atomic.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tracehouse.publication import (
    MANIFEST,
    MARTS_LINK,
    PUBLISH_DIR,
    STAGING_DIR,
    UNDATED,
    PublicationError,
    check_links,
    collect_garbage,
    current_folder,
    read_manifest,
    swap_links,
    write_views_db,
)
from tracehouse.resources import apply_limits
from tracehouse.warehouse import BASE_TABLES, MARTS_SCHEMA, warehouse_db

__all__ = ["DAY_PARTITIONED", "MARTS_LINK", "PUBLISH_DIR", "DaysAhead", "PublishError",
           "Published", "publish"]

# Event tables the trace viewer shows next to the marts (small: one row per feedback / label).
STAGING_TABLES = ("stg_lake__feedback", "stg_lake__annotations")
STAGING_SCHEMA = "staging"
# The marts published as one file per day: name -> day column (a DATE, or a timestamp whose
# UTC date is the day). Each row belongs to one trace (column trace_id), so the days a run touched
# follow from the traces it stamped: TOUCHED_BY maps them to days.
DAY_PARTITIONED: dict[str, str] = {"fct_spans": "event_time", "fct_requests": "trace_date"}
# Marts whose rows per day follow those of a base table: mart -> that table. Counting a view
# such as fct_spans evaluates its joins over every span (about half of an hourly publication at
# 10M spans); counting the base table's day column is a scan of one column. A day whose base
# count and stamps did not move is linked; the days written are counted in the mart itself.
DAY_COUNTED_BY: dict[str, str] = {"fct_spans": BASE_TABLES["spans"]}
# Marts whose touched days are rewritten as the previous day file minus the touched traces plus
# their new rows (_merge_days): a view whose evaluation costs more than reading its file back.
MERGED = frozenset({"fct_spans"})
# At most this many day files are written at once (see write_workers).
MAX_WRITE_WORKERS = 4
# mart -> (relation holding trace_id and the day column, the base tables whose stamps touch it).
# fct_spans' days come from the span base table itself: a view's day filter pushed into that
# scan is what keeps a day's export from evaluating every span.
TOUCHED_BY: dict[str, tuple[str, tuple[str, ...]]] = {
    "fct_spans": (BASE_TABLES["spans"], ("spans",)),
    "fct_requests": (f'"{MARTS_SCHEMA}"."fct_requests"', ("spans", "feedback", "annotations")),
}


class PublishError(PublicationError):
    """The marts could not be published; the previous publication is still in place."""


@dataclass
class Published:
    """What one publication wrote."""

    run_id: str
    folder: Path
    tables: dict[str, int]  # mart name -> rows
    linked: list[str] = field(default_factory=list)  # unchanged, hard-linked from the last one
    written: list[str] = field(default_factory=list)  # (re)written
    # Day-partitioned marts: the day files written, and how many were hard-linked.
    days_written: dict[str, list[str]] = field(default_factory=dict)
    days_linked: dict[str, int] = field(default_factory=dict)
    # Why every day was written (no previous manifest, full refresh, ...); None: touched days.
    all_days_because: str | None = None
    # Seconds the day-partitioned marts took, exported ahead in the background (DaysAhead).
    days_ahead_seconds: float | None = None
    # The other marts exported ahead and still as they were (checked by fingerprint here).
    ahead: list[str] = field(default_factory=list)


def mart_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the relations (tables and views) in the marts schema, sorted."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = ? ORDER BY table_name",
        [MARTS_SCHEMA],
    ).fetchall()
    return [r[0] for r in rows]


def _relations(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = ?",
        [schema],
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def published_folder(warehouse: Path | str) -> Path | None:
    """The folder the ``marts`` link points at now, or None before the first publication."""
    return current_folder(warehouse)


def fingerprint(con: duckdb.DuckDBPyConnection, relation: str) -> tuple[str, int]:
    """(content fingerprint, rows) of a relation: its columns, row count and summed row hashes.

    The sum of 64-bit row hashes is independent of row order and, unlike an xor, of duplicate
    pairs; with the column names and types it changes when any value, row or column does.
    """
    columns = con.execute(f"DESCRIBE {relation}").fetchall()
    rows, total = con.execute(
        f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR FROM {relation} AS t"
    ).fetchone()  # type: ignore[misc]
    schema = ",".join(f"{c[0]}:{c[1]}" for c in columns)
    return f"{rows}:{total}:{schema}", int(rows)


def build_fingerprint() -> str:
    """The dbt project's and tracehouse's code fingerprints (as ``tracehouse run`` records them)."""
    from tracehouse import changes
    from tracehouse.warehouse import project_dir

    return changes.build_fingerprint(project_dir())


def _export(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    target: Path,
    previous: Path | None,
    previous_entry: dict[str, Any] | None,
    *,
    compare: bool,
) -> tuple[dict[str, Any], bool]:
    """Write (or hard-link) one relation; return its manifest entry and whether it was linked."""
    if compare and previous is not None and previous_entry and previous.is_file():
        fp, rows = fingerprint(con, relation)
        if previous_entry.get("fingerprint") == fp:
            os.link(previous, target)
            return {"rows": rows, "fingerprint": fp}, True
        entry: dict[str, Any] = {"rows": rows, "fingerprint": fp}
    else:
        entry = {}
    con.execute(f"COPY {relation} TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    if not entry:
        rows = pq.read_metadata(target).num_rows
        entry = {"rows": rows}
        if compare:
            entry["fingerprint"] = fingerprint(con, relation)[0]
    return entry, False


def _stamps(con: duckdb.DuckDBPyConnection) -> dict[str, str] | None:
    """The newest ``_loaded_at`` of each base table (as text, exact), or None when the warehouse
    has no stamped base tables (a Spark build keeps them in its own catalog)."""
    names = _relations(con, "staging")
    if not all(t.split(".")[1] in names for t in BASE_TABLES.values()):
        return None
    columns = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.columns "
        "WHERE table_schema = 'staging' AND column_name = '_loaded_at'").fetchall()}
    if not all(t.split(".")[1] in columns for t in BASE_TABLES.values()):
        return None
    row = con.execute("SELECT " + ", ".join(
        f"(SELECT max(_loaded_at)::VARCHAR FROM {t})" for t in BASE_TABLES.values())).fetchone()
    assert row is not None
    return {name: value or "" for name, value in zip(BASE_TABLES, row, strict=True)}


def _schema(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    return ",".join(f"{c[0]}:{c[1]}" for c in con.execute(f"DESCRIBE {relation}").fetchall())


def _day_key(value: object) -> str:
    return UNDATED if value is None else str(value)


def _day_sql(column: str) -> str:
    """SQL for the day (``YYYY-MM-DD``, UTC: publish's connection is in UTC) of a day column."""
    return f"strftime(CAST(\"{column}\" AS DATE), '%Y-%m-%d')"


def day_counts(con: duckdb.DuckDBPyConnection, relation: str, day: str) -> dict[str, int]:
    """Rows per day (``YYYY-MM-DD``, or ``_undated``) of a relation: a count, no hash. Grouped by
    the DATE and formatted after the aggregation: formatting every row first cost more than the
    count itself (about half of a count of the 10M-span ``fct_spans``)."""
    rows = con.execute(
        f'SELECT CAST("{day}" AS DATE) AS d, count(*) FROM {relation} GROUP BY 1').fetchall()
    return {_day_key(d): int(n) for d, n in rows}


def touched_days(con: duckdb.DuckDBPyConnection, mart: str, since: dict[str, str]) -> set[str]:
    """The days of ``mart`` holding rows of traces with a base row stamped after ``since`` (per
    base table; which base tables count is :data:`TOUCHED_BY`)."""
    relation, bases = TOUCHED_BY[mart]
    touched = " UNION ".join(
        f"SELECT trace_id FROM {BASE_TABLES[name]} WHERE _loaded_at > ?::TIMESTAMPTZ"
        for name in bases)
    rows = con.execute(
        f"SELECT DISTINCT {_day_sql(DAY_PARTITIONED[mart])} FROM {relation} "
        f"WHERE trace_id IN ({touched})",
        [since[name] for name in bases],
    ).fetchall()
    return {_day_key(r[0]) for r in rows}


def days_to_write(
    con: duckdb.DuckDBPyConnection,
    previous_manifest: dict[str, Any],
    stamps: dict[str, str] | None,
    build: str | None,
    *,
    full_refresh: bool,
) -> tuple[dict[str, str] | None, str | None]:
    """The stamps (per base table) after which a build may have changed a day's rows since the
    previous publication (:func:`touched_days` turns them into days per mart; row-count changes
    are added by the caller); ``(None, why)`` when every day must be written."""
    if full_refresh:
        return None, "full refresh"
    if not previous_manifest:
        return None, "no previous publication"
    if build is None or previous_manifest.get("build") != build:
        return None, "the dbt project or tracehouse code changed"
    before = previous_manifest.get("stamps")
    if stamps is None:
        return None, "the warehouse has no stamped base tables"
    if not isinstance(before, dict) or set(before) != set(BASE_TABLES):
        return None, "the previous publication recorded no stamps"
    went_back = any(before[n] and not stamps[n] for n in BASE_TABLES) or any(con.execute(
        "SELECT ?::TIMESTAMPTZ < ?::TIMESTAMPTZ", [stamps[n], before[n]]).fetchone()[0]  # type: ignore[index]
        for n in BASE_TABLES if stamps[n] and before[n])
    if went_back:
        return None, "the base tables' stamps went back (a rebuilt warehouse)"
    if "fct_requests" not in _relations(con, MARTS_SCHEMA):
        return None, "no trace-to-day mapping"
    return {n: before[n] or "-infinity" for n in BASE_TABLES}, None


def _range_filter(column: str, kind: str, first: str, last: str) -> str:
    """A filter selecting the rows of the days ``first`` to ``last`` (inclusive) that DuckDB
    pushes into the scan (a range on the column itself, not a function of it), so exporting
    days of a view reads those days' rows only."""
    if kind.upper() == "DATE":
        if first == last:
            return f"\"{column}\" = DATE '{first}'"
        return f"\"{column}\" >= DATE '{first}' AND \"{column}\" <= DATE '{last}'"
    literal = "TIMESTAMPTZ" if "TIME ZONE" in kind.upper() else "TIMESTAMP"
    zone = "+00" if literal == "TIMESTAMPTZ" else ""
    return (f"\"{column}\" >= {literal} '{first} 00:00:00{zone}' AND "
            f"\"{column}\" < {literal} '{last} 00:00:00{zone}' + INTERVAL 1 DAY")


def _day_filter(column: str, kind: str, day: str) -> str:
    """:func:`_range_filter` for one day; ``IS NULL`` for the undated rows."""
    if day == UNDATED:
        return f'"{column}" IS NULL'
    return _range_filter(column, kind, day, day)


def day_runs(days: set[str]) -> list[list[str]]:
    """The dated ``days`` as runs of consecutive days, in order (``_undated`` is left out: its
    rows are selected by ``IS NULL``, not by a range)."""
    runs: list[list[str]] = []
    for d in sorted(days - {UNDATED}):
        if runs and (
                date.fromisoformat(d) - date.fromisoformat(runs[-1][-1])).days == 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


def write_workers(con: duckdb.DuckDBPyConnection) -> int:
    """How many day files a publication writes at once: DuckDB's thread count (the run's
    limit, :func:`tracehouse.resources.apply_limits`), at most :data:`MAX_WRITE_WORKERS`."""
    threads = con.execute("SELECT current_setting('threads')").fetchone()
    return max(1, min(MAX_WRITE_WORKERS, int(threads[0]) if threads else 1))


def _export_days(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    day: str,
    target: Path,
    *,
    days: set[str],
    workers: int | None = None,
) -> None:
    """Write the rows of each of ``days`` of ``relation`` as ``target/<day>.parquet``: one query
    per day, each reading only its day (:func:`_day_filter`). ``workers`` queries (by default
    :func:`write_workers`) run at once, each on its own cursor of the connection: DuckDB writes
    a file of one row group (a day of ``fct_requests``) on one thread, so one day at a time
    left the other cores idle. (One partitioned query per run of consecutive days measured no
    faster for ``fct_requests`` and twice as slow for ``fct_spans`` at 10M spans: the cost is
    the Parquet write of every row, not the scans.)"""
    kinds = {c[0]: str(c[1]) for c in con.execute(f"DESCRIBE {relation}").fetchall()}
    statements = [
        f"COPY (SELECT * FROM {relation} WHERE {_day_filter(day, kinds[day], d)}) "
        f"TO '{target / f'{d}.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
        for d in sorted(days)
    ]
    _run_all(con, statements, workers)


def _run_all(
    con: duckdb.DuckDBPyConnection, statements: list[str], workers: int | None = None
) -> None:
    """Run ``statements`` with ``workers`` (default :func:`write_workers`) at once, each worker
    on its own cursor of ``con``."""
    workers = min(len(statements), write_workers(con) if workers is None else workers)
    if workers <= 1:
        for statement in statements:
            con.execute(statement)
        return
    cursors = [con.cursor() for _ in range(workers)]
    try:
        for cursor in cursors:
            cursor.execute("SET TimeZone = 'UTC'")

        def write(i: int) -> None:
            for statement in statements[i::workers]:
                cursors[i].execute(statement)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(write, range(workers)))
    finally:
        for cursor in cursors:
            cursor.close()


def counts_of_days(
    con: duckdb.DuckDBPyConnection, relation: str, day: str, days: set[str]
) -> dict[str, int]:
    """Rows per day of ``relation`` on ``days`` only: one count per run of consecutive days
    (:func:`day_runs`) with the range filter a day's export uses, so counting the days a run
    writes reads those days' rows only."""
    kind = {c[0]: str(c[1]) for c in con.execute(f"DESCRIBE {relation}").fetchall()}[day]
    ranges = [_range_filter(day, kind, run[0], run[-1]) for run in day_runs(days)]
    if UNDATED in days:
        ranges.append(_day_filter(day, kind, UNDATED))
    counts = dict.fromkeys(days, 0)
    for where in ranges:
        rows = con.execute(f'SELECT CAST("{day}" AS DATE), count(*) FROM {relation} '
                           f"WHERE {where} GROUP BY 1").fetchall()
        counts.update({_day_key(d): int(n) for d, n in rows if _day_key(d) in days})
    return counts


def _merge_days(
    con: duckdb.DuckDBPyConnection,
    name: str,
    relation: str,
    target: Path,
    *,
    previous: Path,
    since: dict[str, str],
    days: set[str],
) -> None:
    """Write each of ``days`` as its previous file's rows of the traces no stamp touched plus
    the mart's rows of the touched traces (by trace: every row of a trace changes with it), so
    a day that a few late spans touched is not evaluated whole in the view. The previous rows
    are cast to the mart's column types, so the file's schema is a fresh write's. The caller
    reconciles each day's rows with the mart and writes a day whole when they differ."""
    if not days:
        return
    columns = con.execute(f"DESCRIBE {relation}").fetchall()
    day = DAY_PARTITIONED[name]
    kind = {str(c[0]): str(c[1]) for c in columns}[day]
    _, bases = TOUCHED_BY[name]
    touched = " UNION ".join(
        f"SELECT trace_id FROM {BASE_TABLES[base]} WHERE trace_id IS NOT NULL AND _loaded_at > "
        f"TIMESTAMPTZ '{since[base].replace(chr(39), chr(39) * 2)}'" for base in bases)
    kept = ", ".join(f'CAST("{c[0]}" AS {c[1]}) AS "{c[0]}"' for c in columns)
    statements = [
        f"COPY (SELECT {kept} FROM read_parquet('{previous / f'{d}.parquet'}') "
        f"WHERE trace_id NOT IN ({touched}) UNION ALL SELECT * FROM {relation} "
        f"WHERE {_day_filter(day, kind, d)} AND trace_id IN ({touched})) "
        f"TO '{target / f'{d}.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
        for d in sorted(days)
    ]
    _run_all(con, statements)


def _source_counts(
    con: duckdb.DuckDBPyConnection, name: str, day: str
) -> dict[str, int] | None:
    """Rows per day of the base table :data:`DAY_COUNTED_BY` names for ``name``, or None when
    the mart has none or the warehouse lacks it (a Spark build): then the mart is counted."""
    table = DAY_COUNTED_BY.get(name)
    if table is None:
        return None
    schema, relation = table.split(".")
    columns = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ?", [schema, relation]).fetchall()}
    if day not in columns:
        return None
    return day_counts(con, table, day)


def _export_by_day(
    con: duckdb.DuckDBPyConnection,
    name: str,
    relation: str,
    target: Path,
    *,
    previous: Path | None,
    previous_entry: dict[str, Any] | None,
    since: dict[str, str] | None,
) -> dict[str, Any]:
    """Publish one day-partitioned mart as the folder ``target``: the days to write are written,
    every other day is hard-linked from ``previous``. Returns its manifest entry."""
    day = DAY_PARTITIONED[name]
    schema = _schema(con, relation)
    source = _source_counts(con, name, day)
    # The mart's rows per day: all of them now, or (counted by a base table) the written days'
    # after the export below, the linked days' from their files.
    counts = day_counts(con, relation, day) if source is None else {}
    present = set(counts) if source is None else set(source)
    old_days: dict[str, Any] = (previous_entry or {}).get("days") or {}
    reusable = (since is not None and previous is not None and previous.is_dir()
                and (previous_entry or {}).get("schema") == schema
                and (previous_entry or {}).get("day_column") == day)

    def moved(d: str) -> bool:
        old = old_days.get(d, {})
        if source is not None:
            return "source_rows" not in old or old["source_rows"] != source[d]
        return bool(old.get("rows") != counts[d])

    write = set(present)
    if reusable:
        assert since is not None and previous is not None
        touched = touched_days(con, name, since)
        write = {d for d in present if d in touched or moved(d)
                 or old_days.get(d, {}).get("files") != [f"{d}.parquet"]
                 or not (previous / f"{d}.parquet").is_file()}
    target.mkdir()
    for d in sorted(present - write):
        assert previous is not None
        os.link(previous / f"{d}.parquet", target / f"{d}.parquet")
    merge: set[str] = set()
    if reusable and name in MERGED:
        assert since is not None and previous is not None
        merge = {d for d in write & touched if d != UNDATED
                 and old_days.get(d, {}).get("files") == [f"{d}.parquet"]
                 and (previous / f"{d}.parquet").is_file()}
        _merge_days(con, name, relation, target, previous=previous, since=since,
                    days=merge)
    _export_days(con, relation, day, target, days=write - merge)
    if source is not None:
        counts = counts_of_days(con, relation, day, write)
        counts.update({d: int(old_days[d]["rows"]) for d in present - write})
    # A merged day lost rows of traces no stamp touched (`lake expire`): write it whole.
    stale = {d for d in merge if pq.read_metadata(target / f"{d}.parquet").num_rows != counts[d]}
    for d in stale:
        (target / f"{d}.parquet").unlink()
    _export_days(con, relation, day, target, days=stale)
    if not present:  # an empty mart keeps its columns: one empty file
        con.execute(f"COPY (SELECT * FROM {relation} LIMIT 0) TO "
                    f"'{target / f'{UNDATED}.parquet'}' (FORMAT parquet, COMPRESSION zstd)")
    days: dict[str, Any] = {}
    for d in sorted(present | ({UNDATED} if not present else set())):
        files = sorted(p.name for p in target.glob(f"{d}.*parquet"))
        rows = sum(pq.read_metadata(target / f).num_rows for f in files)
        if rows != counts.get(d, 0):
            raise PublishError(f"{target.name}/{d}: {rows} rows published, "
                               f"{counts.get(d, 0)} in the warehouse")
        days[d] = {"rows": rows, "files": files, "linked": d not in write}
        if source is not None and d in source:
            days[d]["source_rows"] = source[d]
    return {
        "rows": sum(counts.values()),
        "day_column": day,
        "schema": schema,
        "days": days,
        "days_written": sorted(write),
    }


@dataclass
class _DayPlan:
    """What the day-partitioned marts of one publication are written from and into."""

    staging: Path
    previous_folder: Path | None
    previous_manifest: dict[str, Any]
    stamps: dict[str, str] | None = None
    since: dict[str, str] | None = None
    why: str | None = None
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # file -> manifest entry
    seconds: float = 0.0


def _connect(db: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    con = apply_limits(duckdb.connect(str(db), read_only=read_only))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # a run prints its own step lines
    return con


def _begin(warehouse: Path, run_id: str) -> _DayPlan:
    """Check the warehouse and the links; create this run's empty staging folder."""
    db = warehouse_db(warehouse)
    if not db.is_file():
        raise PublishError(f"no warehouse database at {db}: build it first")
    check_links(warehouse)
    root = warehouse / PUBLISH_DIR
    if (root / run_id).exists():
        raise PublishError(f"{root / run_id} exists already: run ids must be unique")
    previous_folder = current_folder(warehouse)
    previous_manifest = (read_manifest(previous_folder) or {}) if previous_folder else {}
    staging = root / f".{run_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / STAGING_DIR).mkdir(parents=True)
    return _DayPlan(staging, previous_folder, previous_manifest)


def _reuse(  # noqa: PLR0917
    con: duckdb.DuckDBPyConnection,
    relation: str,
    target: Path,
    previous: Path | None,
    previous_entry: dict[str, Any] | None,
    ahead: dict[str, Any],
) -> tuple[dict[str, Any], bool]:
    """A mart exported ahead: kept when its fingerprint is still the one exported, else written
    again (or linked) now."""
    fp, rows = fingerprint(con, relation)
    entry = {k: v for k, v in ahead.items() if k != "linked"}
    if entry.get("fingerprint") == fp and entry.get("rows") == rows:
        return entry, bool(ahead.get("linked"))
    target.unlink(missing_ok=True)
    return _export(con, relation, target, previous, previous_entry, compare=True)


def _export_day_marts(
    con: duckdb.DuckDBPyConnection, plan: _DayPlan, build: str | None, *, full_refresh: bool,
    ahead: bool = False,
) -> None:
    """Decide which days changed (:func:`days_to_write`) and export the day-partitioned marts
    into ``plan.staging`` (``ahead``: every mart that is a table, too); their manifest entries
    go to ``plan.entries``."""
    import time

    started = time.perf_counter()
    marts = _relations(con, MARTS_SCHEMA)
    if not marts:
        raise PublishError(f"the warehouse has no tables in schema {MARTS_SCHEMA!r}")
    plan.stamps = _stamps(con)
    plan.since, plan.why = days_to_write(con, plan.previous_manifest, plan.stamps, build,
                                         full_refresh=full_refresh)
    previous_tables: dict[str, Any] = plan.previous_manifest.get("tables", {})
    for name in sorted(set(DAY_PARTITIONED) & set(marts)):
        file = f"{name}.parquet"
        plan.entries[file] = _export_by_day(
            con, name, f'"{MARTS_SCHEMA}"."{name}"', plan.staging / file,
            previous=plan.previous_folder / file if plan.previous_folder else None,
            previous_entry=previous_tables.get(file), since=plan.since)
    if ahead:
        # The other marts that are tables, each with its fingerprint: publish re-exports one
        # whose fingerprint moved meanwhile (detection and the checks write some marts).
        for name in sorted(n for n, kind in marts.items()
                           if n not in DAY_PARTITIONED and kind == "BASE TABLE"):
            file = f"{name}.parquet"
            entry, linked = _export(
                con, f'"{MARTS_SCHEMA}"."{name}"', plan.staging / file,
                plan.previous_folder / file if plan.previous_folder else None,
                previous_tables.get(file), compare=True)
            plan.entries[file] = {**entry, "linked": linked}
    plan.seconds = time.perf_counter() - started


class DaysAhead:
    """The day-partitioned marts of a publication, exported in a background thread while the
    run goes on (detection and the mart checks: those write other tables, never these marts
    nor the base tables their days follow). :func:`publish` given it waits for the thread and
    takes its files; nothing is visible before that publish swaps the links, and
    :meth:`discard` removes the staging folder of a run that stops before publishing.

    The thread opens a read-write connection: DuckDB lets one process hold connections to a
    database file only with one configuration, and the steps running meanwhile write."""

    def __init__(self, warehouse: Path | str, run_id: str, *, full_refresh: bool = False,
                 build: str | None = None) -> None:
        self.warehouse, self.run_id = Path(warehouse), run_id
        self.build = build_fingerprint() if build is None else build
        self.plan: _DayPlan | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(full_refresh,),
                                        name="tracehouse-publish-days", daemon=True)
        self._thread.start()

    def _run(self, full_refresh: bool) -> None:
        try:
            self.plan = _begin(self.warehouse, self.run_id)
            con = _connect(warehouse_db(self.warehouse), read_only=False)
            try:
                _export_day_marts(con, self.plan, self.build, full_refresh=full_refresh,
                                  ahead=True)
            finally:
                con.close()
        except BaseException as exc:  # re-raised by wait(), in the publishing thread
            self.error = exc

    def wait(self) -> _DayPlan:
        """The finished export; raises what the thread raised."""
        self._thread.join()
        if self.error is not None:
            if self.plan is not None:
                shutil.rmtree(self.plan.staging, ignore_errors=True)
            raise self.error
        assert self.plan is not None
        return self.plan

    def discard(self) -> None:
        """Wait for the thread and remove the staging folder (the run stops unpublished)."""
        self._thread.join()
        if self.plan is not None:
            shutil.rmtree(self.plan.staging, ignore_errors=True)


def publish(
    warehouse: Path | str,
    run_id: str,
    *,
    extra_tables: dict[str, pa.Table] | None = None,
    link_unchanged: bool = True,
    full_refresh: bool = False,
    build: str | None = None,
    ahead: DaysAhead | None = None,
    before_swap: Callable[[], object] | None = None,
) -> Published:
    """Export every mart of the warehouse to Parquet and make them visible together.

    ``extra_tables`` are published next to the marts (the runs record). Marts that are tables
    and did not change since the current publication are hard-linked from it
    (``link_unchanged``); views are always written, since comparing them costs their build.
    The marts of :data:`DAY_PARTITIONED` are written day by day, only the days the build touched
    (all of them on a ``full_refresh``, or when ``build``, the fingerprint of the dbt project and
    tracehouse's code, differs from the one the current publication recorded; by default it is
    computed here). With ``ahead`` (:class:`DaysAhead`, started by the same run with the same
    arguments) those marts were exported already: their files and entries are taken from it.
    ``before_swap`` is called when the publication is whole, before it becomes current (a run
    waits there for work done meanwhile); what it raises stops the publication.
    """
    warehouse = Path(warehouse)
    if ahead is not None and (ahead.run_id != run_id or Path(ahead.warehouse) != warehouse):
        raise PublishError("the day files exported ahead belong to another run or warehouse")
    if ahead is None:
        if build is None:
            build = build_fingerprint()
        plan = _begin(warehouse, run_id)
    else:
        plan, build = ahead.wait(), ahead.build
    db = warehouse_db(warehouse)
    root = warehouse / PUBLISH_DIR
    folder = root / run_id
    staging = plan.staging
    previous_tables: dict[str, Any] = plan.previous_manifest.get("tables", {})
    result = Published(run_id=run_id, folder=folder, tables={})
    manifest_tables: dict[str, Any] = {}
    try:
        con = _connect(db, read_only=True)
        try:
            if ahead is None:
                _export_day_marts(con, plan, build,
                                  full_refresh=full_refresh or not link_unchanged)
            result.all_days_because = plan.why
            result.days_ahead_seconds = plan.seconds if ahead is not None else None
            marts = _relations(con, MARTS_SCHEMA)
            jobs = [(name, f'"{MARTS_SCHEMA}"."{name}"', f"{name}.parquet", kind)
                    for name, kind in sorted(marts.items())]
            staged = _relations(con, STAGING_SCHEMA)
            jobs += [(name, f'"{STAGING_SCHEMA}"."{name}"', f"{STAGING_DIR}/{name}.parquet",
                      staged[name]) for name in STAGING_TABLES if name in staged]
            for name, relation, file, kind in jobs:
                prev_path = plan.previous_folder / file if plan.previous_folder else None
                if file in plan.entries and name not in DAY_PARTITIONED:
                    entry, linked = _reuse(con, relation, staging / file, prev_path,
                                           previous_tables.get(file), plan.entries[file])
                    result.ahead.append(name)
                elif file in plan.entries:
                    entry = plan.entries[file]
                    linked = not entry["days_written"] and set(entry["days"]) == set(
                        (previous_tables.get(file) or {}).get("days") or {})
                    result.days_written[name] = entry["days_written"]
                    result.days_linked[name] = len(entry["days"]) - len(entry["days_written"])
                else:
                    entry, linked = _export(
                        con, relation, staging / file, prev_path, previous_tables.get(file),
                        compare=link_unchanged and kind == "BASE TABLE",
                    )
                entry["linked"] = linked
                manifest_tables[file] = entry
                (result.linked if linked else result.written).append(name)
                if not file.startswith(STAGING_DIR):
                    result.tables[name] = int(entry["rows"])
        finally:
            con.close()
        for name, table in (extra_tables or {}).items():
            pq.write_table(table, staging / f"{name}.parquet", compression="zstd")
            manifest_tables[f"{name}.parquet"] = {"rows": table.num_rows, "linked": False}
            result.tables[name] = table.num_rows
            result.written.append(name)
        manifest = {
            "run_id": run_id,
            "published_at": datetime.now(UTC).isoformat(),
            "previous_run_id": plan.previous_manifest.get("run_id"),
            # What the next publication compares with to find the days it must rewrite.
            "build": build,
            "stamps": plan.stamps,
            "tables": manifest_tables,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if before_swap is not None:
            before_swap()
        staging.replace(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The views point at the folder's final path, so they are written after the rename; the
    # folder is not current until the links swap below.
    write_views_db(folder)
    swap_links(warehouse, folder)
    collect_garbage(warehouse)
    return result
