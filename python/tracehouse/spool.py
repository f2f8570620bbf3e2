"""The receiver's landing queue: a bounded, spooled buffer drained into the lake by one thread.

:class:`LakeWriter` is what any receiver (HTTP, gRPC, ...) hands redacted contract tables to.
Its promises:

- **Nothing acknowledged is lost.** :meth:`LakeWriter.submit` writes the rows to a spool file
  (``<lake>/_spool/<ns>-<rand>.<dataset>.<source>.arrow``, fsynced) before it returns; the file
  is removed once the rows are in the lake (accepted or quarantined) and replayed at start-up
  if the process died first.
- **No row can stop the writer.** Requests of one dataset are written together; a type conflict
  between them is resolved by :func:`tracehouse.lake.combine_tables` (never a merge error). A
  group that fails is split: each of its requests is retried alone, with backoff, at most
  ``max_attempts`` times, then moved whole to the quarantine with the reason
  (:func:`tracehouse.lake.quarantine_batch`). A failing request never delays the others.
- **Shutdown tells the truth.** :meth:`LakeWriter.close` returns a :class:`ShutdownReport`:
  rows landed, rows quarantined after failing, rows still only in the spool; its ``exit_code``
  is non-zero when anything acknowledged is not in the lake.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyarrow import ipc

from tracehouse.errors import TracehouseError
from tracehouse.lake import (
    combine_tables,
    parse_spool_name,
    quarantine_batch,
    spool_file_name,
    write_batch,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # tries of one request before it is quarantined whole
RETRY_BASE_SECONDS = 0.2  # backoff: base * 2**(attempt - 1), at most MAX_BACKOFF_SECONDS
MAX_BACKOFF_SECONDS = 5.0
STUCK_RETRY_SECONDS = 30.0  # when even the quarantine cannot be written (disk gone)


class BufferFullError(TracehouseError, RuntimeError):
    """The writer's buffer cannot take these rows now; retry later."""


class ClosingError(TracehouseError, RuntimeError):
    """The writer is shutting down and takes nothing more."""


@dataclass
class _Item:
    dataset: str
    source: str
    table: pa.Table
    spool_path: Path | None
    received_at: float
    attempts: int = 0
    not_before: float = 0.0
    last_error: str = ""


