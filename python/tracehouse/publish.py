"""Publish the marts: every relation of schema ``marts`` as ``<warehouse>/marts/<name>.parquet``.

All files of a run go into a hidden ``<warehouse>/_publish/.<run_id>.partial/`` folder, which is
renamed to ``_publish/<run_id>/`` when whole; then the ``marts`` and ``marts.duckdb`` links are
swapped to it, each by one atomic rename (see :mod:`tracehouse.publication` for the layout and
what readers see). A run that fails or is killed before the swap leaves the previous publication
in place; its leftovers are removed at the next start.

A mart whose content did not change since the current publication (same columns, row count and
order-independent content hash, computed by DuckDB) is hard-linked from it instead of written
again, so an unchanged mart costs one scan and no write while the swap stays atomic.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    PublicationError,
    check_links,
    collect_garbage,
    current_folder,
    read_manifest,
    swap_links,
    write_views_db,
)
from tracehouse.warehouse import MARTS_SCHEMA, warehouse_db

__all__ = ["MARTS_LINK", "PUBLISH_DIR", "PublishError", "Published", "publish"]

# Event tables the trace viewer shows next to the marts (small: one row per feedback / label).
STAGING_TABLES = ("stg_lake__feedback", "stg_lake__annotations")
STAGING_SCHEMA = "staging"


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


def publish(
    warehouse: Path | str,
    run_id: str,
    *,
    extra_tables: dict[str, pa.Table] | None = None,
    link_unchanged: bool = True,
) -> Published:
    """Export every mart of the warehouse to Parquet and make them visible together.

    ``extra_tables`` are published next to the marts (the runs record). Marts that are tables
    and did not change since the current publication are hard-linked from it
    (``link_unchanged``); views are always written, since comparing them costs their build.
    """
    warehouse = Path(warehouse)
    db = warehouse_db(warehouse)
    if not db.is_file():
        raise PublishError(f"no warehouse database at {db}: build it first")
    check_links(warehouse)
    root = warehouse / PUBLISH_DIR
    folder = root / run_id
    if folder.exists():
        raise PublishError(f"{folder} exists already: run ids must be unique")
    previous_folder = current_folder(warehouse)
    previous_manifest = (read_manifest(previous_folder) or {}) if previous_folder else {}
    previous_tables: dict[str, Any] = previous_manifest.get("tables", {})
    staging = root / f".{run_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / STAGING_DIR).mkdir(parents=True)
    result = Published(run_id=run_id, folder=folder, tables={})
    manifest_tables: dict[str, Any] = {}
    try:
        con = duckdb.connect(str(db), read_only=True)
        try:
            con.execute("SET TimeZone = 'UTC'")
            marts = _relations(con, MARTS_SCHEMA)
            if not marts:
                raise PublishError(f"the warehouse has no tables in schema {MARTS_SCHEMA!r}")
            jobs = [(name, f'"{MARTS_SCHEMA}"."{name}"', f"{name}.parquet", kind)
                    for name, kind in sorted(marts.items())]
            staged = _relations(con, STAGING_SCHEMA)
            jobs += [(name, f'"{STAGING_SCHEMA}"."{name}"', f"{STAGING_DIR}/{name}.parquet",
                      staged[name]) for name in STAGING_TABLES if name in staged]
            for name, relation, file, kind in jobs:
                prev_path = previous_folder / file if previous_folder else None
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
            "previous_run_id": previous_manifest.get("run_id"),
            "tables": manifest_tables,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
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
