"""Publish the marts: every relation of schema ``marts`` as ``<warehouse>/marts/<name>.parquet``.

All files of a run are written into a fresh folder ``<warehouse>/_publish/<run_id>/``; then the
``marts`` symlink is swapped to it in one atomic rename. A reader therefore sees either the whole
previous run or the whole new one, never a mix, and a run that fails before this step leaves the
previous files in place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from tracehouse.warehouse import MARTS_SCHEMA, warehouse_db

PUBLISH_DIR = "_publish"
MARTS_LINK = "marts"
KEEP_RUNS = 2


class PublishError(RuntimeError):
    """The marts could not be published; the previous publication is still in place."""


@dataclass
class Published:
    """What one publication wrote."""

    run_id: str
    folder: Path
    tables: dict[str, int]  # mart name -> rows


def mart_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the relations (tables and views) in the marts schema, sorted."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = ? ORDER BY table_name",
        [MARTS_SCHEMA],
    ).fetchall()
    return [r[0] for r in rows]


def published_folder(warehouse: Path | str) -> Path | None:
    """The folder the ``marts`` link points at now, or None before the first publication."""
    link = Path(warehouse) / MARTS_LINK
    return link.resolve() if link.exists() else None


def publish(warehouse: Path | str, run_id: str) -> Published:
    """Export every mart of the warehouse to Parquet and make them visible together."""
    warehouse = Path(warehouse)
    db = warehouse_db(warehouse)
    if not db.is_file():
        raise PublishError(f"no warehouse database at {db}: build it first")
    folder = warehouse / PUBLISH_DIR / run_id
    if folder.exists():
        raise PublishError(f"{folder} exists already: run ids must be unique")
    staging = folder.with_name(f".{run_id}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tables: dict[str, int] = {}
    try:
        con = duckdb.connect(str(db), read_only=True)
        try:
            con.execute("SET TimeZone = 'UTC'")
            names = mart_tables(con)
            if not names:
                raise PublishError(f"the warehouse has no tables in schema {MARTS_SCHEMA!r}")
            for name in names:
                target = staging / f"{name}.parquet"
                con.execute(
                    f'COPY "{MARTS_SCHEMA}"."{name}" TO \'{target}\' '
                    "(FORMAT parquet, COMPRESSION zstd)"
                )
                tables[name] = con.execute(
                    f'SELECT count(*) FROM "{MARTS_SCHEMA}"."{name}"'
                ).fetchone()[0]  # type: ignore[index]
        finally:
            con.close()
        staging.replace(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_link(warehouse, folder)
    _prune(warehouse, keep=folder)
    return Published(run_id=run_id, folder=folder, tables=tables)


def _swap_link(warehouse: Path, folder: Path) -> None:
    link = warehouse / MARTS_LINK
    if link.exists() and not link.is_symlink():
        # A real folder from elsewhere: keep it, out of the way, rather than delete it.
        link.replace(warehouse / PUBLISH_DIR / f"preexisting-{folder.name}")
    tmp_link = warehouse / f".{MARTS_LINK}.{folder.name}.tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(Path(PUBLISH_DIR) / folder.name, target_is_directory=True)
    tmp_link.replace(link)  # atomic on POSIX: readers see the old or the new folder


def _prune(warehouse: Path, keep: Path) -> None:
    runs = sorted(
        (
            p
            for p in (warehouse / PUBLISH_DIR).iterdir()
            if p.is_dir() and not p.name.startswith(".")
        ),
        key=lambda p: p.stat().st_mtime,
    )
    for old in runs[:-KEEP_RUNS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