@dataclass
class ShutdownReport:
    """What :meth:`LakeWriter.close` leaves behind."""

    landed_rows: int
    quarantined_rows: int  # rows of requests that failed to write and were quarantined whole
    unlanded_rows: int  # acknowledged, not in the lake (still in the spool, or lost without one)
    spool_files: list[Path] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when everything acknowledged is in the lake, else 1."""
        return 0 if self.unlanded_rows == 0 and not self.spool_files else 1

    @property
    def message(self) -> str:
        """One line for the operator."""
        if self.exit_code == 0:
            return (f"everything accepted is in the lake ({self.landed_rows} rows landed, "
                    f"{self.quarantined_rows} quarantined after failed writes)")
        where = (f"{len(self.spool_files)} spool file(s) left, replayed at the next start"
                 if self.spool_files else "no spool: these rows are lost")
        return (f"{self.unlanded_rows} acknowledged row(s) are NOT in the lake ({where}); "
                f"{self.landed_rows} rows landed")


class LakeWriter:
    """A bounded buffer of redacted contract tables, drained into the lake by one thread."""

    def __init__(
        self,
        lake: Path,
        *,
        batch_rows: int = 5_000,
        flush_seconds: float = 2.0,
        max_buffer_rows: int = 100_000,
        spool_dir: Path | None = None,
        write: Callable[..., Any] = write_batch,
        quarantine: Callable[..., Any] = quarantine_batch,
        max_attempts: int = MAX_ATTEMPTS,
        retry_base_seconds: float = RETRY_BASE_SECONDS,
    ) -> None:
        self.lake = Path(lake)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.max_buffer_rows = max_buffer_rows
        self.spool_dir = spool_dir
        self.max_attempts = max(1, max_attempts)
        self.retry_base_seconds = retry_base_seconds
        self._write = write
        self._quarantine = quarantine
        self._cond = threading.Condition()
        self._items: list[_Item] = []
        self._stuck: list[_Item] = []  # given up at shutdown: still in the spool
        self._rows = 0  # acknowledged and not yet in the lake: what bounds memory
        self._pending = 0  # submits that reserved room and are still spooling
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="tracehouse-writer", daemon=True)
        self.batches_written = 0
        self.rows_written = 0
        self.rows_quarantined = 0
        self.write_errors = 0

    # ---- producer side -----------------------------------------------------------------

    def start(self) -> None:
        """Replay what a previous process spooled but never landed, then start writing."""
        if self.spool_dir is not None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.spool_dir.glob("*.arrow")):
                try:
                    dataset, source = parse_spool_name(path)
                    with ipc.open_file(path) as reader:
                        table = reader.read_all()
                except (OSError, ValueError, pa.ArrowInvalid) as exc:
                    log.error("cannot replay spool file %s: %s (left in place; "
                              "`tracehouse lake status` counts it)", path, exc)
                    continue
                log.warning("replaying %d %s rows from %s", table.num_rows, dataset, path)
                self._items.append(_Item(dataset, source, table, path, time.monotonic()))
                self._rows += table.num_rows
        self._thread.start()

    @property
    def buffered_rows(self) -> int:
        """Rows accepted and not yet in the lake."""
        with self._cond:
            return self._rows

    def submit(self, dataset: str, table: pa.Table, *, source: str) -> None:
        """Take ``table`` for landing, or raise :class:`BufferFullError` / :class:`ClosingError`.

        When this returns, the rows are safe: they will be written to the lake (and, with a
        spool, survive a crash of this process).
        """
        n = table.num_rows
        if n == 0:
            return
        with self._cond:
            if self._closing:
                raise ClosingError("shutting down")
            if self._rows > 0 and self._rows + n > self.max_buffer_rows:
                raise BufferFullError(
                    f"buffer full ({self._rows} of {self.max_buffer_rows} rows)"
                )
            self._rows += n
            self._pending += 1
        spool_path = None
        try:
            if self.spool_dir is not None:
                spool_path = self._spool(dataset, source, table)
        except BaseException:
            with self._cond:
                self._rows -= n
                self._pending -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._items.append(_Item(dataset, source, table, spool_path, time.monotonic()))
            self._pending -= 1
            self._cond.notify_all()

    def _spool(self, dataset: str, source: str, table: pa.Table) -> Path:
        assert self.spool_dir is not None
        name = spool_file_name(dataset, source)
        path = self.spool_dir / name
        tmp = self.spool_dir / f".{name}.tmp"
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        return path

    # ---- writer side -------------------------------------------------------------------

    def _ready(self, now: float) -> list[_Item]:
        return [i for i in self._items if i.not_before <= now]

    def _due(self, now: float) -> bool:
        ready = self._ready(now)
        if not ready:
            return False
        if self._closing or any(i.attempts for i in ready):
            return True
        buffered = sum(i.table.num_rows for i in ready)
        age = now - min(i.received_at for i in ready)
        return buffered >= self.batch_rows or age >= self.flush_seconds

    def _wait_seconds(self, now: float) -> float | None:
        if not self._items:
            return 0.05 if self._closing else None
        deadlines = [
            i.not_before if i.attempts else i.received_at + self.flush_seconds
            for i in self._items
        ]
        return max(0.0, min(deadlines) - now)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due(time.monotonic()):
                    if self._closing and not self._items and self._pending == 0:
                        return
                    self._cond.wait(self._wait_seconds(time.monotonic()))
                now = time.monotonic()
                ready = self._ready(now)
                self._items = [i for i in self._items if i.not_before > now]
            self._land(ready)

    def _groups(self, items: list[_Item]) -> list[list[_Item]]:
        """Fresh requests of one (dataset, source) together; a request that failed alone."""
        fresh: dict[tuple[str, str], list[_Item]] = {}
        groups: list[list[_Item]] = []
        for it in items:
            if it.attempts:
                groups.append([it])
            else:
                fresh.setdefault((it.dataset, it.source), []).append(it)
        return [*fresh.values(), *groups]

    def _land(self, items: list[_Item]) -> None:
        for group in self._groups(items):
            dataset, source = group[0].dataset, group[0].source
            n = sum(g.table.num_rows for g in group)
            try:
                table = combine_tables([g.table for g in group])
                self._write(self.lake, dataset, table, source=source)
            except Exception as exc:  # any failure: retry alone, then quarantine
                self.write_errors += 1
                log.exception("writing %d %s rows (%d request(s)) failed", n, dataset,
                              len(group))
                for it in group:
                    self._failed(it, f"{type(exc).__name__}: {exc}")
                continue
            self._done(group, n, written=True)

    def _done(self, group: list[_Item], n: int, *, written: bool) -> None:
        for g in group:
            if g.spool_path is not None:
                g.spool_path.unlink(missing_ok=True)
        with self._cond:
            self._rows -= n
            if written:
                self.rows_written += n
                self.batches_written += 1
            else:
                self.rows_quarantined += n
            self._cond.notify_all()

    def _failed(self, it: _Item, error: str) -> None:
        it.attempts += 1
        it.last_error = error
        if it.attempts < self.max_attempts:
            backoff = self.retry_base_seconds * 2 ** (it.attempts - 1)
            self._requeue(it, min(backoff, MAX_BACKOFF_SECONDS))
            return
        reason = f"batch failed to write {it.attempts} times: {error}"
        try:
            self._quarantine(self.lake, it.dataset, it.table, source=it.source, reason=reason)
        except Exception:  # the lake itself is unwritable: keep it spooled
            log.exception("cannot quarantine %d %s rows either; they stay in the spool",
                          it.table.num_rows, it.dataset)
            with self._cond:
                if self._closing:
                    self._stuck.append(it)
                    self._cond.notify_all()
                    return
            self._requeue(it, STUCK_RETRY_SECONDS)
            return
        log.error("quarantined %d %s rows whole: %s", it.table.num_rows, it.dataset, reason)
        self._done([it], it.table.num_rows, written=False)

    def _requeue(self, it: _Item, delay: float) -> None:
        with self._cond:
            it.not_before = time.monotonic() + delay
            self._items.append(it)
            self._cond.notify_all()

    def close(self, timeout: float | None = 60.0) -> ShutdownReport:
        """Take nothing more, land everything accepted, stop the thread; report the truth."""
        with self._cond:
            self._closing = True
            for it in self._items:  # a request waiting out a long retry is tried once more now
                it.not_before = min(it.not_before, time.monotonic() + MAX_BACKOFF_SECONDS)
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            unlanded = self._rows
        spool_files = (
            sorted(self.spool_dir.glob("*.arrow"))
            if self.spool_dir is not None and self.spool_dir.is_dir() else []
        )
        report = ShutdownReport(self.rows_written, self.rows_quarantined, unlanded, spool_files)
        (log.info if report.exit_code == 0 else log.error)("writer stopped: %s", report.message)
        return report
