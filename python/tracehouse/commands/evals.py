"""`tracehouse eval export` and `tracehouse eval import`: production traces to evals and back."""

# ruff: noqa: PLR0917

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `eval` command group to ``app``."""
    eval_app = typer.Typer(help="Eval sets from production traces, and candidate runs back.")
    app.add_typer(eval_app, name="eval")

    @eval_app.command("export")
    def export_command(
        out: Annotated[Path, typer.Option("--out", help="Folder to write examples.jsonl, "
                                          "langfuse_dataset_items.jsonl and manifest.json.")],
        warehouse: Annotated[Path, typer.Option("--warehouse", envvar="TRACEHOUSE_WAREHOUSE",
                                                help="Warehouse whose published marts are "
                                                "read. Env: TRACEHOUSE_WAREHOUSE.")],
        dataset: Annotated[str, typer.Option(help="eval_dataset_id of sampled, unpromoted "
                                             "examples.")] = "eval-candidates",
        only_dataset: Annotated[str | None, typer.Option(help="Only examples promoted into "
                                                         "this eval set.")] = None,
        reason: Annotated[str | None, typer.Option(help="Only candidates with this reason "
                                                   "(promoted, failure, thumbs_down, ...).")]
        = None,
        limit: Annotated[int | None, typer.Option(help="At most this many, by priority.")]
        = None,
    ) -> None:
        """Write the promoted and sampled eval candidates as eval examples (JSON lines)."""
        from tracehouse.evals.export import export_examples

        report = export_examples(warehouse, out, dataset=dataset, only_dataset=only_dataset,
                                 reason=reason, limit=limit)
        typer.echo(f"exported {report.examples} examples ({report.promoted} promoted)")
        for path in report.files:
            typer.echo(f"  wrote {path}")

    @eval_app.command("import")
    def import_command(
        results: Annotated[Path, typer.Argument(help="Results: JSON lines, one per example.",
                                                exists=True, dir_okay=False)],
        lake: Annotated[Path, typer.Option("--lake", envvar="TRACEHOUSE_LAKE",
                                           help="Lake folder. Env: TRACEHOUSE_LAKE.")],
        run_id: Annotated[str | None, typer.Option("--run-id", help="eval_run_id of results "
                                                   "that name none.")] = None,
        candidate: Annotated[list[str] | None, typer.Option(
            "--candidate-version", help="dim=value the candidate ran with (repeatable), e.g. "
            "prompt_version=support-v16.")] = None,
        allow_ephemeral_key: Annotated[bool, typer.Option(
            "--allow-ephemeral-key", help="Without TRACEHOUSE_HASH_KEY, use a random key "
            "(dev only).")] = False,
    ) -> None:
        """Land a candidate run's per-example scores and stage results as annotations."""
        from tracehouse.evals.results import import_results
        from tracehouse.redaction import Redactor

        for item in candidate or []:
            if "=" not in item:
                raise typer.BadParameter("expected dim=value", param_hint="--candidate-version")
        redactor = Redactor.from_env(allow_ephemeral=allow_ephemeral_key)
        result = import_results(lake, results, redactor, eval_run_id=run_id,
                                candidate_versions=candidate or [])
        r = result.report
        typer.echo(f"eval run {', '.join(result.eval_run_ids)}: received {r.received}, "
                   f"accepted {r.accepted}, quarantined {r.quarantined} (batch {r.batch_id})")
        for reason, n in sorted(r.reject_reasons.items()):
            typer.echo(f"  quarantined {n}: {reason}")
        if result.ignored_fields:
            typer.echo(f"  ignored fields: {', '.join(result.ignored_fields)}")
