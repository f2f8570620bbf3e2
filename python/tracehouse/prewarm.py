"""Slow imports started in a background thread, once per process.

`tracehouse run` starts GX's and dbt's imports before landing (:func:`tracehouse.quality.engine.
prewarm`, :func:`tracehouse.warehouse.prewarm`) so they overlap the batch checks. Python's import
lock makes this safe: a thread that imports the same module meanwhile waits for it to finish
initialising, and an import error surfaces there as it would without prewarming.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_LOCK = threading.Lock()
_THREADS: dict[str, threading.Thread] = {}


def start(name: str, target: Callable[[], None]) -> threading.Thread:
    """Run ``target`` in a daemon thread named ``tracehouse-<name>-import``, the first time
    ``name`` is asked for in this process; return that thread."""
    with _LOCK:
        thread = _THREADS.get(name)
        if thread is None:
            thread = threading.Thread(target=target, name=f"tracehouse-{name}-import",
                                      daemon=True)
            _THREADS[name] = thread
            thread.start()
        return thread


def wait(name: str) -> None:
    """Join the thread started for ``name``, if any."""
    thread = _THREADS.get(name)
    if thread is not None:
        thread.join()
