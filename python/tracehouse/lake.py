"""The lake: the one writer every landing path goes through, its quarantine and its ledger.

Layout (the contract's, plus a ledger of our own)::

    <lake>/<dataset>/dt=YYYY-MM-DD/<batch-id>.parquet              accepted rows, contract-exact
    <lake>/_quarantine/<dataset>/dt=YYYY-MM-DD/<batch-id>.parquet  rejected rows + reject_reason
                                        (+ _quarantined_at, _batch_id, _landing_source)
    <lake>/_quarantine/_originals/<dataset>/dt=.../<batch-id>.parquet
                                        a producer's own file that failed validation, kept whole
    <lake>/_ledger/<dataset>/<batch-id>.parquet                    one row per (batch, dt):
                                        source, received, accepted, quarantined, dropped columns

Every file becomes visible by an atomic rename of a hidden temporary file, so a reader sees a
batch whole or not at all. The ledger is written last: a batch with no ledger entry is either a
producer's own file (adopted by :func:`adopt_unregistered`) or an interrupted write.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import ipc

from tracehouse.contract import DATASETS, REJECT_REASON, DatasetSpec, validate_table
from tracehouse.contract.scratch import scratch
from tracehouse.contract.validate import plausible_window, render_as_text
from tracehouse.errors import TracehouseError

QUARANTINE_DIR = "_quarantine"
SPOOL_DIR = "_spool"  # rows a receiver acknowledged and has not landed yet (Arrow IPC files)
ORIGINALS_DIR = "_originals"
LEDGER_DIR = "_ledger"
EXPIRED_LEDGER_DIR = "_ledger_expired"  # rows removed by retention (tracehouse.retention)
UNREGISTERED_SOURCE = "unregistered"

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string()),
        pa.field("batch_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("dt", pa.string()),
        pa.field("received", pa.int64()),
        pa.field("accepted", pa.int64()),
        pa.field("quarantined", pa.int64()),
        pa.field("dropped_columns", pa.list_(pa.string())),
        pa.field("written_at", pa.timestamp("us", tz="UTC")),
    ]
)

_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class LakeError(TracehouseError, ValueError):
    """A request the lake cannot carry out (unknown dataset, bad batch id, ...)."""


@dataclass
class BatchReport:
    """What one call of :func:`write_batch` landed."""

    dataset: str
    batch_id: str
    source: str
    received: int
    accepted: int
    quarantined: int
    dropped_columns: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    reject_reasons: dict[str, int] = field(default_factory=dict)


def new_batch_id(source: str, now: datetime | None = None) -> str:
    """A unique, sortable batch id: ``<source>-<UTC time>-<random>``."""
    now = now or datetime.now(UTC)
    return f"{source}-{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"


def dataset_spec(dataset: str) -> DatasetSpec:
    """The contract spec of ``dataset``, or a :class:`LakeError` naming the known ones."""
    try:
        return DATASETS[dataset]
    except KeyError:
        known = sorted(DATASETS)
        raise LakeError(f"unknown dataset {dataset!r}; expected one of {known}") from None


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` through a hidden temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _split_by_day(table: pa.Table, column: str) -> Iterator[tuple[str, pa.Table]]:
    """Yield (YYYY-MM-DD, rows) for each UTC date of ``column``, in date order.

    The UTC date is Arrow's timestamp -> date32 cast (exact integer arithmetic, floor for
    instants before 1970, any year a timestamp can hold); one stable sort splits the batch and
    rows keep their order within a day.
    """
    if table.num_rows == 0:
        return
    days = table.column(column).combine_chunks().cast(pa.date32()).cast(pa.int32())
    unique = sorted(pc.unique(days).to_pylist())
    if len(unique) == 1:
        yield _day_name(unique[0]), table
        return
    # One contiguous copy (an Arrow take on a chunked table concatenates the chunks anyway),
    # reordered only when the days are not already in order.
    table = table.combine_chunks()
    if pc.any(pc.less(days[1:], days[:-1])).as_py():
        table = table.take(pc.sort_indices(days))  # stable: rows keep their order within a day
    counts = {c["values"]: c["counts"] for c in pc.value_counts(days).to_pylist()}
    start = 0
    for day in unique:
        yield _day_name(day), table.slice(start, counts[day])
        start += counts[day]


def _day_name(day: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).strftime("%Y-%m-%d")


def _quarantine_days(
    rejected: pa.Table, spec: DatasetSpec, fallback_day: str, ingest_time: datetime
) -> pa.Array:
    """The dt of each rejected row: its time column's date where it parses and lies in the
    plausible window, else the landing day (so no partition is named after the year 2500)."""
    if spec.time_column not in rejected.column_names:
        return pa.array([fallback_day] * rejected.num_rows, pa.string())
    since, until = plausible_window(ingest_time)
    with scratch(("r", rejected.select([spec.time_column]))) as con:
        col = '"' + spec.time_column + '"'
        days = con.sql(
            f"SELECT coalesce(strftime(t, '%Y-%m-%d'), '{fallback_day}') AS d FROM ("
            f"SELECT CASE WHEN TRY_CAST({col} AS TIMESTAMPTZ) BETWEEN "
            f"'{since.isoformat()}'::TIMESTAMPTZ AND '{until.isoformat()}'::TIMESTAMPTZ "
            f"THEN TRY_CAST({col} AS TIMESTAMPTZ) END AS t FROM r)"
        ).to_arrow_table()
    return days.column("d").combine_chunks()


def write_batch(
    lake: Path | str,
    dataset: str,
    table: pa.Table,
    *,
    source: str,
    batch_id: str | None = None,
    ingest_time: datetime | None = None,
) -> BatchReport:
    """Validate ``table`` and land it: accepted rows by day, rejected rows to the quarantine.

    ``ingest_time`` fills rows that have none and stamps the ledger (default: now); passing it
    together with ``batch_id`` makes the written files byte-for-byte reproducible.
    Returns the counts, which always reconcile: ``received == accepted + quarantined``.
    """
    lake = Path(lake)
    spec = dataset_spec(dataset)
    ingest_time = ingest_time or datetime.now(UTC)
    batch_id = batch_id or new_batch_id(source, ingest_time)
    if not _BATCH_ID.match(batch_id):
        raise LakeError(f"batch id {batch_id!r} must match {_BATCH_ID.pattern}")

    result = validate_table(table, spec, ingest_time=ingest_time)
    report = BatchReport(
        dataset=dataset,
        batch_id=batch_id,
        source=source,
        received=result.received_rows,
        accepted=result.accepted.num_rows,
        quarantined=result.rejected.num_rows,
        dropped_columns=result.dropped_columns,
    )
    per_day = _land_accepted(lake, spec, batch_id, result.accepted, report)

    if result.rejected.num_rows:
        rejected = result.rejected
        landing_day = ingest_time.astimezone(UTC).strftime("%Y-%m-%d")
        days = _quarantine_days(rejected, spec, landing_day, ingest_time)
        n = rejected.num_rows
        rejected = rejected.append_column(
            "_quarantined_at", pa.array([ingest_time] * n, pa.timestamp("us", tz="UTC"))
        )
        rejected = rejected.append_column("_batch_id", pa.array([batch_id] * n, pa.string()))
        rejected = rejected.append_column("_landing_source", pa.array([source] * n, pa.string()))
        rejected = rejected.append_column("__dt", days)
        for day in sorted(pc.unique(days).to_pylist()):
            part = rejected.filter(pc.equal(rejected.column("__dt"), day)).drop_columns(["__dt"])
            path = lake / QUARANTINE_DIR / dataset / f"dt={day}" / f"{batch_id}.parquet"
            report.files.append(write_parquet_atomic(part, path))
            per_day.setdefault(day, [0, 0])[1] += part.num_rows
        counts = pc.value_counts(result.rejected.column(REJECT_REASON)).to_pylist()
        report.reject_reasons = {c["values"]: c["counts"] for c in counts}

    if not per_day:  # an empty batch is still recorded, so that a sender can see it arrived
        per_day[ingest_time.astimezone(UTC).strftime("%Y-%m-%d")] = [0, 0]
    _write_ledger(lake, report, per_day, ingest_time)
    return report


def write_valid_batch(
    lake: Path | str,
    dataset: str,
    table: pa.Table,
    *,
    source: str,
    batch_id: str,
    ingest_time: datetime,
) -> BatchReport:
    """Land a batch that is valid by construction, without the validator's per-row checks.

    For a producer whose rows the contract validator accepts whole by construction (the
    synthetic generator: its tests validate every batch it lands); the files and the ledger
    are exactly those :func:`write_batch` would write for the same table, every row accepted.
    See :func:`write_valid_days` for the checks that do run.
    """
    spec = dataset_spec(dataset)
    if table.schema.equals(spec.schema) and table.column(spec.time_column).null_count == 0:
        days = [part for _, part in _split_by_day(table, spec.time_column)]
    else:
        days = [table]  # refused below, with the reason
    return write_valid_days(lake, dataset, days, source=source, batch_id=batch_id,
                            ingest_time=ingest_time)


def write_valid_days(
    lake: Path | str,
    dataset: str,
    days: list[pa.Table],
    *,
    source: str,
    batch_id: str,
    ingest_time: datetime,
) -> BatchReport:
    """:func:`write_valid_batch` of a batch the producer has already split by day: ``days``
    holds one table per UTC day of the time column, in day order, each written as it is.

    Only table-level checks run, each cheap (no per-row rule): every table is exactly in the
    contract schema, its required columns and ``ingest_time`` hold no null, its time column lies
    within one day (after the previous table's), and every timestamp lies in the plausible
    window. A batch that fails one is a :class:`LakeError` (a producer bug, not bad data: such
    rows must go through :func:`write_batch`, which quarantines them with a reason), raised
    before anything is written.
    """
    lake = Path(lake)
    spec = dataset_spec(dataset)
    if not _BATCH_ID.match(batch_id):
        raise LakeError(f"batch id {batch_id!r} must match {_BATCH_ID.pattern}")
    since, until = plausible_window(ingest_time)
    names: list[str] = []
    for table in days:
        if not table.schema.equals(spec.schema):
            raise LakeError(f"{dataset} batch {batch_id} is not in the contract schema")
        if table.num_rows == 0:
            raise LakeError(f"{dataset} batch {batch_id} has an empty day")
        for name in (*spec.required_columns, "ingest_time"):
            if table.column(name).null_count:
                raise LakeError(f"{dataset} batch {batch_id} has nulls in {name}")
        for f in spec.schema:
            if pa.types.is_timestamp(f.type):
                lo, hi = pc.min_max(table.column(f.name)).values()
                if lo.is_valid and (lo.as_py() < since or hi.as_py() > until):
                    raise LakeError(
                        f"{dataset} batch {batch_id}: {f.name} outside the plausible window"
                    )
        first, last = pc.min_max(table.column(spec.time_column).cast(pa.date32())).values()
        name = first.as_py().strftime("%Y-%m-%d")
        if first != last or (names and name <= names[-1]):
            raise LakeError(f"{dataset} batch {batch_id}: days not split by "
                            f"{spec.time_column} in order")
        names.append(name)
    report = BatchReport(dataset=dataset, batch_id=batch_id, source=source,
                         received=sum(t.num_rows for t in days),
                         accepted=sum(t.num_rows for t in days), quarantined=0)
    per_day: dict[str, list[int]] = {}
    for name, table in zip(names, days, strict=True):
        path = lake / dataset / f"dt={name}" / f"{batch_id}.parquet"
        report.files.append(write_parquet_atomic(table.cast(spec.schema), path))
        per_day[name] = [table.num_rows, 0]
    if not per_day:  # an empty batch is still recorded, as write_batch does
        per_day[ingest_time.astimezone(UTC).strftime("%Y-%m-%d")] = [0, 0]
    _write_ledger(lake, report, per_day, ingest_time)
    return report


def _land_accepted(
    lake: Path, spec: DatasetSpec, batch_id: str, accepted: pa.Table, report: BatchReport
) -> dict[str, list[int]]:
    """Write the accepted rows, one file per day of the time column; {day: [accepted, 0]}."""
    per_day: dict[str, list[int]] = {}
    for day, part in _split_by_day(accepted, spec.time_column):
        path = lake / spec.name / f"dt={day}" / f"{batch_id}.parquet"
        report.files.append(write_parquet_atomic(part, path))
        per_day.setdefault(day, [0, 0])[0] += part.num_rows
    return per_day


def combine_tables(tables: list[pa.Table]) -> pa.Table:
    """One table of ``tables`` (several requests of one dataset), whatever their column types.

    Columns of the same type are concatenated as they are; a column that arrives with
    different types (a feedback ``value`` sent as ``1.0`` and as ``"4"``) is rendered as text
    in every table, so that the validator casts each value to the contract type or rejects
    that row alone with a reason. Never raises on a type conflict.
    """
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, set()).add(f.type)
    conflicting = {name for name, ts in types.items() if len(ts) > 1}
    fixed = []
    for table in tables:
        text = render_as_text(table.select([n for n in table.column_names if n in conflicting]))
        out = table
        for name in text.column_names:
            out = out.set_column(out.schema.get_field_index(name), name, text.column(name))
        fixed.append(out)
    return pa.concat_tables(fixed, promote_options="permissive")


def quarantine_batch(
    lake: Path | str,
    dataset: str,
    table: pa.Table,
    *,
    source: str,
    reason: str,
    batch_id: str | None = None,
    ingest_time: datetime | None = None,
) -> BatchReport:
    """Move a whole batch that could not be written to the quarantine, with ``reason``.

    For a batch that keeps failing in :func:`write_batch` (the writer gives up after a bounded
    number of tries): every row goes to ``_quarantine/<dataset>/dt=<landing day>/`` rendered
    as text (as is, if even that fails), and the ledger records it, so counts reconcile.
    """
    lake = Path(lake)
    dataset_spec(dataset)
    ingest_time = ingest_time or datetime.now(UTC)
    batch_id = batch_id or new_batch_id(source, ingest_time)
    if not _BATCH_ID.match(batch_id):
        raise LakeError(f"batch id {batch_id!r} must match {_BATCH_ID.pattern}")
    try:
        rows = render_as_text(table)
    except Exception:  # whatever broke the batch may break rendering too
        rows = table
    n = rows.num_rows
    rows = rows.append_column(REJECT_REASON, pa.array([reason] * n, pa.string()))
    rows = rows.append_column(
        "_quarantined_at", pa.array([ingest_time] * n, pa.timestamp("us", tz="UTC"))
    )
    rows = rows.append_column("_batch_id", pa.array([batch_id] * n, pa.string()))
    rows = rows.append_column("_landing_source", pa.array([source] * n, pa.string()))
    day = ingest_time.astimezone(UTC).strftime("%Y-%m-%d")
    path = lake / QUARANTINE_DIR / dataset / f"dt={day}" / f"{batch_id}.parquet"
    report = BatchReport(dataset, batch_id, source, n, 0, n, reject_reasons={reason: n})
    report.files.append(write_parquet_atomic(rows, path))
    _write_ledger(lake, report, {day: [0, n]}, ingest_time)
    return report


def spool_file_name(dataset: str, source: str) -> str:
    """A new spool file's name: ``<ns>-<random>.<dataset>.<source>.arrow`` (sorts by age)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.{dataset}.{source}.arrow"


def parse_spool_name(path: Path) -> tuple[str, str]:
    """(dataset, source) of a spool file, or a :class:`ValueError`."""
    parts = path.name.split(".")
    if len(parts) != 4 or parts[-1] != "arrow":
        raise ValueError(f"not a spool file name: {path.name}")
    return parts[1], parts[2]


def spool_status(lake: Path | str, spool_dir: Path | str | None = None) -> pa.Table:
    """Rows acknowledged by a receiver and not yet in the lake, per dataset and source.

    Columns: dataset, source, files, rows, oldest_age_s (seconds since the oldest file was
    spooled). A file that cannot be read counts as a file (its rows unknown, 0) under dataset
    ``unreadable``, so a broken spool is never reported as empty.
    """
    spool = Path(spool_dir) if spool_dir is not None else Path(lake) / SPOOL_DIR
    now = time.time()
    acc: dict[tuple[str, str], list[float]] = {}
    for path in sorted(spool.glob("*.arrow")) if spool.is_dir() else []:
        try:
            dataset, source = parse_spool_name(path)
            with pa.memory_map(str(path)) as source_file:
                reader = ipc.open_file(source_file)
                n = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        except (OSError, ValueError, pa.ArrowInvalid):
            dataset, source, n = "unreadable", path.name, 0
        age = max(0.0, now - path.stat().st_mtime)
        entry = acc.setdefault((dataset, source), [0, 0, 0.0])
        entry[0] += 1
        entry[1] += n
        entry[2] = max(entry[2], age)
    keys = sorted(acc)
    return pa.table(
        {
            "dataset": [k[0] for k in keys],
            "source": [k[1] for k in keys],
            "files": pa.array([int(acc[k][0]) for k in keys], pa.int64()),
            "rows": pa.array([int(acc[k][1]) for k in keys], pa.int64()),
            "oldest_age_s": pa.array([float(acc[k][2]) for k in keys], pa.float64()),
        }
    )


def _registered_batches(lake: Path, dataset: str) -> set[str]:
    ledger = lake / LEDGER_DIR / dataset
    if not ledger.is_dir():
        return set()
    return {p.stem for p in ledger.glob("*.parquet")}


def unregistered_files(lake: Path | str) -> list[tuple[str, Path]]:
    """Batch files in the lake (or kept as originals) that have no ledger entry, by dataset."""
    lake = Path(lake)
    found: list[tuple[str, Path]] = []
    for dataset in DATASETS:
        known = _registered_batches(lake, dataset)
        for root in (lake / dataset, lake / QUARANTINE_DIR / ORIGINALS_DIR / dataset):
            for path in sorted(root.glob("dt=*/*.parquet")):
                if path.stem not in known:
                    found.append((dataset, path))
    return found


def adopt_unregistered(lake: Path | str, *, now: datetime | None = None) -> list[BatchReport]:
    """Validate batch files that producers wrote straight into the lake, since the last call.

    A file that is contract-exact and wholly valid is registered as it is. Any other file is
    moved whole to ``_quarantine/_originals/`` and landed again through :func:`write_batch`
    under the same batch id: its valid rows return to the lake cast to the contract, the rest go
    to the quarantine with their reasons. No row is lost and none is counted twice.
    """
    lake = Path(lake)
    now = now or datetime.now(UTC)
    reports: list[BatchReport] = []
    for dataset, path in unregistered_files(lake):
        spec = DATASETS[dataset]
        batch_id = path.stem
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:  # not Parquet at all: keep it, say why
            original = _move_to_originals(lake, dataset, path)
            reports.append(_record_unreadable(lake, dataset, batch_id, original, exc, now=now))
            continue
        result = validate_table(table, spec, ingest_time=now)
        originals_root = lake / QUARANTINE_DIR / ORIGINALS_DIR
        is_original = originals_root in path.parents
        if (
            not is_original
            and result.rejected.num_rows == 0
            and not result.dropped_columns
            and table.schema.remove_metadata().equals(spec.schema.remove_metadata())
            and table.column(spec.time_column).null_count == 0
            and _single_day(table, spec) == path.parent.name.removeprefix("dt=")
        ):
            report = BatchReport(dataset, batch_id, UNREGISTERED_SOURCE, table.num_rows,
                                 table.num_rows, 0, files=[path])
            day = path.parent.name.removeprefix("dt=")
            _write_ledger(lake, report, {day: [report.accepted, 0]}, now)
            reports.append(report)
            continue
        if not is_original:
            _move_to_originals(lake, dataset, path)
        reports.append(
            write_batch(lake, dataset, table, source=UNREGISTERED_SOURCE, batch_id=batch_id,
                        ingest_time=now)
        )
    return reports


def _single_day(table: pa.Table, spec: DatasetSpec) -> str | None:
    days = pc.unique(pc.strftime(table.column(spec.time_column), format="%Y-%m-%d")).to_pylist()
    return days[0] if len(days) == 1 else None


def _move_to_originals(lake: Path, dataset: str, path: Path) -> Path:
    target = lake / QUARANTINE_DIR / ORIGINALS_DIR / dataset / path.parent.name / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    path.replace(target)
    return target


def _record_unreadable(
    lake: Path, dataset: str, batch_id: str, original: Path, exc: Exception, *, now: datetime
) -> BatchReport:
    report = BatchReport(dataset, batch_id, UNREGISTERED_SOURCE, 0, 0, 0, files=[original],
                         reject_reasons={f"unreadable file: {exc}": 1})
    _write_ledger(lake, report, {original.parent.name.removeprefix("dt="): [0, 0]}, now)
    return report


def _write_ledger(
    lake: Path, report: BatchReport, per_day: dict[str, list[int]], written_at: datetime
) -> None:
    """Record a batch: one ledger row per day with its accepted and quarantined counts."""
    days = sorted(per_day)
    n = len(days)
    ledger = pa.table(
        {
            "dataset": [report.dataset] * n,
            "batch_id": [report.batch_id] * n,
            "source": [report.source] * n,
            "dt": days,
            "received": [sum(per_day[d]) for d in days],
            "accepted": [per_day[d][0] for d in days],
            "quarantined": [per_day[d][1] for d in days],
            "dropped_columns": [report.dropped_columns] * n,
            "written_at": [written_at] * n,
        },
        schema=LEDGER_SCHEMA,
    )
    write_parquet_atomic(ledger, lake / LEDGER_DIR / report.dataset / f"{report.batch_id}.parquet")


EXPIRY_LEDGER_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("batch_id", pa.string()),
        pa.field("dt", pa.string()),
        pa.field("tenant_id", pa.string()),
        pa.field("expired", pa.int64()),  # rows removed
        pa.field("text_expired", pa.int64()),  # rows kept, tier-2 text removed
        pa.field("spans_class", pa.string()),
        pa.field("tier2_text_class", pa.string()),
        pa.field("expired_at", pa.timestamp("us", tz="UTC")),
    ]
)


