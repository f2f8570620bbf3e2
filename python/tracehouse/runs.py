"""The runs record: one JSON file per run in ``<warehouse>/_runs/``, append-only.

Each run writes its record when it starts (status ``running``) and rewrites it, by an atomic
rename, after every step and at the end (``published``, ``skipped`` when nothing was new, or
``failed``). A run killed with -9 leaves ``running`` behind; the next run marks it ``killed``
when it takes the lock over. The history is published as the ``runs`` mart and listed by
``tracehouse runs``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

RUNS_DIR = "_runs"
RUNNING, PUBLISHED, SKIPPED, FAILED, KILLED = "running", "published", "skipped", "failed", "killed"

@dataclass
class RunRecord:
    """What one run did; the JSON document of ``_runs/<run_id>.json``."""

    run_id: str
    started_at: str
    status: str = RUNNING
    ended_at: str | None = None
    seconds: float | None = None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    full_refresh: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    models_built: int | None = None
    checks_failed: int | None = None
    change_points: int | None = None
    alerts: int | None = None
    marts_written: int | None = None
    marts_linked: int | None = None
    error: str | None = None
    note: str | None = None
    # What the run read: the lake's ledger and the dbt project; equal inputs mean nothing new.
    inputs: dict[str, str] = field(default_factory=dict)
    ledger_totals: dict[str, list[int]] = field(default_factory=dict)
    freshness: dict[str, str | None] = field(default_factory=dict)  # dataset -> max_loaded_at


def runs_dir(warehouse: Path | str) -> Path:
    """``<warehouse>/_runs``."""
    return Path(warehouse) / RUNS_DIR


def now_iso() -> str:
    """The current UTC time as ISO 8601."""
    return datetime.now(UTC).isoformat()


def save(warehouse: Path | str, record: RunRecord) -> Path:
    """Write ``record`` atomically (temporary file, then rename)."""
    folder = runs_dir(warehouse)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.run_id}.json"
    tmp = folder / f".{record.run_id}.json.tmp"
    tmp.write_text(json.dumps(asdict(record), indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def load(warehouse: Path | str, run_id: str) -> RunRecord | None:
    """The record of ``run_id``, or None."""
    path = runs_dir(warehouse) / f"{run_id}.json"
    if not path.is_file():
        return None
    return _parse(path)


def _parse(path: Path) -> RunRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    known = set(RunRecord.__dataclass_fields__)
    return RunRecord(**{k: v for k, v in data.items() if k in known})


def history(warehouse: Path | str) -> list[RunRecord]:
    """Every recorded run, oldest first."""
    folder = runs_dir(warehouse)
    if not folder.is_dir():
        return []
    records = [r for r in (_parse(p) for p in folder.glob("*.json")) if r is not None]
    return sorted(records, key=lambda r: (r.started_at, r.run_id))


def last_good(warehouse: Path | str) -> RunRecord | None:
    """The newest run that published or found nothing new."""
    for record in reversed(history(warehouse)):
        if record.status in (PUBLISHED, SKIPPED):
            return record
    return None


def clean_temporary(warehouse: Path | str) -> None:
    """Remove temporary record files a killed run left."""
    for tmp in runs_dir(warehouse).glob(".*.json.tmp"):
        tmp.unlink(missing_ok=True)


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def as_table(records: list[RunRecord]) -> pa.Table:
    """The records as the ``runs`` mart (one row per run)."""
    import pyarrow as pa

    rows = []
    for r in records:
        rows.append({
            "run_id": r.run_id, "status": r.status, "started_at": _ts(r.started_at),
            "ended_at": _ts(r.ended_at), "seconds": r.seconds, "pid": r.pid, "host": r.host,
            "full_refresh": r.full_refresh,
            "steps": [{"step": s["step"], "seconds": s["seconds"], "ok": s["ok"],
                       "summary": s["summary"]} for s in r.steps],
            "datasets": r.datasets, "models_built": r.models_built,
            "checks_failed": r.checks_failed, "change_points": r.change_points,
            "alerts": r.alerts, "marts_written": r.marts_written,
            "marts_linked": r.marts_linked, "error": r.error, "note": r.note,
        })
    return pa.Table.from_pylist(rows, schema=runs_schema())


def runs_schema() -> pa.Schema:
    """The schema of the ``runs`` mart."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("run_id", pa.string()),
            pa.field("status", pa.string()),
            pa.field("started_at", pa.timestamp("us", tz="UTC")),
            pa.field("ended_at", pa.timestamp("us", tz="UTC")),
            pa.field("seconds", pa.float64()),
            pa.field("pid", pa.int64()),
            pa.field("host", pa.string()),
            pa.field("full_refresh", pa.bool_()),
            pa.field("steps", pa.list_(pa.struct([
                pa.field("step", pa.string()),
                pa.field("seconds", pa.float64()),
                pa.field("ok", pa.bool_()),
                pa.field("summary", pa.string()),
            ]))),
            pa.field("datasets", pa.list_(pa.struct([
                pa.field("dataset", pa.string()),
                pa.field("landed", pa.int64()),
                pa.field("accepted", pa.int64()),
                pa.field("quarantined", pa.int64()),
            ]))),
            pa.field("models_built", pa.int64()),
            pa.field("checks_failed", pa.int64()),
            pa.field("change_points", pa.int64()),
            pa.field("alerts", pa.int64()),
            pa.field("marts_written", pa.int64()),
            pa.field("marts_linked", pa.int64()),
            pa.field("error", pa.string()),
            pa.field("note", pa.string()),
        ]
    )
