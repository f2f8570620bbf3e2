"""Locks: one `tracehouse run` per warehouse, one adopter of producer files per lake.

The run lock is ``flock`` on ``<warehouse>/.run.lock``. The kernel drops it when its holder
dies (even by kill -9), so a lock is never left held by a dead run. What a killed run does leave
is the holder's note in the file: a run writes who it is (run id, pid, host, start) after it
takes the lock and empties the file when it ends cleanly. A run that takes the lock and finds a
note knows its predecessor was killed, records the takeover, and recovers.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tracehouse.errors import EXIT_LOCKED, TracehouseError

RUN_LOCK = ".run.lock"
LAKE_LOCK = ".tracehouse-adopt.lock"


class RunLockedError(TracehouseError, RuntimeError):
    """Another `tracehouse run` holds this warehouse; nothing was done."""

    exit_code = EXIT_LOCKED  # EX_TEMPFAIL: another run is in progress; try again later


@dataclass
class Holder:
    """Who holds (or last held) a run lock."""

    run_id: str
    pid: int
    host: str
    started_at: str

    def describe(self) -> str:
        """e.g. ``run 20260101T...-abc (pid 123 on host, started 2026-...)``."""
        return f"run {self.run_id} (pid {self.pid} on {self.host}, started {self.started_at})"


def _read_holder(handle: IO[str]) -> Holder | None:
    handle.seek(0)
    text = handle.read().strip()
    if not text:
        return None
    try:
        data = json.loads(text)
        return Holder(str(data["run_id"]), int(data["pid"]), str(data["host"]),
                      str(data["started_at"]))
    except (ValueError, KeyError, TypeError):
        return Holder("unknown", -1, "unknown", "unknown")


@contextmanager
def run_lock(warehouse: Path, run_id: str, started_at: str) -> Iterator[Holder | None]:
    """Hold the warehouse's run lock; yield the killed predecessor's note, if any.

    Raises :class:`RunLockedError` at once (no waiting) when another live run holds it.
    """
    warehouse.mkdir(parents=True, exist_ok=True)
    path = warehouse / RUN_LOCK
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            who = holder.describe() if holder else "another run"
            raise RunLockedError(
                f"{who} is already running on {warehouse}; this run did nothing. "
                f"Exit code {EXIT_LOCKED}: try again when it has finished."
            ) from None
        try:
            killed = _read_holder(handle)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"run_id": run_id, "pid": os.getpid(),
                                     "host": socket.gethostname(), "started_at": started_at}))
            handle.flush()
            os.fsync(handle.fileno())
            yield killed
            handle.seek(0)
            handle.truncate()  # a clean end: no note for the next run
            handle.flush()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def lake_lock(lake: Path, timeout_s: float = 600.0) -> Iterator[bool]:
    """Hold the lake's adoption lock (waiting up to ``timeout_s``); yield whether it is held.

    Two runs into different warehouses that share one lake take turns adopting producer files,
    so a file is validated, moved and registered once. A lake the run cannot write to yields
    False: there is nothing it could adopt anyway.
    """
    try:
        handle = (lake / LAKE_LOCK).open("a+", encoding="utf-8")
    except OSError:
        yield False
        return
    with handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another run has been adopting files in {lake} for {timeout_s:.0f}s"
                    ) from None
                time.sleep(0.2)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


LAKE_RUN_LOCK = ".tracehouse-run.lock"
LAKE_WAIT_S = 600.0  # how long a run waits for a compaction or an expiry to finish


class LakeBusyError(RunLockedError):
    """The lake is being read by a run, or rewritten by a compaction or expiry; nothing done."""


@contextmanager
def lake_files_lock(lake: Path, *, rewrite: bool, what: str,
                    timeout_s: float = 0.0) -> Iterator[None]:
    """Hold ``<lake>/.tracehouse-run.lock``: shared by the runs that read the lake's files,
    exclusive for what rewrites them (``tracehouse lake compact`` / ``lake expire``).

    A run (``rewrite=False``) may share the lake with runs into other warehouses; a compaction
    or an expiry (``rewrite=True``) waits for none of them and never starts under one: it
    raises :class:`LakeBusyError` (exit code :data:`EXIT_LOCKED`) at once, or after
    ``timeout_s`` of retrying. A lake folder that cannot be written (a reader's read-only
    mount) is not locked: nothing there can rewrite it either.
    """
    try:
        handle = (lake / LAKE_RUN_LOCK).open("a+", encoding="utf-8")
    except OSError:  # no lake folder (the run reports it) or a read-only one
        if rewrite and lake.is_dir():
            raise
        yield
        return
    mode = fcntl.LOCK_EX if rewrite else fcntl.LOCK_SH
    with handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    other = ("a `tracehouse run` is reading it" if rewrite
                             else "a compaction or an expiry is rewriting it")
                    raise LakeBusyError(
                        f"{lake}: {other}; {what} did nothing. Exit code {EXIT_LOCKED}: "
                        f"try again when it has finished."
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
