"""The generator's two units of work, and the scheduler that runs them on several processes.

* :func:`simulate` (one **trace day**): simulate the day's traces, build its spans, feedback and
  annotations, add the ~1% redeliveries, and split each dataset's rows by ingest day, each part
  ordered by event day (:class:`Part`).
* :func:`write_day` (one **ingest day**): per dataset, the parts that land that day (in
  trace-day order) become the lake writer's day files (:func:`day_files`), landed as one batch
  without per-row checks (the rows are valid by construction; tests validate every one), plus
  the malformed batches of ``--bad-rows``, which go through the validator.

A trace day depends only on (seed, day) and an ingest day's batch only on the parts of earlier
trace days, so the days can run on any process in any order once their inputs exist; the files
are the same byte for byte whatever the number of workers. A trace day simulated by the calling
process stays in its memory; parts are handed to a worker process as Arrow IPC files in a hidden
folder of the lake (read back memory-mapped, so the bytes are not copied again) and removed as
soon as the last batch that needs them is written.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeAlias

import numpy as np
import pyarrow as pa
from pyarrow import ipc

from tracehouse.generator.world import US_PER_DAY, US_PER_S, World, to_us

SOURCE: Final = "generator"
SPAN_LOOKBACK_DAYS: Final = 2  # spans: ingest delay, midnight straddlers, redelivery
DUPLICATE_SHARE: Final = 0.01
DATASETS: Final = ("spans", "feedback", "annotations")
MIN_TRACES_PER_WORKER: Final = 20_000  # below this a worker's start-up costs more than it saves
TMP_PREFIX: Final = ".generate-tmp-"
SLICE_RUN_ROWS: Final = 256  # rows per run below which a selection copies (filter) instead

# A part of one dataset landing on one ingest day: in this process, or a slice (path, offset,
# length, event days, delivery order) of an Arrow IPC file written by another process.
PartRef: TypeAlias = (
    "Part | tuple[str, int, int, tuple[tuple[int, int], ...], np.ndarray | None, bool]"
)


@dataclass(frozen=True)
class Plan:
    """Everything a unit of work needs (picklable, sent once to each worker)."""

    lake: Path
    world: World
    seed: int
    start: date
    end: date  # exclusive
    bad_rows: float
    volumes: tuple[tuple[date, int], ...]  # (from, traces per day), ascending

    @property
    def ingest_days(self) -> tuple[int, int]:
        """[first, last) ingest day written, as days since the Unix epoch."""
        return to_us(self.start) // US_PER_DAY, to_us(self.end) // US_PER_DAY

    def traces_per_day(self, day: date) -> int:
        """The volume in force on ``day``."""
        tpd = self.volumes[0][1]
        for since, volume in self.volumes:
            if since <= day:
                tpd = volume
        return tpd


@dataclass
class DayCounts:
    """Rows and batches one ingest day landed."""

    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DATASETS, 0))
    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DATASETS, 0))
    quarantined: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DATASETS, 0))
    batches: int = 0


# ------------------------------------------------------------------------- trace days


def with_duplicates(table: pa.Table, seed: int, dayk: int, salt: int) -> pa.Table:
    """Append ~1% of the rows again, redelivered a day (and up to 6 h) after their ingest."""
    if table.num_rows == 0:
        return table
    pick, later = _duplicates(table, seed, dayk, salt)
    dup = table.take(pa.array(pick))
    i = dup.schema.get_field_index("ingest_time")
    dup = dup.set_column(i, dup.schema.field(i),
                         pa.array(later, pa.int64()).view(dup.schema.field(i).type))
    return pa.concat_tables([table, dup])


def _duplicates(table: pa.Table, seed: int, dayk: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows delivered twice, their second ingest times in µs)."""
    rng = np.random.default_rng([seed, dayk, 81, salt])
    pick = np.nonzero(rng.random(table.num_rows) < DUPLICATE_SHARE)[0]
    ingest = _ingest_us(table)
    later = ingest[pick] + US_PER_DAY + (rng.random(len(pick)) * 6 * 3600 * US_PER_S).astype(
        np.int64)
    return pick, later


