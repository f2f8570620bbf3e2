"""`tracehouse ingest langfuse` and `tracehouse ingest phoenix`: bring your history."""

# ruff: noqa: PLR0917

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LakeOption = Annotated[
    Path,
    typer.Option("--lake", envvar="TRACEHOUSE_LAKE",
                 help="Lake folder (spans/, feedback/, annotations/, _quarantine/). "
                 "Env: TRACEHOUSE_LAKE."),
]
EphemeralKeyOption = Annotated[
    bool,
    typer.Option("--allow-ephemeral-key",
                 help="Without TRACEHOUSE_HASH_KEY, hash user ids with a random per-process key "
                 "(dev only)."),
]
DefaultEnvironmentOption = Annotated[
    str, typer.Option(help="environment where the export names none (prod, staging, dev).")
]
DefaultTenantOption = Annotated[
    str, typer.Option(help="tenant_id where the metadata names none.")
]


def _report(report) -> None:
    from tracehouse.commands.ingest import _print_report

    read = ", ".join(f"{k} {v}" for k, v in report.read.items())
    typer.echo(f"{report.source}: read {read}")
    for batch in report.reports:
        _print_report(batch)
    for reason, n in sorted(report.not_landed.items()):
        typer.echo(f"  not landed {n}: {reason}")


def register_history(ingest_app: typer.Typer) -> None:
    """Add `langfuse` and `phoenix` to the `ingest` command group."""

    @ingest_app.command("langfuse")
    def ingest_langfuse_command(
        lake: LakeOption,
        folder: Annotated[Path, typer.Argument(
            help="A Langfuse blob-storage export: traces/, observations/ (or observations_v2/) "
            "and scores/ with .parquet or .jsonl files.", exists=True, file_okay=False)],
        score_map: Annotated[list[str] | None, typer.Option(
            "--score-map", help="name=target: land Langfuse score `name` as an annotation "
            "column (correctness, groundedness, ...) or as `feedback` (thumbs). Repeatable.")]
        = None,
        allow_ephemeral_key: EphemeralKeyOption = False,
        default_environment: DefaultEnvironmentOption = "prod",
        default_tenant: DefaultTenantOption = "unknown",
    ) -> None:
        """Land a Langfuse export: traces and observations as spans, scores as labels/feedback."""
        from tracehouse.commands.ingest import _defaults, _redactor
        from tracehouse.history.langfuse import ingest_langfuse

        mapping = {}
        for item in score_map or []:
            name, sep, target = item.partition("=")
            if not sep:
                raise typer.BadParameter("expected name=target", param_hint="--score-map")
            mapping[name] = target
        redactor = _redactor(allow_ephemeral_key)
        report = ingest_langfuse(lake, folder, redactor, score_map=mapping,
                                 defaults=_defaults(default_environment, default_tenant))
        _report(report)

    @ingest_app.command("phoenix")
    def ingest_phoenix_command(
        lake: LakeOption,
        files: Annotated[list[Path], typer.Argument(
            help="Phoenix span dataframes saved as Parquet "
            "(px.Client().get_spans_dataframe().to_parquet(...)).", exists=True,
            dir_okay=False)],
        allow_ephemeral_key: EphemeralKeyOption = False,
        default_environment: DefaultEnvironmentOption = "prod",
        default_tenant: DefaultTenantOption = "unknown",
    ) -> None:
        """Land Phoenix span exports as contract spans (OpenInference attributes mapped)."""
        from tracehouse.commands.ingest import _defaults, _redactor
        from tracehouse.history.phoenix import ingest_phoenix

        redactor = _redactor(allow_ephemeral_key)
        report = ingest_phoenix(lake, files, redactor,
                                defaults=_defaults(default_environment, default_tenant))
        _report(report)
