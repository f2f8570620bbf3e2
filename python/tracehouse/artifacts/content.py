"""`tracehouse trace TRACE_ID --content --reason ...`: tier-3 content, gated and audited.

Order of a read, each step a precondition of the next:
1. a non-empty reason;
2. the reader's role (``TRACEHOUSE_ROLE``) is one of the policy's ``access.content_roles``
   (a refusal is audited too, when the audit can be written);
3. the trace's artifact references are looked up in the warehouse (``marts.fct_spans``);
4. the audit record (who, role, when, trace, artifacts, reason) is written and fsynced; if that
   fails, :class:`~tracehouse.artifacts.audit.AuditWriteError` and nothing is decrypted;
5. only then are payloads decrypted and returned for display.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tracehouse.artifacts.audit import Reader, write_access_record
from tracehouse.artifacts.policy import Policy
from tracehouse.artifacts.store import URI_SCHEME, ArtifactError, ArtifactStore
from tracehouse.errors import NotPublishedError, TracehouseError


class AccessRefusedError(TracehouseError, PermissionError):
    """The reader may not read tier-3 content (role not allowed, or no reason given)."""


@dataclass
class ContentItem:
    """One artifact of a trace: its span, reference, and the payload (or why it is missing)."""

    span_id: str
    span_type: str | None
    operation_name: str | None
    artifact_id: str
    kind: str
    uri: str
    payload: Any = None
    error: str | None = None


@dataclass
class TraceContent:
    """The tier-3 content of one trace, read under one audit record."""

    trace_id: str
    audit_file: Path
    items: list[ContentItem] = field(default_factory=list)


def trace_artifact_refs(warehouse: Path | str, trace_id: str) -> list[dict[str, Any]]:
    """Every artifact reference of the trace's spans (``marts.fct_spans``), in span order."""
    import duckdb

    from tracehouse.warehouse import MARTS_SCHEMA, warehouse_db

    db = warehouse_db(warehouse)
    if not db.is_file():
        raise NotPublishedError(f"no warehouse at {db}")
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            f"""
            select span_id, span_type, operation_name, ref.artifact_id as artifact_id,
                ref.kind as kind, ref.uri as uri
            from (
                select span_id, span_type, operation_name, event_time,
                    unnest(artifact_refs) as ref
                from {MARTS_SCHEMA}.fct_spans
                where trace_id = ? and len(artifact_refs) > 0
            )
            order by event_time, span_id, kind
            """,
            [trace_id],
        ).fetchall()
    finally:
        con.close()
    cols = ("span_id", "span_type", "operation_name", "artifact_id", "kind", "uri")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def read_trace_content(
    *,
    store: ArtifactStore,
    policy: Policy,
    lake: Path | str,
    trace_id: str,
    refs: list[dict[str, Any]],
    reason: str,
    reader: Reader,
    now: datetime | None = None,
) -> TraceContent:
    """Check the reader, write the audit record, then decrypt the trace's artifacts."""
    from tracehouse.redaction import mask_text

    reason = mask_text(reason.strip()).text if reason else ""
    if not reason:
        raise AccessRefusedError("reading tier-3 content needs --reason (it goes to the audit)")
    if reader.role not in policy.content_roles:
        with contextlib.suppress(Exception):
            write_access_record(lake, reader, trace_id=trace_id, artifacts=refs, reason=reason,
                                outcome="refused", now=now)
        allowed = ", ".join(sorted(policy.content_roles)) or "none configured"
        raise AccessRefusedError(
            f"role {reader.role or '(unset)'!r} may not read tier-3 content; TRACEHOUSE_ROLE "
            f"must be one of: {allowed} (policy {policy.source})"
        )
    audit_file = write_access_record(lake, reader, trace_id=trace_id, artifacts=refs,
                                     reason=reason, outcome="granted", now=now)
    out = TraceContent(trace_id, audit_file)
    for ref in refs:
        item = ContentItem(ref["span_id"], ref.get("span_type"), ref.get("operation_name"),
                           ref["artifact_id"], ref["kind"], ref["uri"])
        if not str(ref["uri"]).startswith(URI_SCHEME):
            item.error = f"kept outside this store: {ref['uri']}"
        else:
            try:
                item.payload = store.get(ref["uri"])
            except ArtifactError as exc:
                item.error = str(exc)
        out.items.append(item)
    return out


def render_content(content: TraceContent, console: Any = None,
                   *, echo: Callable[[str], None] | None = None) -> None:
    """Print the decrypted content, one panel per artifact."""
    from rich.console import Console
    from rich.panel import Panel

    console = console or Console()
    console.rule(f"tier-3 content of {content.trace_id} (audited: {content.audit_file.name})")
    if not content.items:
        console.print("this trace has no tier-3 artifacts")
    for item in content.items:
        title = (f"{item.span_type or '?'} {item.operation_name or ''} span {item.span_id} · "
                 f"{item.kind} {item.artifact_id[:16]}")
        if item.error:
            console.print(Panel(f"[red]{item.error}[/red]", title=title))
        else:
            body = json.dumps(item.payload, indent=2, ensure_ascii=False)
            console.print(Panel(body, title=title, expand=False), markup=False)
