"""`tracehouse run` (the pipeline, once) and `tracehouse runs` (what the runs did)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tracehouse.commands.lake import LakeOption

WarehouseOption = Annotated[
    Path,
    typer.Option(
        "--warehouse",
        envvar="TRACEHOUSE_WAREHOUSE",
        help="Warehouse folder: tracehouse.duckdb (the build's), the published marts/ and "
        "marts.duckdb (what readers open), the runs record _runs/. Env: TRACEHOUSE_WAREHOUSE.",
    ),
]

def register(app: typer.Typer) -> None:
    """Add `run` and `runs` to ``app``."""

    @app.command("run")
    def run_command(  # noqa: PLR0917
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
        lookback_days: Annotated[
            int | None,
            typer.Option(
                "--lookback-days", min=0,
                help="Rebuild everything that landed within this many days before the newest "
                "row already built (default: the project's lookback_days var, 3). Always builds, "
                "even when nothing new arrived.",
            ),
        ] = None,
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
        """Validate new batches, build the warehouse, check it, detect changes, publish marts.

        Exit codes: 0 published (or nothing new: skipped), 1 a step failed (the previous
        publication is unchanged), 75 another run holds this warehouse (nothing done).
        """
        from tracehouse.pipeline import run

        # A failed step (PipelineError, exit 1) or a held lock (RunLockedError, exit 75) is
        # reported by the CLI's one error handler (tracehouse.cli).
        run(lake, warehouse, full_refresh=full_refresh, lookback_days=lookback_days,
            progress=progress, echo=typer.echo, engine=engine)

    @app.command("runs")
    def runs_command(
        warehouse: WarehouseOption,
        limit: Annotated[int, typer.Option(help="How many of the latest runs to list.")] = 20,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the records as JSON lines.")
        ] = False,
    ) -> None:
        """The runs record: id, start, status, seconds per step, rows landed, what was raised."""
        from dataclasses import asdict

        from tracehouse.runs import history

        records = history(warehouse)[-limit:]
        if as_json:
            for r in records:
                typer.echo(json.dumps(asdict(r), default=str))
            return
        if not records:
            typer.echo(f"no runs recorded in {warehouse}")
            return
        for r in records:
            steps = " ".join(f"{s['step']} {s['seconds']:.1f}s" + ("" if s["ok"] else " FAILED")
                             for s in r.steps)
            landed = ", ".join(f"{d['dataset']} +{d['landed']:,} ({d['quarantined']:,} q)"
                               for d in r.datasets if d["landed"])
            facts = [f"{k} {v}" for k, v in (
                ("models", r.models_built), ("checks failed", r.checks_failed),
                ("change points", r.change_points), ("alerts", r.alerts)) if v is not None]
            typer.echo(f"{r.run_id}  {r.status:<9} {r.started_at[:19]}  "
                       f"{(r.seconds or 0):7.1f}s  {steps}")
            if landed or facts:
                typer.echo(f"{'':<24}landed: {landed or 'nothing'}"
                           + (f"; {', '.join(facts)}" if facts else ""))
            for extra in (r.note, r.error):
                if extra:
                    typer.echo(f"{'':<24}{extra}")
