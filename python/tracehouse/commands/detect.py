"""`tracehouse detect` and `tracehouse evaluate-detection`: change points, alerts, their score."""

# Libraries are imported inside command bodies so that `tracehouse --help` stays fast.

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from tracehouse.commands.run import WarehouseOption

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document instead of tables.")
]


def _fmt(x: float | None, pattern: str = "{:.3f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return pattern.format(x)


def register(app: typer.Typer) -> None:
    """Add `detect` and `evaluate-detection` to ``app``."""

    @app.command("detect")
    def detect_command(
        warehouse: WarehouseOption,
        as_json: JsonOption = False,
    ) -> None:
        """Detect changes in every metric x segment series of the current publication; print them.

        Reads the published marts (W/marts.duckdb) and writes nothing: change points and
        alerts are written and published only by `tracehouse run`, after the mart checks.
        """
        from rich.console import Console
        from rich.table import Table

        from tracehouse.detect.alerts import alert_lines
        from tracehouse.detect.job import DetectConfig, detect_tables, read_panels, read_versions
        from tracehouse.errors import NotPublishedError
        from tracehouse.pipeline import new_run_id
        from tracehouse.publication import connect_schema

        run_id = new_run_id()
        con = connect_schema(warehouse)
        try:
            config = DetectConfig()
            panels = read_panels(con, config.grains)
            if not panels:
                raise NotPublishedError("no metric series (metric_daily) in the publication")
            result = detect_tables(panels, read_versions(con), run_id, config)
        finally:
            con.close()
        if as_json:
            doc = {
                "run_id": run_id,
                "summary": result.summary(),
                "series_total": result.series_total,
                "series_judged": result.series_checked,
                "seconds": result.seconds,
                "change_points": result.change_points.to_pylist(),
                "alerts": result.alerts.to_pylist(),
            }
            typer.echo(json.dumps(doc, default=str, indent=2))
            return
        console = Console(width=max(Console().width, 150))
        table = Table(title=f"change points ({result.summary()}, {result.seconds:.2f}s)")
        for col in ("change_at", "metric", "segment_key", "before", "after", "change", "score",
                    "suspected causes"):
            table.add_column(col, justify="right" if col in ("before", "after", "change",
                                                            "score") else "left")
        for r in result.change_points.to_pylist():
            table.add_row(
                r["change_at"].strftime("%Y-%m-%d %H:%M"), r["metric"], r["segment_key"],
                f"{r['value_before']:.4g}", f"{r['value_after']:.4g}",
                _fmt(r["relative_change"], "{:+.0%}"), f"{r['score']:.1f}",
                "\n".join(r["suspected_causes"]) or "-",
            )
        console.print(table)
        lines = alert_lines(result.alerts)
        console.print(f"alerts ({result.alerts.num_rows}):" if lines else "alerts: none")
        for line in lines:
            console.print(f"  {line}", markup=False, highlight=False)

    @app.command("evaluate-detection")
    def evaluate_command(
        warehouse: WarehouseOption,
        truth: Annotated[
            Path | None,
            typer.Option(help="The generator's truth file (`tracehouse generate --truth`). "
                         "Omit it for a --no-incidents control lake: every change point is "
                         "then false.", exists=True, dir_okay=False),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Score the published change points against the injected incidents.

        Recall (incidents found within 1 day), precision (change points that belong to some
        incident), top-1 attribution (the first suspect, or its tied group, is the cause),
        location error and time to alert in hours, and false change points per series per
        month. Definitions: docs/detection.md.
        """
        from rich.console import Console
        from rich.table import Table

        from tracehouse.detect.evaluate import evaluate_warehouse

        result = evaluate_warehouse(warehouse, truth)
        if as_json:
            typer.echo(json.dumps(result.as_dict(), default=str, indent=2))
            return
        console = Console(width=max(Console().width, 150))
        if result.incidents:
            table = Table(title=f"incidents ({len(result.incidents)})")
            for col in ("start", "incident", "segment", "found", "located h", "alert h",
                        "cause", "first suspect", "top-1", "change points"):
                table.add_column(col)
            for i in result.incidents:
                table.add_row(
                    i.start.strftime("%Y-%m-%d %H:%M"), i.name, i.segment,
                    ("yes" if i.found else "NO") if i.judged else (i.unjudged or "not judged"),
                    _fmt(i.location_error_hours, "{:.1f}"),
                    _fmt(i.time_to_alert_hours, "{:.0f}"),
                    i.cause or "-",
                    i.first_suspect or "-",
                    "-" if i.attributed is None else ("yes" if i.attributed else "NO"),
                    str(i.change_points),
                )
            console.print(table)
        console.print(
            f"recall {_fmt(result.recall)} ({len(result.judged)} incidents judged)  precision "
            f"{_fmt(result.precision)} (explained {_fmt(result.explained_precision)})  "
            f"top-1 attribution {_fmt(result.attribution)} (cause listed "
            f"{_fmt(result.cause_listed)})  median location error "
            f"{_fmt(result.median_location_error_hours, '{:.1f}')} h  median time to alert "
            f"{_fmt(result.median_time_to_alert_hours, '{:.0f}')} h ("
            + ", ".join(f"{g} {v:.1f} h" for g, v in result.time_to_alert_by_grain().items())
            + ")",
            highlight=False,
        )
        console.print(
            f"{result.change_points} change points, {result.false_points} false, over "
            f"{result.series_judged} series x {result.days:.0f} days: "
            f"{_fmt(result.false_per_series_month, '{:.4f}')} false per series per month",
            highlight=False,
        )
