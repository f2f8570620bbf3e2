"""`tracehouse check`: the data-quality suites on their own, without building or publishing."""

from __future__ import annotations

from typing import Annotated

import typer

from tracehouse.commands.lake import LakeOption
from tracehouse.commands.run import WarehouseOption


def register(app: typer.Typer) -> None:
    """Add `check` to ``app``."""

    @app.command("check")
    def check_command(
        lake: LakeOption,
        warehouse: WarehouseOption,
        all_batches: Annotated[
            bool,
            typer.Option("--all-batches",
                         help="Check every batch of the lake again, not only the new ones."),
        ] = False,
        marts: Annotated[
            bool, typer.Option(help="Also check the marts as they are in the warehouse.")
        ] = True,
    ) -> None:
        """Run the data-quality suites now: batches (warn) and marts (fail, exit 1).

        Writes dq_results and the Data Docs (W/quality/index.html); builds and publishes nothing.
        """
        from datetime import UTC, datetime

        from tracehouse.pipeline import new_run_id
        from tracehouse.quality import QualityError, QualityRun
        from tracehouse.runlock import run_lock

        run_id = new_run_id()
        # It writes the build database: never while a run builds it (a held lock: exit 75).
        with run_lock(warehouse.resolve(), run_id, datetime.now(UTC).isoformat()):
            q = QualityRun(lake=lake.resolve(), warehouse=warehouse.resolve(), run_id=run_id,
                           all_batches=all_batches, all_marts=True)
            typer.echo(f"{'batches':<10} {q.check_batches()}")
            failed = False
            if marts:
                try:
                    typer.echo(f"{'marts':<10} {q.check_marts()}")
                except QualityError as exc:
                    typer.secho(f"{'marts':<10} FAILED: {exc}", fg="red")
                    failed = True
            else:
                from tracehouse.quality.docs import build_docs

                q.index = build_docs(q.warehouse, q.session, q.suites, q.verdict(), q.level,
                                     run_id=q.run_id)
            typer.echo(f"{'quality':<10} {q.verdict()}")
        if failed:
            raise typer.Exit(1)
