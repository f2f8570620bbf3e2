"""`tracehouse lake compact`: merge each day's small batch files into one file, atomically.

A lake that lands every few minutes grows thousands of small files per dataset and day; every
reader pays per file (footers, row groups). Compaction rewrites the accepted files of one
``<dataset>/dt=<day>/`` folder as one file, ``compacted-<day>-<digest>.parquet``:

- **Counting stays exact.** Every row keeps its batch in a ``_batch_id`` column, so
  :func:`tracehouse.lake.lake_status` still counts each ledger batch's rows (the ledger itself,
  the record of what landed, is never rewritten). The merged file is registered (a ledger entry of
  source ``compaction`` and zero rows) before it becomes visible, so it is never taken for a
  producer's unregistered file.
- **Readers never see a day twice or not at all.** The new day folder is built aside, hidden
  (``.dt=<day>.compact-<id>``: the lake's readers glob ``dt=*``), holding the merged file plus a
  hard link of any file not merged; then one ``renameat2(RENAME_EXCHANGE)`` swaps it with the live
  folder. A glob sees either the old files or the merged one, never both or neither. A batch that
  lands in the old folder during the swap is linked into the new one right after (it is missing
  from a glob for that instant, never counted twice). Where the kernel has no RENAME_EXCHANGE
  (not Linux), the merged file is renamed into place and the originals removed after: a glob in
  between can see the day's rows twice (the warehouse's dedup by id makes that harmless there).
- **Never under a build.** It holds ``<lake>/.tracehouse-run.lock`` exclusively; every
  ``tracehouse run`` holds it shared for its whole run, so a compaction exits 75 (try again
  later) while any run on the lake is going, and a run waits for a compaction to finish.
- The warehouse reads the merged file once as a new file and finds every row identical to what
  it stored, so nothing downstream is rebuilt (macros/incremental/loaded.sql).

Quarantine files are left alone (they are few and read rarely).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracehouse.contract import DATASETS
from tracehouse.lake import (
    LEDGER_DIR,
    BatchReport,
    _write_ledger,
    write_parquet_atomic,
)
from tracehouse.runlock import lake_files_lock

BATCH_COLUMN = "_batch_id"
COMPACTION_SOURCE = "compaction"
COMPACTED_PREFIX = "compacted-"

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass
class CompactionReport:
    """One day folder compacted: which files went in, what came out, how many rows."""

    dataset: str
    dt: str
    inputs: list[Path]
    output: Path
    rows: int
    batches: int
    atomic_swap: bool


def _registered(lake: Path, dataset: str) -> set[str]:
    root = lake / LEDGER_DIR / dataset
    return {p.stem for p in root.glob("*.parquet")} if root.is_dir() else set()


def _read_with_batch(path: Path, schema: pa.Schema) -> pa.Table:
    """The file's rows, cast to the contract schema, with their batch id (kept if compacted)."""
    table = pq.read_table(path)
    if BATCH_COLUMN in table.column_names:
        batch = table.column(BATCH_COLUMN).combine_chunks()
        table = table.drop_columns([BATCH_COLUMN])
    else:
        batch = pa.array([path.stem] * table.num_rows, pa.string())
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays([*columns, batch], schema=schema.append(
        pa.field(BATCH_COLUMN, pa.string())))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def compact_day(
    lake: Path | str, dataset: str, dt: str, *, min_files: int = 2, now: datetime | None = None
) -> CompactionReport | None:
    """Merge the registered files of ``<dataset>/dt=<dt>`` into one; None when fewer than
    ``min_files`` are there. Unregistered files (a producer's, not adopted yet) stay as they are.
    """
    lake = Path(lake)
    spec = DATASETS[dataset]
    day_dir = lake / dataset / f"dt={dt}"
    registered = _registered(lake, dataset)
    inputs = sorted(p for p in day_dir.glob("*.parquet") if p.stem in registered)
    if len(inputs) < min_files:
        return None
    merged = pa.concat_tables([_read_with_batch(p, spec.schema) for p in inputs])
    digest = hashlib.sha256("\n".join(p.name for p in inputs).encode()).hexdigest()[:12]
    batch_id = f"{COMPACTED_PREFIX}{dt}-{digest}"
    # registered first: never visible as an unregistered file; zero rows of its own (every row
    # is counted under its original batch through _batch_id)
    report = BatchReport(dataset, batch_id, COMPACTION_SOURCE, 0, 0, 0)
    _write_ledger(lake, report, {dt: [0, 0]}, now or datetime.now(UTC))

    staging = lake / dataset / f".dt={dt}.compact-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        output = write_parquet_atomic(merged, staging / f"{batch_id}.parquet")
        merged_names = {p.name for p in inputs}
        for other in day_dir.glob("*.parquet"):  # landed meanwhile, or unregistered: carried over
            if other.name not in merged_names and other.name != output.name:
                os.link(other, staging / other.name)
        swapped = _exchange(day_dir, staging)
        if swapped:
            # `staging` now holds the old folder: carry over what landed during the swap
            for late in staging.glob("*.parquet"):
                target = day_dir / late.name
                if late.name not in merged_names and not target.exists():
                    os.link(late, target)
            shutil.rmtree(staging)
        else:
            final = day_dir / output.name
            output.replace(final)
            for path in inputs:
                path.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return CompactionReport(
        dataset=dataset,
        dt=dt,
        inputs=inputs,
        output=day_dir / output.name,
        rows=merged.num_rows,
        batches=len(set(merged.column(BATCH_COLUMN).to_pylist())),
        atomic_swap=swapped,
    )


def compact_lake(
    lake: Path | str,
    *,
    datasets: list[str] | None = None,
    days: list[str] | None = None,
    min_files: int = 2,
    now: datetime | None = None,
) -> list[CompactionReport]:
    """Compact every day folder of ``datasets`` (default: all) that has ``min_files`` or more
    registered batch files; ``days`` (YYYY-MM-DD) narrows it. Returns one report per folder.

    Never under a build: it holds the lake's files lock exclusively, which every
    ``tracehouse run`` on the lake holds shared, and raises
    :class:`~tracehouse.runlock.LakeBusyError` (exit code 75) at once when a run holds it.
    """
    lake = Path(lake)
    with lake_files_lock(lake, rewrite=True, what="the compaction"):
        return _compact_all(lake, datasets, days, min_files, now)


def _compact_all(lake: Path, datasets: list[str] | None, days: list[str] | None,
                 min_files: int, now: datetime | None) -> list[CompactionReport]:
    reports: list[CompactionReport] = []
    for dataset in datasets or list(DATASETS):
        root = lake / dataset
        if not root.is_dir():
            continue
        for day_dir in sorted(root.glob("dt=*")):
            dt = day_dir.name.removeprefix("dt=")
            if days and dt not in days:
                continue
            report = compact_day(lake, dataset, dt, min_files=min_files, now=now)
            if report is not None:
                reports.append(report)
    return reports
