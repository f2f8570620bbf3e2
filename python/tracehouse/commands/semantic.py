"""`tracehouse mf ...`: MetricFlow's `mf` with the project, profile and warehouse set."""

from __future__ import annotations

import typer

from tracehouse.commands.run import WarehouseOption


def register(app: typer.Typer) -> None:
    """Add `mf` to ``app``."""

    @app.command(
        "mf",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def mf_command(ctx: typer.Context, warehouse: WarehouseOption) -> None:
        """Run MetricFlow on the warehouse, e.g. `tracehouse mf query --metrics
        cost_per_successful_task --group-by metric_time__day,route_name`.

        Every argument after the options is passed to `mf` (`mf --help` lists them); this
        command only sets the project folder, the profile and the warehouse path.
        """
        from tracehouse.semantic import run_mf

        run_mf(list(ctx.args), warehouse, capture=False)
