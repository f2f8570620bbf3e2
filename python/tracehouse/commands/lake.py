"""`tracehouse lake ...`: look at what landed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LakeOption = Annotated[
    Path,
    typer.Option(
        "--lake",
        envvar="TRACEHOUSE_LAKE",
        help="Lake folder (spans/, feedback/, annotations/, _quarantine/). Env: TRACEHOUSE_LAKE.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add the `lake` command group to ``app``."""
    lake_app = typer.Typer(help="Inspect the lake: what landed, what was quarantined.")
    app.add_typer(lake_app, name="lake")

    @lake_app.command("status")
    def status(
        lake: LakeOption,
        adopt: Annotated[
            bool,
            typer.Option(
                help="First validate files that producers wrote straight into the lake "
                "(as `tracehouse run` does)."
            ),
        ] = False,
    ) -> None:
        """Rows received, accepted and quarantined per dataset, day and source."""
        from rich.console import Console
        from rich.table import Table

        from tracehouse.lake import adopt_unregistered, lake_status

        if not lake.is_dir():
            raise typer.BadParameter(f"no lake folder at {lake}", param_hint="--lake")
        if adopt:
            adopt_unregistered(lake)
        rows = lake_status(lake).to_pylist()
        table = Table(title=f"lake {lake}")
        for col in ("dataset", "dt", "source", "batches", "received", "accepted",
                    "quarantined", "reconciled"):
            table.add_column(col, justify="right" if col not in ("dataset", "dt", "source")
                             else "left")
        for r in rows:
            table.add_row(*(str(r[c]) if c != "reconciled" else ("yes" if r[c] else "NO")
                            for c in ("dataset", "dt", "source", "batches", "received",
                                      "accepted", "quarantined", "reconciled")))
        console = Console()
        console.print(table)
        totals = {k: sum(r[k] for r in rows) for k in ("received", "accepted", "quarantined")}
        bad = [r for r in rows if not r["reconciled"]]
        console.print(
            f"received {totals['received']:,} = accepted {totals['accepted']:,} + "
            f"quarantined {totals['quarantined']:,}"
            + ("" if not bad else f"; {len(bad)} day(s) do NOT reconcile")
        )
        if bad:
            raise typer.Exit(1)

    @lake_app.command("compact")
    def compact(
        lake: LakeOption,
        dataset: Annotated[
            list[str] | None,
            typer.Option("--dataset", help="Only this dataset (repeatable): spans, feedback, "
                         "annotations. Default: all."),
        ] = None,
        day: Annotated[
            list[str] | None,
            typer.Option("--day", help="Only this day folder, YYYY-MM-DD (repeatable)."),
        ] = None,
        min_files: Annotated[
            int, typer.Option(help="Compact a day folder only if it has this many batch files.")
        ] = 2,
    ) -> None:
        """Merge each day's batch files into one file per dataset and day, atomically.

        Every row keeps its batch (`lake status` still reconciles); a reader sees the day's old
        files or the merged one, never both or neither. The warehouse rebuilds nothing for it.
        """
        from tracehouse.compaction import compact_lake

        if not lake.is_dir():
            raise typer.BadParameter(f"no lake folder at {lake}", param_hint="--lake")
        reports = compact_lake(lake, datasets=dataset or None, days=day or None,
                               min_files=min_files)
        files = sum(len(r.inputs) for r in reports)
        rows = sum(r.rows for r in reports)
        typer.echo(f"compacted {len(reports)} day folder(s): {files} files -> {len(reports)}, "
                   f"{rows:,} rows")

