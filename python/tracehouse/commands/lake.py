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
                    "quarantined", "expired", "reconciled"):
            table.add_column(col, justify="right" if col not in ("dataset", "dt", "source")
                             else "left")
        for r in rows:
            table.add_row(*(str(r[c]) if c != "reconciled" else ("yes" if r[c] else "NO")
                            for c in ("dataset", "dt", "source", "batches", "received",
                                      "accepted", "quarantined", "expired", "reconciled")))
        console = Console()
        console.print(table)
        totals = {k: sum(r[k] for r in rows)
                  for k in ("received", "accepted", "quarantined", "expired")}
        bad = [r for r in rows if not r["reconciled"]]
        console.print(
            f"received {totals['received']:,} = accepted {totals['accepted']:,} + "
            f"quarantined {totals['quarantined']:,}"
            + (f" + expired {totals['expired']:,}" if totals["expired"] else "")
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
        Never under a build: exits 75 at once while a `tracehouse run` reads the lake.
        """
        from tracehouse.compaction import compact_lake

        if not lake.is_dir():
            raise typer.BadParameter(f"no lake folder at {lake}", param_hint="--lake")
        # a held lake lock (LakeBusyError) exits 75 through the CLI's one error handler
        reports = compact_lake(lake, datasets=dataset or None, days=day or None,
                               min_files=min_files)
        files = sum(len(r.inputs) for r in reports)
        rows = sum(r.rows for r in reports)
        typer.echo(f"compacted {len(reports)} day folder(s): {files} files -> {len(reports)}, "
                   f"{rows:,} rows")

    @lake_app.command("expire")
    def expire(
        lake: LakeOption,
        warehouse: Annotated[Path, typer.Option(
            envvar="TRACEHOUSE_WAREHOUSE", help="The built warehouse: the aggregates of the "
            "days that expire are archived from it first. Env: TRACEHOUSE_WAREHOUSE.")],
        policy: Annotated[Path | None, typer.Option(
            envvar="TRACEHOUSE_POLICY", help="Privacy policy TOML (its lake section: "
            "retention classes per tenant and tier). Env: TRACEHOUSE_POLICY.")] = None,
        dry_run: Annotated[bool, typer.Option(help="Only count what would expire.")] = False,
    ) -> None:
        """Apply retention: drop expired traces' span rows and old tier-2 text, keeping the
        published aggregates of those days (archived) and a ledger of what went."""
        from tracehouse.artifacts.policy import load_policy
        from tracehouse.retention import expire_lake

        report = expire_lake(lake, warehouse, load_policy(policy), dry_run=dry_run)
        verb = "would expire" if dry_run else "expired"
        texts = ", ".join(f"{n:,} {d}" for d, n in sorted(report.text_expired_rows.items()))
        typer.echo(
            f"{verb} {report.expired_traces:,} traces ({report.expired_span_rows:,} span rows)"
            f"; tier-2 text of {texts or '0'} rows; {report.files_rewritten} files rewritten; "
            f"aggregates of {len(report.archived_days)} day(s) archived"
            + ("" if dry_run else f"; ledger run {report.run_id}")
        )
