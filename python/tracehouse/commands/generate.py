"""`tracehouse generate`: land a synthetic support copilot's events, with known incidents."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from tracehouse.commands.lake import LakeOption


def register(app: typer.Typer) -> None:
    """Add the `generate` command to ``app``."""

    @app.command("generate")
    def generate_command(  # noqa: PLR0917 (typer options are parameters)
        lake: LakeOption,
        start: Annotated[
            datetime,
            typer.Option(formats=["%Y-%m-%d"],
                         help="First UTC day to generate. On an empty lake it becomes the lake's "
                         "epoch; to append, pass the day after the last generated one."),
        ],
        days: Annotated[int, typer.Option(min=1, help="Number of days to generate.")] = 30,
        traces_per_day: Annotated[
            int,
            typer.Option(min=1, help="Average requests per day; weekdays run higher, weekends "
                         "lower, with a diurnal curve."),
        ] = 2000,
        seed: Annotated[
            int,
            typer.Option(help="World seed: tenants, deploy times, versions and incident times "
                         "all follow from it. Must match the lake's seed when appending."),
        ] = 1,
        incidents: Annotated[
            bool,
            typer.Option("--incidents/--no-incidents",
                         help="Inject the incidents (default), or write a control lake with "
                         "the same world and deploys but no incident effects."),
        ] = True,
        truth: Annotated[
            Path | None,
            typer.Option(help="Write the injected incidents (start, end, segment, cause, "
                         "metrics and direction) to this JSON file."),
        ] = None,
        bad_rows: Annotated[
            float,
            typer.Option(min=0.0, max=0.99,
                         help="Fraction of extra malformed rows of every kind the validator "
                         "rejects, in their own batches, to exercise the quarantine."),
        ] = 0.0,
        progress: Annotated[bool, typer.Option(help="Show a progress bar over days.")] = True,
        workers: Annotated[
            int | None,
            typer.Option(min=1, help="Processes to use (default: one per idle core, one for a "
                         "small job); the files are the same whatever the number."),
        ] = None,
    ) -> None:
        """Generate spans, feedback and annotations of a simulated support copilot."""
        from rich.console import Console

        from tracehouse.generator import generate

        report = generate(lake, start=start.date(), days=days, traces_per_day=traces_per_day,
                          seed=seed, incidents=incidents, truth_path=truth,
                          bad_rows=bad_rows, progress=progress, workers=workers)
        console = Console()
        for ds in report.received:
            console.print(f"{ds:<12} received {report.received[ds]:>11,}  accepted "
                          f"{report.accepted[ds]:>11,}  quarantined {report.quarantined[ds]:>7,}")
        console.print(f"{report.batches} batches in {report.elapsed_s:.1f} s "
                      f"({report.spans_per_s:,.0f} spans/s); {len(report.incidents)} incident "
                      f"entries" + (f" written to {truth}" if truth else ""))
