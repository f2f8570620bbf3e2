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
        spool_grace_seconds: Annotated[
            float,
            typer.Option(
                help="Rows in <lake>/_spool older than this are reported as stuck (not "
                "reconciled, exit 1); younger ones are in flight in a running receiver."
            ),
        ] = 60.0,
    ) -> None:
        """Rows received, accepted and quarantined per dataset, day and source; plus the rows
        a receiver acknowledged that are not in the lake yet (its spool)."""
        from rich.console import Console
        from rich.table import Table

        from tracehouse.lake import adopt_unregistered, lake_status, spool_status

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
        spool = spool_status(lake).to_pylist()
        stuck = False
        if spool:
            spooled = sum(r["rows"] for r in spool)
            files = sum(r["files"] for r in spool)
            oldest = max(r["oldest_age_s"] for r in spool)
            stuck = oldest > spool_grace_seconds or any(r["dataset"] == "unreadable"
                                                        for r in spool)
            by = ", ".join(f"{r['dataset']}/{r['source']}: {r['rows']:,} in {r['files']} "
                           f"file(s)" for r in spool)
            console.print(
                f"spool: {spooled:,} row(s) acknowledged but not yet in the lake "
                f"({files} file(s), oldest {oldest:,.0f} s; {by})"
                + ("; NOT reconciled: the spool is stuck (a receiver that is not running "
                   "replays it at start; see its log)" if stuck else "; in flight")
            )
        else:
            console.print("spool: empty (every acknowledged row is in the lake)")
        if bad or stuck:
            raise typer.Exit(1)
