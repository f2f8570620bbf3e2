"""`tracehouse lake expire`: retention classes applied to the lake, history of aggregates kept.

Per tenant (classes from the privacy policy, see :mod:`tracehouse.artifacts.policy`):

- ``spans``: a trace whose first span started before today - N days is dropped whole (every
  span row of it, whichever day file holds it, and its feedback and annotations), so no trace
  is ever cut in half and nothing of it is left behind;
- ``tier2_text``: rows older than N days lose their masked free text: ``error_message_redacted``
  and the ``*_redacted`` attribute keys of spans (``user_query_redacted``,
  ``rewritten_query_redacted``, ``args_redacted``), ``comment_redacted`` of feedback. Such a
  row is re-stamped with a new ``ingest_time`` (it is a new, redacted copy), so the next
  incremental build rebuilds its trace exactly as a full refresh would.

Before any row goes, the published aggregates of every day it touches (``metric_daily``,
``metric_hourly`` and every ``agg_*`` mart) are snapshotted from the warehouse into
``<lake>/_archive/<model>/dt=YYYY-MM-DD/archived.parquet`` (a day is archived once, its first
time). The models union these archived rows instead of recomputing those days (macro
``with_archived_days``), so a day's aggregates never change after its detail expires, on an
incremental build or a full refresh. The expired traces are also deleted from the warehouse's
stored tables, the base tables included (``base_lake__spans`` / ``__feedback`` /
``__annotations``, which keep every row they ever loaded), by trace id: exactly the rows that
left the lake, so an incremental build equals a full refresh afterwards. It holds the warehouse's
run lock and the lake's files lock (exclusive), so it never runs under a ``tracehouse run``.

Then each affected lake file is rewritten through a temporary file and an atomic rename, and the
ledger records what was expired (``tracehouse.lake.write_expiry_ledger``), so that
``tracehouse lake status`` still reconciles: received = accepted + quarantined + expired.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracehouse.artifacts.policy import Policy
from tracehouse.errors import TracehouseError
from tracehouse.lake import write_expiry_ledger, write_parquet_atomic

ARCHIVE_DIR: Final = "_archive"
# The published aggregates kept for expired days: model -> its day expression (UTC date).
ARCHIVED_MODELS: Final[dict[str, str]] = {
    "metric_daily": "cast(period_start as date)",
    "metric_hourly": "cast(period_start as date)",
    "agg_context_assembly": "trace_date",
    "agg_cost_per_successful_task": "trace_date",
    "agg_failure_taxonomy": "trace_date",
    "agg_stage_latency": "trace_date",
    "agg_route_stage_latency": "trace_date",
    "agg_version_quality": "trace_date",
    "agg_retrieval_quality": "trace_date",
    "agg_tool_reliability": "trace_date",
}
SPAN_TEXT_KEYS: Final = ("user_query_redacted", "rewritten_query_redacted", "args_redacted")


EXPIRED_DATASETS: Final = ("spans", "feedback", "annotations")
TEXT_COLUMN: Final[dict[str, str]] = {"spans": "error_message_redacted",
                                      "feedback": "comment_redacted"}


def _text_expires(dataset: str) -> str:
    """SQL over ``f`` (the rows) and ``c`` (their tenant's cutoffs): the row's tier-2 text
    expires (never for annotations, which hold no free text)."""
    if dataset not in TEXT_COLUMN:
        return "false"
    has_text = f"f.{TEXT_COLUMN[dataset]} is not null"
    if dataset == "spans":
        has_text += "".join(f" or f.attributes like '%\"{k}\"%'" for k in SPAN_TEXT_KEYS)
    return (f"c.text_cutoff is not null and cast(f.event_time as date) < c.text_cutoff "
            f"and ({has_text})")


def _rows_with_cutoffs(dataset: str, source: str) -> tuple[str, str]:
    """(FROM clause of ``source`` as ``f`` with its tenant's cutoffs as ``c``, tenant expr).
    Annotations carry no tenant: theirs is their expired trace's."""
    if dataset == "annotations":
        return (f"{source} as f left join (select trace_id, tenant_id as trace_tenant "
                "from expired) as e on f.trace_id = e.trace_id "
                "left join cutoffs as c on e.trace_tenant = c.tenant_id", "e.trace_tenant")
    return f"{source} as f left join cutoffs as c on f.tenant_id = c.tenant_id", "f.tenant_id"


class RetentionError(TracehouseError, RuntimeError):
    """Expiry cannot run safely (stale warehouse, missing warehouse, ...): nothing changed."""


@dataclass
class LakeExpiry:
    """What one ``lake expire`` did (or, dry run, would do)."""

    run_id: str
    expired_traces: int = 0
    expired_span_rows: int = 0
    expired_rows: dict[str, int] = field(default_factory=dict)  # dataset -> rows of expired traces
    text_expired_rows: dict[str, int] = field(default_factory=dict)  # dataset -> rows
    archived_days: list[str] = field(default_factory=list)  # newly archived
    files_rewritten: int = 0
    warehouse_rows_deleted: int = 0
    ledger: pa.Table | None = None


def _glob(lake: Path, dataset: str) -> str:
    return str(lake / dataset / "dt=*" / "*.parquet").replace("'", "''")


def _has_files(lake: Path, dataset: str) -> bool:
    return any((lake / dataset).glob("dt=*/*.parquet"))


def _cutoffs(con: duckdb.DuckDBPyConnection, lake: Path, policy: Policy, today: date) -> None:
    """Register `cutoffs(tenant_id, span_cutoff, text_cutoff)` for every tenant in the lake."""
    tenants: set[str] = set()
    for dataset in ("spans", "feedback"):
        if _has_files(lake, dataset):
            tenants |= {r[0] for r in con.execute(
                f"select distinct tenant_id from read_parquet('{_glob(lake, dataset)}') "
                "where tenant_id is not null").fetchall()}

    def cut(tenant: str, tier: str) -> date | None:
        days = policy.lake_days(tenant, tier)
        return None if days is None else today - timedelta(days=days)

    rows = sorted(tenants)
    table = pa.table({
        "tenant_id": pa.array(rows, pa.string()),
        "span_cutoff": pa.array([cut(t, "spans") for t in rows], pa.date32()),
        "text_cutoff": pa.array([cut(t, "tier2_text") for t in rows], pa.date32()),
        "span_class": pa.array([policy.lake_class(t, "spans") for t in rows], pa.string()),
        "text_class": pa.array([policy.lake_class(t, "tier2_text") for t in rows], pa.string()),
    })
    con.register("cutoffs", table)


def _check_fresh(wh: duckdb.DuckDBPyConnection, con: duckdb.DuckDBPyConnection, lake: Path
                 ) -> None:
    lake_max = con.sql(
        f"select max(ingest_time) from read_parquet('{_glob(lake, 'spans')}')").fetchall()[0]
    wh_max = wh.sql("select max(last_span_ingest_at) from marts.fct_requests").fetchall()[0]
    if lake_max and lake_max[0] is not None and (wh_max is None or wh_max[0] is None
                                                 or wh_max[0] < lake_max[0]):
        raise RetentionError(
            "the warehouse is older than the lake (spans landed after its last build): run "
            "`tracehouse run` first, so that the aggregates archived for expired days are "
            "complete. Nothing was expired."
        )


def _archive_days(wh: duckdb.DuckDBPyConnection, lake: Path, days: list[date]) -> list[str]:
    """Snapshot the published aggregates of ``days`` not archived yet; return the new days."""
    new: set[str] = set()
    tables = {r[0] for r in wh.execute(
        "select table_name from information_schema.tables where table_schema = 'marts'"
    ).fetchall()}
    for model, day_expr in ARCHIVED_MODELS.items():
        if model not in tables:
            continue
        for day in days:
            target = lake / ARCHIVE_DIR / model / f"dt={day.isoformat()}" / "archived.parquet"
            if target.exists():
                continue  # archived at an earlier expiry: that is the published history
            rows = wh.sql(f"select * from marts.{model} "
                          f"where {day_expr} = date '{day.isoformat()}'").to_arrow_table()
            if rows.num_rows == 0:
                continue
            write_parquet_atomic(rows, target)
            new.add(day.isoformat())
    return sorted(new)


def _purge_warehouse(wh_path: Path, con: duckdb.DuckDBPyConnection) -> int:
    """Delete the expired traces from every stored warehouse table except archived aggregates."""
    wh = duckdb.connect(str(wh_path))
    try:
        wh.register("expired_traces", con.sql("select trace_id from expired").to_arrow_table())
        tables = wh.execute(
            "select t.table_schema, t.table_name from information_schema.tables as t "
            "join information_schema.columns as c using (table_catalog, table_schema, table_name) "
            "where t.table_type = 'BASE TABLE' and c.column_name = 'trace_id'"
        ).fetchall()
        deleted = 0
        for schema, name in tables:
            if name in ARCHIVED_MODELS:
                continue
            n = wh.execute(f'delete from "{schema}"."{name}" where trace_id in '
                           "(select trace_id from expired_traces)").fetchall()[0]
            deleted += int(n[0]) if n else 0
        return deleted
    finally:
        wh.close()


def _rewrite_file(path: Path, con: duckdb.DuckDBPyConnection, dataset: str, now: datetime
                  ) -> tuple[pa.Table, pa.Table]:
    """The file's new rows, and its per-tenant counts (dropped, text expired)."""
    original = pq.read_table(path)
    # joins do not keep row order: carry the row index and sort on it
    con.register("f", original.append_column("__i", pa.array(range(original.num_rows),
                                                             pa.int64())))
    rows, tenant = _rows_with_cutoffs(dataset, "f")
    flags = con.sql(f"""
        select
            coalesce(f.trace_id in (select trace_id from expired), false) as is_dropped,
            coalesce({_text_expires(dataset)}, false) as is_text_expired,
            {tenant} as tenant_id
        from {rows}
        order by f.__i
    """).to_arrow_table()
    con.unregister("f")
    keep = pc.invert(flags.column("is_dropped"))
    text = pc.and_(flags.column("is_text_expired"), keep)
    table = original
    if dataset in TEXT_COLUMN:
        text_col = TEXT_COLUMN[dataset]
        table = table.set_column(
            table.schema.get_field_index(text_col), table.schema.field(text_col),
            pc.if_else(text, pa.scalar(None, pa.string()), table.column(text_col)))
    if dataset == "spans":
        con.register("a", pa.table({"attributes": table.column("attributes"), "t": text,
                                    "i": pa.array(range(table.num_rows), pa.int64())}))
        patch = "{" + ",".join(f'"{k}":null' for k in SPAN_TEXT_KEYS) + "}"
        attrs = con.sql(
            f"select case when t then cast(json_merge_patch(attributes, '{patch}') as varchar) "
            "else attributes end as attributes from a order by i").to_arrow_table()
        con.unregister("a")
        table = table.set_column(table.schema.get_field_index("attributes"),
                                 table.schema.field("attributes"), attrs.column(0))
    stamp = pa.scalar(now, table.schema.field("ingest_time").type)
    table = table.set_column(
        table.schema.get_field_index("ingest_time"), table.schema.field("ingest_time"),
        pc.if_else(text, stamp, table.column("ingest_time")))
    table = table.filter(keep).cast(original.schema)
    counts = pa.table({"tenant_id": flags.column("tenant_id"),
                       "dropped": pc.cast(flags.column("is_dropped"), pa.int64()),
                       "texted": pc.cast(text, pa.int64())})
    by_tenant = counts.group_by("tenant_id").aggregate([("dropped", "sum"), ("texted", "sum")])
    return table, by_tenant


def expire_lake(
    lake: Path | str,
    warehouse: Path | str,
    policy: Policy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> LakeExpiry:
    """Apply the policy's lake retention classes; keep the aggregates of the days they touch.

    Order: check the warehouse is current -> archive the touched days' aggregates -> rewrite
    the lake files (temp + rename each) -> record the ledger -> delete the expired traces from
    the warehouse's stored tables. Raises :class:`RetentionError` before changing anything
    when it cannot be done safely.
    """
    from tracehouse.warehouse import warehouse_db

    lake = Path(lake)
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    report = LakeExpiry(run_id=f"expire-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}")
    db = warehouse_db(warehouse)
    if not db.is_file():
        raise RetentionError(f"no warehouse at {db}: lake expire archives its aggregates first")
    from tracehouse.runlock import lake_files_lock, run_lock

    with run_lock(Path(warehouse), report.run_id, now.isoformat()), \
            lake_files_lock(lake, rewrite=True, what="the expiry"):
        return _expire(lake, db, policy, now=now, today=today, report=report, dry_run=dry_run)


def _expire(lake: Path, db: Path, policy: Policy, *, now: datetime, today: date,
            report: LakeExpiry, dry_run: bool) -> LakeExpiry:
    """:func:`expire_lake` under its locks."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        _cutoffs(con, lake, policy, today)
        if _has_files(lake, "spans"):
            con.execute(f"""
                create temp table expired as
                select s.trace_id, any_value(s.tenant_id) as tenant_id,
                    cast(min(s.event_time) as date) as trace_day
                from read_parquet('{_glob(lake, 'spans')}') as s
                join cutoffs as c on s.tenant_id = c.tenant_id
                group by s.trace_id
                having cast(min(s.event_time) as date) < min(c.span_cutoff)
            """)
        else:
            con.execute("create temp table expired (trace_id varchar, tenant_id varchar, "
                        "trace_day date)")
        report.expired_traces = con.sql("select count(*) from expired").fetchall()[0][0]

        # the files that change: any expired trace, or any row whose text expires
        # (an expired trace goes whole: its spans, and its feedback and annotations with them)
        affected: dict[str, list[str]] = {}
        for dataset in EXPIRED_DATASETS:
            if not _has_files(lake, dataset):
                continue
            rows, _ = _rows_with_cutoffs(
                dataset, f"read_parquet('{_glob(lake, dataset)}', filename = true)")
            affected[dataset] = [r[0] for r in con.execute(f"""
                select distinct f.filename
                from {rows}
                where f.trace_id in (select trace_id from expired)
                    or ({_text_expires(dataset)})
                order by 1
            """).fetchall()]

        wh = duckdb.connect(str(db), read_only=True)
        try:
            wh.execute("SET TimeZone = 'UTC'")
            if _has_files(lake, "spans"):
                _check_fresh(wh, con, lake)
            # the days whose aggregates freeze: every trace day touched (warehouse's own
            # trace_date where it knows the trace, the first span's day otherwise)
            wh.register("expired_ids", con.sql("select trace_id, trace_day from expired")
                        .to_arrow_table())
            days = {r[0] for r in wh.execute(
                "select coalesce(r.trace_date, e.trace_day) from expired_ids as e "
                "left join marts.fct_requests as r using (trace_id)").fetchall()}
            text_days = _text_trace_days(con, wh, lake, affected)
            all_days = sorted(days | text_days)
            if dry_run:
                report.archived_days = [d.isoformat() for d in all_days]
            else:
                report.archived_days = _archive_days(wh, lake, all_days)
        finally:
            wh.close()

        ledger_parts = []
        for dataset, files in affected.items():
            for name in files:
                path = Path(name)
                new_table, by_tenant = _rewrite_file(path, con, dataset, now)
                dt = path.parent.name.removeprefix("dt=")
                for row in by_tenant.to_pylist():
                    dropped, texted = int(row["dropped_sum"] or 0), int(row["texted_sum"] or 0)
                    if not dropped and not texted:
                        continue
                    tenant = row["tenant_id"]
                    ledger_parts.append({
                        "dataset": dataset, "batch_id": path.stem, "dt": dt,
                        "tenant_id": tenant, "expired": dropped, "text_expired": texted,
                        "spans_class": policy.lake_class(tenant, "spans") if dropped else None,
                        "tier2_text_class": (policy.lake_class(tenant, "tier2_text")
                                             if texted else None),
                    })
                    report.expired_rows[dataset] = report.expired_rows.get(dataset, 0) + dropped
                    if dataset == "spans":
                        report.expired_span_rows += dropped
                    report.text_expired_rows[dataset] = (
                        report.text_expired_rows.get(dataset, 0) + texted)
                if dry_run:
                    continue
                if new_table.num_rows:
                    write_parquet_atomic(new_table, path)
                else:
                    path.unlink()
                report.files_rewritten += 1
        if ledger_parts and not dry_run:
            report.ledger = write_expiry_ledger(lake, report.run_id, ledger_parts, now)
        if report.expired_traces and not dry_run:
            report.warehouse_rows_deleted = _purge_warehouse(db, con)
        return report
    finally:
        con.close()


def _text_trace_days(con: duckdb.DuckDBPyConnection, wh: duckdb.DuckDBPyConnection, lake: Path,
                     affected: dict[str, list[str]]) -> set[date]:
    """Trace days (warehouse trace_date) of spans and feedback whose tier-2 text expires."""
    ids: list[str] = []
    for dataset, files in affected.items():
        if not files:
            continue
        if not files or dataset not in TEXT_COLUMN:
            continue
        quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        ids += [r[0] for r in con.execute(f"""
            select distinct f.trace_id from read_parquet([{quoted}]) as f
            join cutoffs as c on f.tenant_id = c.tenant_id
            where {_text_expires(dataset)}
        """).fetchall()]
    if not ids:
        return set()
    wh.register("text_ids", pa.table({"trace_id": pa.array(sorted(set(ids)), pa.string())}))
    return {r[0] for r in wh.execute(
        "select distinct r.trace_date from marts.fct_requests as r "
        "join text_ids using (trace_id)").fetchall()}
