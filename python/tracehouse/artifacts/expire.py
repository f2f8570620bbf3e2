"""`tracehouse artifacts expire`: delete payloads older than their retention class."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tracehouse.artifacts.policy import Policy
from tracehouse.artifacts.store import ArtifactStore, StoredArtifact, stored_at


@dataclass
class ArtifactExpiry:
    """What one expire pass removed and kept, per (tenant, kind)."""

    removed: list[StoredArtifact] = field(default_factory=list)
    kept: int = 0
    by_class: dict[tuple[str, str], int] = field(default_factory=dict)  # (tenant, kind) -> n


def expire_artifacts(
    store: ArtifactStore, policy: Policy, *, now: datetime | None = None, dry_run: bool = False
) -> ArtifactExpiry:
    """Remove every payload older than the days of its tenant's and kind's retention class.

    Age is the time since the payload was last written or referenced (its mtime); a class
    without ``days`` keeps forever. Needs no key: only names and times are read.
    """
    now = now or datetime.now(UTC)
    tenants = store.tenants()
    report = ArtifactExpiry()
    for art in store.iter_stored():
        tenant_id = tenants.get(art.tenant_dir, art.tenant_dir)
        days = policy.artifact_days(tenant_id, art.kind)
        if days is None or stored_at(art) > now - timedelta(days=days):
            report.kept += 1
            continue
        if not dry_run:
            art.path.unlink(missing_ok=True)
        report.removed.append(art)
        key = (tenant_id, art.kind)
        report.by_class[key] = report.by_class.get(key, 0) + 1
    return report
