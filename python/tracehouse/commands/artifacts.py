"""`tracehouse artifacts ...`: the tier-3 store's key rotation and retention."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ArtifactDirOption = Annotated[
    Path,
    typer.Option("--artifact-dir", envvar="TRACEHOUSE_ARTIFACT_DIR",
                 help="The tier-3 artifact store (as given to serve / ingest). "
                 "Env: TRACEHOUSE_ARTIFACT_DIR."),
]
PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", envvar="TRACEHOUSE_POLICY",
                 help="Privacy policy TOML (retention classes, content roles). "
                 "Env: TRACEHOUSE_POLICY."),
]


def register(app: typer.Typer) -> None:
    """Add the `artifacts` command group to ``app``."""
    art_app = typer.Typer(help="The encrypted tier-3 artifact store: rotate keys, expire.")
    app.add_typer(art_app, name="artifacts")

    @art_app.command("rotate-key")
    def rotate_key(artifact_dir: ArtifactDirOption) -> None:
        """Re-wrap every tenant's data key from TRACEHOUSE_MASTER_KEY to
        TRACEHOUSE_NEW_MASTER_KEY; payloads are not rewritten. Then switch the secret."""
        from tracehouse.artifacts.keys import NEW_MASTER_KEY_ENV, MasterKey, rotate_master_key

        old = MasterKey.from_env()
        new = MasterKey.from_env(var=NEW_MASTER_KEY_ENV)
        report = rotate_master_key(artifact_dir, old, new)
        typer.echo(f"re-wrapped {len(report.rewrapped)} tenant key(s) under master key "
                   f"{report.new_kek_id}; {len(report.already_new)} already were. Now set "
                   f"TRACEHOUSE_MASTER_KEY to the new key everywhere.")

    @art_app.command("expire")
    def expire(
        artifact_dir: ArtifactDirOption,
        policy: PolicyOption = None,
        dry_run: Annotated[bool, typer.Option(help="Only list what would go.")] = False,
    ) -> None:
        """Delete payloads older than their tenant's and kind's retention class."""
        from tracehouse.artifacts.expire import expire_artifacts
        from tracehouse.artifacts.policy import load_policy
        from tracehouse.artifacts.store import ArtifactStore

        pol = load_policy(policy)
        store = ArtifactStore(artifact_dir, require_key=False)  # listing and deleting need none
        report = expire_artifacts(store, pol, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        for (tenant, kind), n in sorted(report.by_class.items()):
            typer.echo(f"{verb} {n} {kind} artifact(s) of tenant {tenant} "
                       f"(class {pol.artifact_class(tenant, kind)})")
        typer.echo(f"{verb} {len(report.removed)}, kept {report.kept}")


def show_trace_content(
    *, trace_id: str, warehouse: Path, lake: Path | None, artifact_dir: Path | None,
    policy: Path | None, reason: str | None,
) -> None:
    """`tracehouse trace --content`: role check, audit record, then the decrypted content.

    Exits 1 (showing nothing) when the role is refused, the reason is missing, or the audit
    record cannot be written.
    """
    from tracehouse.artifacts.audit import AuditWriteError, Reader
    from tracehouse.artifacts.content import (
        AccessRefusedError,
        read_trace_content,
        render_content,
        trace_artifact_refs,
    )
    from tracehouse.artifacts.keys import ArtifactKeyError
    from tracehouse.artifacts.policy import PolicyError, load_policy
    from tracehouse.artifacts.store import ArtifactStore

    if lake is None or artifact_dir is None:
        typer.secho("error: --content needs --lake (for the audit log) and --artifact-dir "
                    "(or TRACEHOUSE_LAKE / TRACEHOUSE_ARTIFACT_DIR)", err=True, fg="red")
        raise typer.Exit(1)
    try:
        pol = load_policy(policy)
        refs = trace_artifact_refs(warehouse, trace_id)
        content = read_trace_content(
            store=ArtifactStore(artifact_dir, lake=lake), policy=pol, lake=lake,
            trace_id=trace_id, refs=refs, reason=reason or "", reader=Reader.from_env(),
        )
    except (AccessRefusedError, AuditWriteError, PolicyError, ArtifactKeyError) as exc:
        typer.secho(f"tier-3 content not shown: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    render_content(content)
