"""`tracehouse alerts`: the alert state, and a test alert to every configured destination."""

from __future__ import annotations

from typing import Annotated

import typer

from tracehouse.commands.run import WarehouseOption

STATUSES = ("open", "resolved", "all")


def register(app: typer.Typer) -> None:
    """Add the `alerts` command group to ``app``."""
    alerts_app = typer.Typer(help="Alerts: their state across runs, and where they are sent.",
                             no_args_is_help=True)
    app.add_typer(alerts_app, name="alerts")

    @alerts_app.command("list")
    def list_command(
        warehouse: WarehouseOption,
        status: Annotated[
            str, typer.Option(help="Which alerts: open, resolved or all.")
        ] = "open",
    ) -> None:
        """Alerts with their lifecycle: first raised, last seen, status, delivery."""
        from tracehouse.alerting import load_state

        if status not in STATUSES:
            raise typer.BadParameter(f"--status is one of {', '.join(STATUSES)}")
        rows = load_state(warehouse).to_pylist()
        rows = [r for r in rows if status == "all" or r["status"] == status]
        if not rows:
            typer.echo(f"no {status if status != 'all' else ''} alerts".replace("  ", " "))
            return
        for r in rows:
            sent = (f"sent {r['notified_severity']} {r['notified_at']:%Y-%m-%d %H:%M}"
                    if r["notified_at"] else "not sent")
            state = r["status"] if r["status"] == "open" else f"{r['resolution']}"
            typer.echo(f"{r['alert_id']}  [{r['severity'].upper():<8}] {state:<9} "
                       f"first {r['first_raised_at']:%Y-%m-%d %H:%M}  {sent}")
            typer.echo(f"    {r['message']}")

    @alerts_app.command("test")
    def test_command() -> None:
        """Send one test alert to every destination configured in the environment.

        Destinations: TRACEHOUSE_ALERT_WEBHOOK_URL (JSON webhook) and
        TRACEHOUSE_SLACK_WEBHOOK_URL (Slack-compatible incoming webhook). Exits 1 when none
        is configured or one did not take the alert.
        """
        from tracehouse.alerting import send_test_alert

        deliveries = send_test_alert()
        if not deliveries:
            typer.secho("no destination configured: set TRACEHOUSE_ALERT_WEBHOOK_URL and/or "
                        "TRACEHOUSE_SLACK_WEBHOOK_URL", err=True, fg="red")
            raise typer.Exit(1)
        for d in deliveries:
            outcome = (f"delivered (HTTP {d.status})" if d.ok
                       else f"FAILED after {d.attempts} attempt(s): {d.error}")
            typer.echo(f"{d.destination}: {outcome}")
        if not all(d.ok for d in deliveries):
            raise typer.Exit(1)
