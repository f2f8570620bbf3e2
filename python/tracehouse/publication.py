"""The current publication, as every reader opens it: one helper, one whole run.

A publication is an immutable folder ``<warehouse>/_publish/<run_id>/`` holding

- ``<name>.parquet`` for every mart (the contract's ``<warehouse>/marts/<name>.parquet``): one
  file, or, for the big day-partitioned marts (``fct_spans``, ``fct_requests``), a folder of that
  name holding one file per day, ``<YYYY-MM-DD>.parquet`` (and ``_undated.parquet`` for rows with
  no day, or an empty mart). Flat names, no ``key=value`` folders: pyarrow, polars and Spark read
  the folder as one table; DuckDB reads ``read_parquet('<folder>/*.parquet')``. Use
  :func:`mart_path` / :func:`mart_glob` rather than building the path by hand,
- ``_staging/<name>.parquet`` for the event tables the trace viewer shows (feedback, labels),
- ``marts.duckdb``: a small DuckDB file of views over those files by absolute path,
- ``_manifest.json``: run id, time, rows and a content fingerprint of every table.

Two symlinks name the current one, each swapped by an atomic rename at publish:
``<warehouse>/marts -> _publish/<run_id>`` and ``<warehouse>/marts.duckdb ->
_publish/<run_id>/marts.duckdb``. A reader that opened ``marts.duckdb`` holds that publication's
file (and its DuckDB read lock) for as long as it keeps the connection, and every view it
queries points into that one folder, so it sees one whole run however many runs publish
meanwhile. Old folders are removed only when they are not among the last ``keep``, were
superseded more than ``grace`` seconds ago, and no process holds their ``marts.duckdb`` open.

The build database ``<warehouse>/tracehouse.duckdb`` belongs to the run alone; readers never
open it. Use :func:`connect`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracehouse.errors import NotPublishedError, TracehouseError

if TYPE_CHECKING:
    import duckdb

PUBLISH_DIR = "_publish"
MARTS_LINK = "marts"
MARTS_DB = "marts.duckdb"
MANIFEST = "_manifest.json"
STAGING_DIR = "_staging"
UNDATED = "_undated"  # the file of a day-partitioned mart's rows with no day
KEEP_PUBLICATIONS = int(os.environ.get("TRACEHOUSE_PUBLISH_KEEP", "2"))
GRACE_SECONDS = float(os.environ.get("TRACEHOUSE_PUBLISH_GRACE_S", "600"))


class PublicationError(TracehouseError, RuntimeError):
    """The warehouse folder is not in a state we can publish into (or read from)."""


def marts_db(warehouse: Path | str) -> Path:
    """``<warehouse>/marts.duckdb``: the file readers open (a link to the current publication)."""
    return Path(warehouse) / MARTS_DB


def current_folder(warehouse: Path | str) -> Path | None:
    """The folder of the current publication, resolved once, or None before the first one."""
    link = Path(warehouse) / MARTS_LINK
    if not link.exists():
        return None
    return link.resolve()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a publication folder, or None for a folder published before manifests."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def mart_path(warehouse: Path | str, name: str, *, folder: Path | None = None) -> Path:
    """``<publication>/<name>.parquet`` of the current publication (or of ``folder``): a file,
    or a folder of one file per day. Resolved once, so several marts come from one run."""
    base = folder if folder is not None else current_folder(warehouse)
    if base is None:
        raise NotPublishedError(
            f"nothing published in {warehouse}: run `tracehouse run` first")
    return base / f"{name}.parquet"


def mart_glob(path: Path) -> str:
    """What DuckDB's ``read_parquet`` reads for a published mart: the file, or
    ``<folder>/*.parquet`` for a mart published as one file per day."""
    return str(path / "*.parquet") if path.is_dir() else str(path)


def mart_rows(path: Path) -> int:
    """Rows of a published mart (file or folder), from the Parquet footers only."""
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    return sum(pq.read_metadata(f).num_rows for f in files)


def connect(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the current publication (UTC), for every reader.

    The marts are reachable as ``marts.<name>`` (the file's catalog is ``marts``) or just
    ``<name>``; the feedback and annotation events as ``stg_lake__feedback`` and
    ``stg_lake__annotations``. Keep the connection for as long as you need one consistent view:
    later publications do not change what it sees. Raises NotPublishedError (a
    FileNotFoundError) before the first publication.
    """
    import duckdb

    warehouse = Path(warehouse)
    db = marts_db(warehouse)
    if db.exists():
        con = duckdb.connect(str(db), read_only=True)
    else:
        folder = current_folder(warehouse)
        if folder is None or not folder.is_dir():
            raise NotPublishedError(
                f"nothing published in {warehouse} (no {MARTS_DB}): run `tracehouse run` first"
            )
        # A publication made before marts.duckdb existed: the same views, in memory.
        con = duckdb.connect()
        con.execute("ATTACH ':memory:' AS marts")
        con.execute("USE marts")
        for stmt in view_statements(folder):
            con.execute(stmt)
    con.execute("SET TimeZone = 'UTC'")
    return con


def connect_schema(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """Like :func:`connect`, but every relation is also ``marts.<name>`` in schema ``marts``.

    For code written against the build database's layout (``information_schema`` lookups by
    ``table_schema = 'marts'``, as the detection job does): an in-memory database attaches the
    current publication once, read-only, and names each of its relations in a ``marts`` schema.
    """
    import duckdb

    warehouse = Path(warehouse)
    db = marts_db(warehouse)
    if not db.exists():
        raise NotPublishedError(
            f"nothing published in {warehouse} (no {MARTS_DB}): run `tracehouse run` first"
        )
    con = duckdb.connect()
    con.execute(f"ATTACH {_quote(db)} AS publication (READ_ONLY)")
    con.execute("CREATE SCHEMA marts")
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'publication'"
    ).fetchall()]
    for name in names:
        con.execute(f'CREATE VIEW marts."{name}" AS SELECT * FROM publication."{name}"')
    con.execute("SET TimeZone = 'UTC'")
    return con


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def view_statements(folder: Path) -> list[str]:
    """``CREATE VIEW`` statements over every mart of a publication folder (a Parquet file, or a
    folder of one file per day)."""
    stmts = []
    for path in sorted(folder.glob("*.parquet")):
        stmts.append(
            f'CREATE OR REPLACE VIEW "{path.stem}" AS '
            f"SELECT * FROM read_parquet({_quote(Path(mart_glob(path.resolve())))})"
        )
    for path in sorted((folder / STAGING_DIR).glob("*.parquet")):
        stmts.append(
            f'CREATE OR REPLACE VIEW "{path.stem}" AS '
            f"SELECT * FROM read_parquet({_quote(path.resolve())})"
        )
    return stmts


def write_views_db(folder: Path) -> Path:
    """Write ``folder/marts.duckdb``: one view per Parquet file of the folder, by absolute path."""
    import duckdb

    target = folder / MARTS_DB
    tmp = folder / f".{MARTS_DB}.tmp"
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for stmt in view_statements(folder):
            con.execute(stmt)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    Path(f"{tmp}.wal").unlink(missing_ok=True)
    tmp.replace(target)
    return target


def swap_links(warehouse: Path, folder: Path) -> None:
    """Point ``marts`` and ``marts.duckdb`` at ``folder``, each by one atomic rename."""
    relative = Path(PUBLISH_DIR) / folder.name
    for name, target in ((MARTS_DB, relative / MARTS_DB), (MARTS_LINK, relative)):
        tmp = warehouse / f".{name}.{folder.name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=name == MARTS_LINK)
        tmp.replace(warehouse / name)


def check_links(warehouse: Path) -> None:
    """Refuse to publish over anything in ``marts`` or ``marts.duckdb`` that is not our link.

    A user's own folder or file there is never moved or deleted: the run stops before it builds,
    with a message that says what to do.
    """
    for name in (MARTS_LINK, MARTS_DB):
        path = warehouse / name
        if path.is_symlink() or not path.exists():
            continue
        kind = "folder" if path.is_dir() else "file"
        raise PublicationError(
            f"{path} is a real {kind}, not the link tracehouse publishes through; it is left "
            f"untouched. Move it elsewhere (or choose another --warehouse) and run again."
        )


def clean_leftovers(warehouse: Path) -> list[Path]:
    """Remove what a killed run leaves behind: partial folders and temporary links and files."""
    removed: list[Path] = []
    root = warehouse / PUBLISH_DIR
    candidates = [*warehouse.glob(f".{MARTS_LINK}*.tmp")]
    if root.is_dir():
        candidates += [p for p in root.iterdir() if p.name.endswith(".partial")]
        candidates += list(root.glob(f"*/.{MARTS_DB}.tmp*"))
    for path in candidates:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def is_open_by_a_reader(db: Path) -> bool:
    """True when some process holds a DuckDB lock on ``db`` (a reader has it open)."""
    if not db.is_file():
        return False
    fd = os.open(db, os.O_RDONLY)
    try:
        query = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, query)
        return struct.unpack("hhqqi", answer)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def publications(warehouse: Path) -> list[Path]:
    """Every complete publication folder, oldest first (run ids sort by time)."""
    root = warehouse / PUBLISH_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def collect_garbage(
    warehouse: Path,
    *,
    keep: int | None = None,
    grace_s: float | None = None,
    now: float | None = None,
) -> list[Path]:
    """Remove old publication folders that no reader can still be using; return them.

    A folder stays when it is current, among the newest ``keep``, superseded less than
    ``grace_s`` seconds ago (a reader of plain ``marts/*.parquet`` may be mid-query), or its
    ``marts.duckdb`` is held open by some process.
    """
    keep = KEEP_PUBLICATIONS if keep is None else keep
    grace_s = GRACE_SECONDS if grace_s is None else grace_s
    now = time.time() if now is None else now
    current = current_folder(warehouse)
    folders = publications(warehouse)
    removed = []
    for i, folder in enumerate(folders[: max(0, len(folders) - keep)]):
        if folder == current:
            continue
        successor = folders[i + 1]
        superseded_at = successor.stat().st_mtime
        if now - superseded_at < grace_s:
            continue
        if is_open_by_a_reader(folder / MARTS_DB):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