def _ingest_us(table: pa.Table) -> np.ndarray:
    col = table.column("ingest_time").cast(pa.int64())
    return np.asarray(col.to_numpy(), np.int64)


def by_ingest_day(table: pa.Table) -> dict[int, pa.Table]:
    """Split rows by the UTC day (as days since the Unix epoch) of their ingest_time."""
    days = _ingest_us(table) // US_PER_DAY
    uniq, counts = np.unique(days, return_counts=True)
    if len(uniq) == 1:
        return {int(uniq[0]): table}
    ordered = table.take(pa.array(np.argsort(days, kind="stable")))  # one copy, then slices
    return _slices(ordered, uniq, counts)


def _slices(ordered: pa.Table, uniq: np.ndarray, counts: np.ndarray) -> dict[int, pa.Table]:
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {int(d): ordered.slice(int(a), int(b - a))
            for d, a, b in zip(uniq, bounds[:-1], bounds[1:], strict=True)}


TIME_COLUMN: Final = {"spans": "event_time", "feedback": "event_time", "annotations": "label_time"}


@dataclass(frozen=True)
class Part:
    """The rows of one trace day that land on one ingest day, ready for the day files.

    ``rows`` are ordered by the UTC day of the dataset's time column (stable: a day's rows keep
    their delivery order); ``days`` gives each event day's (days since the Unix epoch, rows) in
    that order. ``delivery`` maps the rows in delivery order (the trace's rows, then the
    redelivered ones) to their position in ``rows``, or is None when the orders agree: the
    malformed batches of ``--bad-rows`` copy rows by their delivery position. ``contiguous``
    parts are rows the two-step split delivers as one chunk (the writer combines them where the
    chunks matter), the others keep the table's chunks as that split does.
    """

    rows: pa.Table
    days: tuple[tuple[int, int], ...]
    delivery: np.ndarray | None = None
    contiguous: bool = False  # written as one chunk when its batch holds a single event day

    def day(self, eday: int) -> pa.Table | None:
        """This part's rows of event day ``eday`` (a slice, not a copy), or None."""
        offset = 0
        for d, n in self.days:
            if d == eday:
                return self.rows.slice(offset, n)
            offset += n
        return None


def _time_us(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).cast(pa.int64()).to_numpy(), np.int64)


def _day_counts(days: np.ndarray) -> tuple[tuple[int, int], ...]:
    uniq, counts = np.unique(days, return_counts=True)  # days are sorted: same order
    return tuple((int(d), int(c)) for d, c in zip(uniq, counts, strict=True))


def ingest_parts(table: pa.Table, seed: int, dayk: int, salt: int,
                 time_column: str = "event_time") -> dict[int, Part]:
    """``by_ingest_day(with_duplicates(table, ...))``, each part ordered by event day.

    Every row is copied once (the redelivered ones are taken chunk by chunk and get their new
    ingest times; then one filter per (ingest day, event day)), and every day file the writer
    makes of the parts holds exactly the rows, in exactly the order, of the two-step split
    followed by the lake writer's split by event day.
    """
    if table.num_rows == 0:
        return {}
    pick, later = _duplicates(table, seed, dayk, salt)
    ingest = np.concatenate([_ingest_us(table), later])
    idays = ingest // US_PER_DAY
    event = _time_us(table, time_column)
    edays = np.concatenate([event, event[pick]]) // US_PER_DAY  # floor, as a date32 cast
    if idays.min() == idays.max() and edays.min() == edays.max():
        # one day: no reordering, the part keeps the table's chunks, as the two-step split does
        return {int(idays[0]): Part(with_duplicates(table, seed, dayk, salt),
                                    ((int(edays[0]), len(edays)),))}
    span = int(edays.max() - edays.min()) + 1
    key = (idays - idays.min()) * span + (edays - edays.min())
    order = np.argsort(key, kind="stable")
    dup = _take_ascending(table, pick)
    i = dup.schema.get_field_index("ingest_time")
    dup = dup.set_column(i, dup.schema.field(i),
                         pa.array(later, pa.int64()).view(dup.schema.field(i).type))
    both = pa.concat_tables([table, dup])
    idays, edays, keys = idays[order], edays[order], key[order]
    out: dict[int, Part] = {}
    for iday, start, n in _runs(idays):
        stop = start + n
        sub = order[start:stop]
        delivery = None if bool(np.all(sub[1:] > sub[:-1])) else np.argsort(sub, kind="stable")
        # One selection per event day keeps the table's chunks (Arrow's take would first copy
        # the whole table into one chunk); the writer makes each day file contiguous anyway.
        rows = pa.concat_tables([_select(both, key == k) for k, _, _ in _runs(keys[start:stop])])
        out[iday] = Part(rows, _day_counts(edays[start:stop]), delivery, contiguous=True)
    return out