def write_expiry_ledger(
    lake: Path | str, run_id: str, rows: list[dict[str, object]], expired_at: datetime
) -> pa.Table:
    """Record what one retention run removed: one row per (batch file, day, tenant).

    ``<lake>/_ledger_expired/<run_id>.parquet``; :func:`lake_status` adds ``expired`` so that
    received = accepted + quarantined + expired still holds.
    """
    cols = {f.name: [r.get(f.name) for r in rows] for f in EXPIRY_LEDGER_SCHEMA
            if f.name not in ("run_id", "expired_at")}
    table = pa.table(
        {"run_id": [run_id] * len(rows), **cols, "expired_at": [expired_at] * len(rows)},
        schema=EXPIRY_LEDGER_SCHEMA,
    )
    write_parquet_atomic(table, Path(lake) / EXPIRED_LEDGER_DIR / f"{run_id}.parquet")
    return table


def lake_status(lake: Path | str) -> pa.Table:
    """Rows per dataset, day and source: received (ledger), accepted and quarantined (files),
    expired (retention's ledger).

    ``reconciled`` is true where the ledger's received count equals the rows found in the
    accepted and quarantined files plus the rows retention removed; a false row points at a
    missing or foreign file.
    """
    lake = Path(lake)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        parts = []
        for dataset in DATASETS:
            for kind, root in (
                ("accepted", lake / dataset),
                ("quarantined", lake / QUARANTINE_DIR / dataset),
            ):
                if any(root.glob("dt=*/*.parquet")):
                    glob = str(root / "dt=*" / "*.parquet").replace("'", "''")
                    batch_of_file = "regexp_extract(filename, '([^/]+)\\.parquet$', 1)"
                    if any(root.glob("dt=*/compacted-*.parquet")):  # rows keep their batch
                        batch_of_file = f"coalesce(_batch_id, {batch_of_file})"
                    parts.append(
                        f"SELECT '{dataset}' AS dataset, '{kind}' AS kind, "
                        f"regexp_extract(filename, 'dt=([0-9-]+)', 1) AS dt, "
                        f"{batch_of_file} AS batch_id, "
                        f"count(*) AS n FROM read_parquet('{glob}', filename = true, "
                        f"union_by_name = true) GROUP BY ALL"
                    )
        files = " UNION ALL ".join(parts) if parts else (
            "SELECT NULL::VARCHAR AS dataset, NULL::VARCHAR AS kind, NULL::VARCHAR AS dt, "
            "NULL::VARCHAR AS batch_id, 0::BIGINT AS n WHERE FALSE"
        )
        ledger_glob = lake / LEDGER_DIR / "*" / "*.parquet"
        if any(lake.glob(f"{LEDGER_DIR}/*/*.parquet")):
            quoted = str(ledger_glob).replace("'", "''")
            ledger = f"SELECT * FROM read_parquet('{quoted}')"
        else:
            ledger = (
                "SELECT * FROM (SELECT NULL::VARCHAR AS dataset, NULL::VARCHAR AS batch_id, "
                "NULL::VARCHAR AS source, NULL::VARCHAR AS dt, 0::BIGINT AS received) WHERE FALSE"
            )
        if any(lake.glob(f"{EXPIRED_LEDGER_DIR}/*.parquet")):
            quoted = str(lake / EXPIRED_LEDGER_DIR / "*.parquet").replace("'", "''")
            expired = (f"SELECT dataset, batch_id, dt, sum(expired)::BIGINT AS expired "
                       f"FROM read_parquet('{quoted}') GROUP BY ALL")
        else:
            expired = ("SELECT NULL::VARCHAR AS dataset, NULL::VARCHAR AS batch_id, "
                       "NULL::VARCHAR AS dt, 0::BIGINT AS expired WHERE FALSE")
        sql = f"""
            WITH files AS ({files}),
            expired AS ({expired}),
            ledger AS (SELECT dataset, batch_id, source, dt, received FROM ({ledger})),
            by_batch AS (
                SELECT
                    coalesce(l.dataset, f.dataset) AS dataset,
                    coalesce(l.dt, f.dt) AS dt,
                    coalesce(l.source, '{UNREGISTERED_SOURCE}') AS source,
                    coalesce(l.batch_id, f.batch_id) AS batch_id,
                    coalesce(l.received, 0) AS received,
                    coalesce(f.accepted, 0) AS accepted,
                    coalesce(f.quarantined, 0) AS quarantined,
                    coalesce(x.expired, 0) AS expired,
                    l.batch_id IS NOT NULL AS registered
                FROM ledger AS l
                FULL OUTER JOIN (
                    SELECT dataset, dt, batch_id,
                        sum(n) FILTER (WHERE kind = 'accepted') AS accepted,
                        sum(n) FILTER (WHERE kind = 'quarantined') AS quarantined
                    FROM files GROUP BY ALL
                ) AS f USING (dataset, dt, batch_id)
                LEFT JOIN expired AS x
                    ON x.dataset = coalesce(l.dataset, f.dataset)
                    AND x.dt = coalesce(l.dt, f.dt)
                    AND x.batch_id = coalesce(l.batch_id, f.batch_id)
            )
            SELECT
                dataset, dt, source,
                count(*)::BIGINT AS batches,
                sum(received)::BIGINT AS received,
                sum(accepted)::BIGINT AS accepted,
                sum(quarantined)::BIGINT AS quarantined,
                sum(expired)::BIGINT AS expired,
                bool_and(registered)
                    AND sum(received) = sum(accepted) + sum(quarantined) + sum(expired)
                    AS reconciled
            FROM by_batch
            GROUP BY ALL
            ORDER BY dataset, dt, source
        """
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
