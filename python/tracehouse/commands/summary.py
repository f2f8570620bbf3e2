"""`tracehouse summary`: headline figures of a published warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracehouse.commands.run import WarehouseOption


def register(app: typer.Typer) -> None:
    """Add `summary` to ``app``."""

    @app.command("summary")
    def summary_command(
        warehouse: WarehouseOption,
        lake: Annotated[
            Path | None,
            typer.Option("--lake", envvar="TRACEHOUSE_LAKE",
                         help="Also reconcile the lake: received = accepted + quarantined."),
        ] = None,
        truth: Annotated[
            Path | None,
            typer.Option(help="A generator truth file: list the incidents it injected."),
        ] = None,
    ) -> None:
        """Requests, cost, lake reconciliation, injected incidents and detected changes."""
        from tracehouse.summary import summarize

        result = summarize(warehouse, lake=lake, truth=truth)
        typer.echo(f"warehouse:  {warehouse / 'marts.duckdb'}")
        for line in result.lines():
            typer.echo(line)