def _select(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """``table.filter(mask)``; without copying when the rows form few runs (a day's spans: a
    slot's traces are in time order, so only those near midnight land on another day)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    starts, stops = edges[0::2], edges[1::2]
    if len(starts) * SLICE_RUN_ROWS > int(mask.sum()):
        return table.filter(pa.array(mask))
    return pa.concat_tables([table.slice(a, b - a) for a, b in zip(starts, stops, strict=True)])


def _take_ascending(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table.take(rows)`` for ascending ``rows``, chunk by chunk (Arrow's take on a chunked
    table first copies every chunk into one)."""
    batches, first = [], 0
    for batch in table.to_batches():
        a, b = np.searchsorted(rows, [first, first + batch.num_rows])
        if b > a:
            batches.append(batch.take(pa.array(rows[a:b] - first)))
        first += batch.num_rows
    return pa.Table.from_batches(batches, schema=table.schema)


def _runs(sorted_days: np.ndarray) -> list[tuple[int, int, int]]:
    """(day, first row, rows) of each run of equal values in ``sorted_days``."""
    uniq, first, counts = np.unique(sorted_days, return_index=True, return_counts=True)
    return [(int(d), int(f), int(c)) for d, f, c in zip(uniq, first, counts, strict=True)]


def simulate(plan: Plan, day: date) -> dict[str, list[tuple[int, Part]]]:
    """Trace day ``day``: per dataset, the (ingest day, rows) parts that land in the range."""
    from tracehouse.generator.annotations import build_annotations
    from tracehouse.generator.feedback import build_feedback
    from tracehouse.generator.spans import build_spans
    from tracehouse.generator.traces import simulate_day
    from tracehouse.generator.traffic import traces_on

    world = plan.world
    tr = simulate_day(world, day, traces_on(plan.seed, day, plan.traces_per_day(day)))
    tables = {"feedback": build_feedback(world, tr), "annotations": build_annotations(world, tr)}
    if day >= plan.start - timedelta(days=SPAN_LOOKBACK_DAYS):
        tables["spans"] = build_spans(world, tr)
    s_day, e_day = plan.ingest_days
    out: dict[str, list[tuple[int, Part]]] = {}
    for salt, (dataset, table) in enumerate(tables.items()):
        parts = ingest_parts(table, plan.seed, day.toordinal(), salt, TIME_COLUMN[dataset])
        out[dataset] = [(iday, part) for iday, part in parts.items() if s_day <= iday < e_day]
    return out


# ------------------------------------------------------------------------- ingest days


def _day_of(iday: int) -> date:
    return date(1970, 1, 1) + timedelta(days=iday)


def _load(ref: PartRef) -> Part:
    if isinstance(ref, Part):
        return ref
    path, offset, length, days, delivery, contiguous = ref
    with pa.memory_map(path) as source:
        rows = ipc.open_file(source).read_all().slice(offset, length)
    return Part(rows, days, delivery, contiguous)


def day_files(parts: list[Part]) -> list[pa.Table]:
    """The ingest day's batch of one dataset (``parts`` in trace-day order) as the lake
    writer's day files, in day order: a batch of one event day as it is (its parts' chunks),
    else one contiguous table per event day (its rows in batch order)."""
    days = sorted({d for p in parts for d, _ in p.days})
    if len(days) == 1:
        return [pa.concat_tables([p.rows.combine_chunks() if p.contiguous else p.rows
                                  for p in parts])]
    files = []
    for eday in days:
        pieces = [t for t in (p.day(eday) for p in parts) if t is not None]
        if len(pieces) == 1 and all(c.num_chunks == 1 for c in pieces[0].columns):
            files.append(pieces[0])  # already one contiguous slice
        else:
            files.append(pa.concat_tables(pieces).combine_chunks())
    return files


def _delivery_order(parts: list[Part]) -> pa.Table:
    """The batch in delivery order (the rows the malformed batches are drawn from)."""
    tables = [p.rows if p.delivery is None else p.rows.take(pa.array(p.delivery))
              for p in parts]
    return pa.concat_tables(tables)


def write_day(plan: Plan, iday: int, parts: dict[str, list[PartRef]]) -> DayCounts:
    """Write ingest day ``iday``'s batch of each dataset (parts in trace-day order)."""
    from tracehouse.generator.faults import bad_batches
    from tracehouse.lake import write_batch, write_valid_days

    d = _day_of(iday)
    counts = DayCounts()
    stamp = datetime(d.year, d.month, d.day, 23, 59, 59, tzinfo=UTC)
    for dataset in DATASETS:
        refs = parts.get(dataset, [])
        if not refs:
            continue
        loaded = [_load(r) for r in refs]
        base = f"gen-s{plan.seed}-{d.isoformat()}-{dataset}"
        # The generated rows are valid by construction (tests/test_generator_parallel.py
        # validates every batch): they land without the per-row checks, already split by day;
        # only the malformed batches go through the validator.
        reports = [write_valid_days(plan.lake, dataset, day_files(loaded), source=SOURCE,
                                    batch_id=base, ingest_time=stamp)]
        if plan.bad_rows > 0:
            for suffix, t in bad_batches(dataset, _delivery_order(loaded), plan.bad_rows,
                                         plan.seed, d.toordinal()):
                reports.append(write_batch(plan.lake, dataset, t, source=SOURCE,
                                           batch_id=f"{base}-{suffix}", ingest_time=stamp))
        for r in reports:
            counts.received[dataset] += r.received
            counts.accepted[dataset] += r.accepted
            counts.quarantined[dataset] += r.quarantined
            counts.batches += 1
    return counts


# ------------------------------------------------------------------------- scheduling

_PLAN: Plan | None = None  # a worker's plan, set once by its initializer
_TMP: Path | None = None


def _init_worker(plan: Plan, tmp: Path) -> None:
    global _PLAN, _TMP
    _PLAN, _TMP = plan, tmp


def _simulate_to_files(day: date) -> dict[str, list[tuple[int, Any]]]:
    """:func:`simulate` in a worker: each dataset's parts saved as one Arrow IPC file."""
    assert _PLAN is not None and _TMP is not None
    return _save(_TMP, day, simulate(_PLAN, day))


def _save(tmp: Path, day: date,
          parts: dict[str, list[tuple[int, Part]]]) -> dict[str, list[tuple[int, Any]]]:
    out: dict[str, list[tuple[int, Any]]] = {}
    for dataset, items in parts.items():
        if not items:
            out[dataset] = []
            continue
        path = tmp / f"{dataset}-{day.isoformat()}-{uuid.uuid4().hex[:8]}.arrow"
        # The parts are slices of one table (or the table itself): save their union once.
        whole = pa.concat_tables([p.rows for _, p in items])
        with ipc.new_file(path, whole.schema) as writer:
            writer.write_table(whole)
        offset, refs = 0, []
        for iday, p in items:
            refs.append((iday, (str(path), offset, p.rows.num_rows, p.days, p.delivery,
                                p.contiguous)))
            offset += p.rows.num_rows
        out[dataset] = refs
    return out


def _save_path_of(new: list[PartRef], old: list[PartRef]) -> str:
    """The hand-over file of the parts of ``old`` held in memory, saved as ``new``."""
    for n, o in zip(new, old, strict=True):
        if isinstance(o, Part) and isinstance(n, tuple):
            return n[0]
    raise ValueError("no part was saved")


def _write_in_worker(iday: int, parts: dict[str, list[PartRef]]) -> DayCounts:
    assert _PLAN is not None
    return write_day(_PLAN, iday, parts)


def auto_workers(trace_days: int, traces_per_day: int) -> int:
    """Processes worth starting: one per idle core, fewer for a small job.

    Cores already busy (the 1-minute load average) are not counted: on a saturated machine a
    second process only adds its start-up and the hand-over files (measured: ~25% more CPU for
    the same lake), and the files are the same either way.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    idle = (cores or 1) - int(os.getloadavg()[0]) if hasattr(os, "getloadavg") else cores or 1
    by_size = (trace_days * traces_per_day) // MIN_TRACES_PER_WORKER
    return max(1, min(idle, by_size, trace_days))


def run(plan: Plan, trace_days: list[date], *, workers: int,
        on_day: Callable[[], object] | None = None) -> Iterator[DayCounts]:
    """Simulate ``trace_days`` and write every ingest day of the plan; yield each day's counts.

    ``workers`` = 1 runs everything in this process (writes on a thread, overlapping the next
    day's simulation); more starts ``workers - 1`` worker processes (spawned: no thread pool is
    forked) and this process works too, so no core waits while the workers start.
    """
    s_day, e_day = plan.ingest_days
    write_days = list(range(s_day, e_day))
    if workers <= 1:
        yield from _run_inline(plan, trace_days, on_day)
        return
    plan.lake.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=plan.lake))
    try:
        yield from _run_parallel(plan, trace_days, write_days, workers=workers, tmp=tmp,
                                 on_day=on_day)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_inline(plan: Plan, trace_days: list[date],
                on_day: Callable[[], object] | None) -> Iterator[DayCounts]:
    """One process: day D's batches are written by a thread while day D+1 is simulated (Arrow,
    DuckDB, Parquet and polars release the GIL), at most one day behind."""
    s_day, e_day = plan.ingest_days
    pending: dict[tuple[str, int], list[PartRef]] = {}
    writing: deque[Future[DayCounts]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="generate-write") as writer:
        for day in trace_days:
            for dataset, items in simulate(plan, day).items():
                for iday, part in items:
                    pending.setdefault((dataset, iday), []).append(part)
            if on_day:
                on_day()
            today = to_us(day) // US_PER_DAY
            if s_day <= today < e_day:
                while writing:  # the previous day is done before this one is handed over
                    yield writing.popleft().result()
                writing.append(writer.submit(write_day, plan, today,
                                             {ds: pending.pop((ds, today), [])
                                              for ds in DATASETS}))
        while writing:
            yield writing.popleft().result()


def _run_parallel(plan: Plan, trace_days: list[date], write_days: list[int], *, workers: int,
                  tmp: Path, on_day: Callable[[], object] | None) -> Iterator[DayCounts]:
    """The scheduler: ingest day D is written once every trace day up to D is simulated."""
    sims: deque[date] = deque(trace_days)
    writes: deque[int] = deque(write_days)
    sim_results: dict[date, dict[str, list[tuple[int, Any]]]] = {}
    users: dict[str, int] = {}  # IPC file -> batches still to read it
    running: dict[Future[Any], tuple[str, Any]] = {}
    last_day = to_us(trace_days[-1]) // US_PER_DAY if trace_days else -1

    def sims_done_through(iday: int) -> bool:
        return all(d in sim_results for d in trace_days if to_us(d) // US_PER_DAY <= iday)

    def ready_write(here: bool) -> int | None:
        """The next ingest day to write, if its parts exist and it is for this process
        (``here``: most of its rows were simulated here, so they need no hand-over file) or
        for a worker (the others)."""
        if not (writes and writes[0] <= last_day and sims_done_through(writes[0])):
            return None
        refs = [r for rs in parts_for(writes[0]).values() for r in rs]
        local = sum(r.rows.num_rows for r in refs if isinstance(r, Part))
        remote = sum(r[2] for r in refs if isinstance(r, tuple))
        if (local >= remote) == here:
            return writes.popleft()
        return None

    def parts_for(iday: int) -> dict[str, list[PartRef]]:
        out: dict[str, list[PartRef]] = {ds: [] for ds in DATASETS}
        for d in trace_days:
            if to_us(d) // US_PER_DAY > iday:
                break
            for dataset, items in sim_results[d].items():
                out[dataset].extend(ref for i, ref in items if i == iday)
        return out

    def sim_done(day: date, result: dict[str, list[tuple[int, Any]]]) -> None:
        sim_results[day] = result
        for items in result.values():
            for _, ref in items:
                if isinstance(ref, tuple):
                    users[ref[0]] = users.get(ref[0], 0) + 1
        if on_day:
            on_day()

    def handed_over(iday: int, parts: dict[str, list[PartRef]]) -> dict[str, list[PartRef]]:
        """``parts`` with the ones held by this process saved to a file for a worker."""
        out: dict[str, list[PartRef]] = {}
        for dataset, refs in parts.items():
            mine = [(iday, r) for r in refs if isinstance(r, Part)]
            if not mine:
                out[dataset] = refs
                continue
            saved = iter([ref for _, ref in _save(tmp, _day_of(iday), {dataset: mine})[dataset]])
            out[dataset] = [next(saved) if isinstance(r, Part) else r for r in refs]
            path = _save_path_of(out[dataset], refs)
            users[path] = users.get(path, 0) + len(mine)
        return out

    def taken(iday: int) -> dict[str, list[PartRef]]:
        """The parts of ingest day ``iday``, no longer held by the scheduler once written."""
        parts = parts_for(iday)
        for d, result in sim_results.items():
            sim_results[d] = {ds: [(i, r) for i, r in items if i != iday]
                              for ds, items in result.items()}
        return parts

    def write_done(parts: dict[str, list[PartRef]]) -> None:
        for refs in parts.values():
            for ref in refs:
                path = ref[0] if isinstance(ref, tuple) else None
                if path is None:
                    continue
                users[path] -= 1
                if users[path] == 0:
                    Path(path).unlink(missing_ok=True)

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers - 1, mp_context=ctx, initializer=_init_worker,
                             initargs=(plan, tmp)) as pool:
        while sims or writes or running:
            # Keep every worker busy (one task queued behind the running one), writes first.
            while len(running) < 2 * (workers - 1):
                iday = ready_write(here=False)
                if iday is not None:
                    parts = handed_over(iday, taken(iday))
                    running[pool.submit(_write_in_worker, iday, parts)] = ("write", parts)
                elif sims:
                    day = sims.popleft()
                    running[pool.submit(_simulate_to_files, day)] = ("sim", day)
                else:
                    break
            done = [f for f in running if f.done()]
            if not done:  # this process takes a task too, rather than wait
                iday = ready_write(here=True)
                if iday is not None:
                    parts = taken(iday)
                    yield write_day(plan, iday, parts)
                    write_done(parts)
                    continue
                if sims:
                    day = sims.popleft()
                    sim_done(day, dict(simulate(plan, day)))  # kept here until written
                    continue
                if writes and writes[0] > last_day:  # nothing more lands (cannot happen)
                    writes.clear()
                    continue
                done = list(wait(running, return_when=FIRST_COMPLETED).done)
            for f in done:
                kind, arg = running.pop(f)
                if kind == "sim":
                    sim_done(arg, f.result())
                else:
                    yield f.result()
                    write_done(arg)
