"""`tracehouse label` and `tracehouse promote`: the review workflow from the command line."""

# ruff: noqa: PLR0917

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LakeOption = Annotated[
    Path,
    typer.Option("--lake", envvar="TRACEHOUSE_LAKE",
                 help="Lake folder the annotation lands in. Env: TRACEHOUSE_LAKE."),
]
WarehouseOption = Annotated[
    Path | None,
    typer.Option("--warehouse", envvar="TRACEHOUSE_WAREHOUSE",
                 help="Warehouse whose published marts are searched for the trace first. "
                 "Env: TRACEHOUSE_WAREHOUSE."),
]
AnnotatorOption = Annotated[
    str | None,
    typer.Option("--annotator", envvar="TRACEHOUSE_ANNOTATOR",
                 help="Who reviews (hashed with TRACEHOUSE_HASH_KEY before it lands). "
                 "Env: TRACEHOUSE_ANNOTATOR, else USER."),
]
EphemeralKeyOption = Annotated[
    bool,
    typer.Option("--allow-ephemeral-key",
                 help="Without TRACEHOUSE_HASH_KEY, hash the annotator with a random key "
                 "(dev only)."),
]


def _redactor(allow_ephemeral_key: bool):
    from tracehouse.redaction import Redactor

    return Redactor.from_env(allow_ephemeral=allow_ephemeral_key)  # no key: exit 2


def _annotator(annotator: str | None) -> str:
    from tracehouse.review.labels import resolve_annotator

    return resolve_annotator(annotator)  # nobody to name: exit 2


def _landed(result, what: str) -> None:
    report = result.report
    if report.quarantined:
        reasons = "; ".join(report.reject_reasons)
        typer.echo(f"error: the {what} was quarantined: {reasons}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{what} {result.annotation_id} landed for trace {result.trace_id} "
               f"(found in the {result.found_in}); it shows in the marts after the next "
               "`tracehouse run`")


def register(app: typer.Typer) -> None:
    """Add `label` and `promote` to ``app``."""

    @app.command("label")
    def label_command(
        trace_id: Annotated[str, typer.Argument(help="The trace to label (32 hex chars).")],
        category: Annotated[str, typer.Option("--category",
                                              help="Failure taxonomy code "
                                              "(seeds/failure_taxonomy.csv).")],
        lake: LakeOption,
        warehouse: WarehouseOption = None,
        note: Annotated[str | None, typer.Option(help="Free-text note (masked before it "
                                                 "lands).")] = None,
        annotator: AnnotatorOption = None,
        taxonomy: Annotated[Path | None, typer.Option(help="Taxonomy CSV (default: the "
                                                      "project's seed).")] = None,
        allow_ephemeral_key: EphemeralKeyOption = False,
    ) -> None:
        """Label a trace with a failure category: a human annotation, through the lake writer."""
        from tracehouse.review.labels import label_trace

        redactor = _redactor(allow_ephemeral_key)
        result = label_trace(lake, trace_id, category, redactor,
                             annotator=_annotator(annotator), note=note,
                             warehouse=warehouse, taxonomy=taxonomy)
        _landed(result, "label")

    @app.command("promote")
    def promote_command(
        trace_id: Annotated[str, typer.Argument(help="The trace to promote (32 hex chars).")],
        reason: Annotated[str, typer.Option("--reason", help="Why it belongs in the eval set "
                                            "(kept, masked).")],
        lake: LakeOption,
        warehouse: WarehouseOption = None,
        eval_dataset: Annotated[str, typer.Option("--eval-dataset", help="Eval set id.")]
        = "eval-promoted",
        annotator: AnnotatorOption = None,
        allow_ephemeral_key: EphemeralKeyOption = False,
    ) -> None:
        """Promote a trace into the eval set: it becomes a `promoted` eval candidate."""
        from tracehouse.review.labels import promote_trace

        redactor = _redactor(allow_ephemeral_key)
        result = promote_trace(lake, trace_id, reason, redactor,
                               annotator=_annotator(annotator),
                               eval_dataset_id=eval_dataset, warehouse=warehouse)
        _landed(result, "promotion")
