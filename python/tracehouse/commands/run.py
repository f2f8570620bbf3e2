"""`tracehouse run`: the pipeline, once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracehouse.commands.lake import LakeOption

WarehouseOption = Annotated[
    Path,
    typer.Option(
        "--warehouse",
        envvar="TRACEHOUSE_WAREHOUSE",
        help="Warehouse folder: tracehouse.duckdb and the published marts/. "
        "Env: TRACEHOUSE_WAREHOUSE.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add `run` to ``app``."""

    @app.command("run")
    def run_command(
        lake: LakeOption,
        warehouse: WarehouseOption,
        full_refresh: Annotated[
            bool,
            typer.Option(
                "--full-refresh",
                help="Rebuild every incremental model from the whole lake instead of only what "
                "changed since the last run.",
            ),
        ] = False,
        progress: Annotated[
            bool, typer.Option(help="Show progress bars on long steps.")
        ] = True,
        engine: Annotated[
            str,
            typer.Option(
                "--engine",
                envvar="TRACEHOUSE_ENGINE",
                help="Build engine: duckdb (embedded) or spark (pip install '.[spark]'; "
                "target `spark`, or $TRACEHOUSE_SPARK_TARGET). Env: TRACEHOUSE_ENGINE.",
            ),
        ] = "duckdb",
    ) -> None:
        """Validate new batches, build the warehouse, check it, detect changes, publish marts."""
        from tracehouse.pipeline import PipelineError, run

        try:
            run(
                lake, warehouse, full_refresh=full_refresh, progress=progress, echo=typer.echo,
                engine=engine,
            )
        except PipelineError as exc:
            typer.secho(f"tracehouse run failed: {exc}", err=True, fg="red")
            typer.secho("The previously published marts are unchanged.", err=True)
            raise typer.Exit(1) from None
