"""The audit log of tier-3 reads: one Parquet file per read, written and fsynced BEFORE any
content is shown.

Layout: ``<lake>/_audit/content_access/dt=YYYY-MM-DD/<access_id>.parquet``, one row per
artifact asked for (who, role, when, trace, artifact, reason, outcome). The warehouse reads it
as ``lake_raw.content_access`` -> ``stg_audit__content_access`` -> ``marts.fct_content_access``.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from tracehouse.errors import TracehouseError

AUDIT_DIR: Final = "_audit"
CONTENT_ACCESS: Final = "content_access"
READER_ENV: Final = "TRACEHOUSE_USER"
ROLE_ENV: Final = "TRACEHOUSE_ROLE"

AUDIT_SCHEMA: Final = pa.schema(
    [
        pa.field("access_id", pa.string()),
        pa.field("accessed_at", pa.timestamp("us", tz="UTC")),
        pa.field("reader", pa.string()),
        pa.field("role", pa.string()),
        pa.field("trace_id", pa.string()),
        pa.field("span_id", pa.string()),
        pa.field("artifact_id", pa.string()),
        pa.field("artifact_kind", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("outcome", pa.string()),  # granted / refused
    ]
)


class AuditWriteError(TracehouseError, RuntimeError):
    """The audit record could not be written: nothing may be shown."""


@dataclass(frozen=True)
class Reader:
    """Who is reading: a name and a role, from the environment."""

    name: str
    role: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Reader:
        """``TRACEHOUSE_USER`` (else the login name) and ``TRACEHOUSE_ROLE`` (else empty)."""
        env = os.environ if env is None else env
        name = env.get(READER_ENV) or _login()
        return cls(name=name, role=env.get(ROLE_ENV, "").strip())


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def audit_root(lake: Path | str) -> Path:
    """Folder of the content-access audit records in ``lake``."""
    return Path(lake) / AUDIT_DIR / CONTENT_ACCESS


def write_access_record(
    lake: Path | str,
    reader: Reader,
    *,
    trace_id: str,
    artifacts: Sequence[Mapping[str, Any]],
    reason: str,
    outcome: str,
    now: datetime | None = None,
) -> Path:
    """Write (fsynced, atomically) one access record per artifact; return the file.

    ``artifacts`` are dicts with ``span_id``, ``artifact_id``, ``kind``. A read of a trace with
    no artifact still leaves one row (artifact_id null). Raises :class:`AuditWriteError`.
    """
    now = now or datetime.now(UTC)
    access_id = uuid.uuid4().hex
    items = list(artifacts) or [{"span_id": None, "artifact_id": None, "kind": None}]
    n = len(items)
    table = pa.table(
        {
            "access_id": [access_id] * n,
            "accessed_at": [now] * n,
            "reader": [reader.name] * n,
            "role": [reader.role or None] * n,
            "trace_id": [trace_id] * n,
            "span_id": [a.get("span_id") for a in items],
            "artifact_id": [a.get("artifact_id") for a in items],
            "artifact_kind": [a.get("kind") for a in items],
            "reason": [reason] * n,
            "outcome": [outcome] * n,
        },
        schema=AUDIT_SCHEMA,
    )
    folder = audit_root(lake) / f"dt={now.astimezone(UTC):%Y-%m-%d}"
    path = folder / f"{access_id}.parquet"
    tmp = folder / f".{access_id}.{secrets.token_hex(4)}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        raise AuditWriteError(f"cannot write the audit record under {folder}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path
