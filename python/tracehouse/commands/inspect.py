"""`tracehouse report`, `tracehouse trace`, `tracehouse traces`: look at what the warehouse says."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from tracehouse.commands.run import WarehouseOption


def _parse_day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)",
                                 param_hint=option) from None


def register(app: typer.Typer) -> None:
    """Add `report`, `trace` and `traces` to ``app``."""

    @app.command("report")
    def report_command(  # noqa: PLR0917
        warehouse: WarehouseOption,
        out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path(
            "report.html"
        ),
        start: Annotated[
            str | None, typer.Option(help="First day to show (YYYY-MM-DD); default: all.")
        ] = None,
        end: Annotated[
            str | None, typer.Option(help="Last day to show (YYYY-MM-DD); default: all.")
        ] = None,
        metric: Annotated[
            str | None,
            typer.Option(help="Only this metric's change points and series, e.g. error_rate."),
        ] = None,
        segment: Annotated[
            str | None,
            typer.Option(help="Only this segment, e.g. 'route_name=cheap' or 'all'."),
        ] = None,
        truth: Annotated[
            Path | None,
            typer.Option(help="A generator truth file: add a table of the injected incidents "
                              "against the detected changes (demo lakes)."),
        ] = None,
        notebook: Annotated[
            Path | None,
            typer.Option(help="Keep the executed notebook (.ipynb) here as well."),
        ] = None,
        timeout: Annotated[
            int, typer.Option(help="Seconds a notebook cell may run before the report fails.")
        ] = 600,
    ) -> None:
        """Run the regression notebook on the published marts; write self-contained HTML."""
        from tracehouse.report import build_report

        _parse_day(start, "--start")
        _parse_day(end, "--end")
        result = build_report(warehouse, out, start=start, end=end, metric=metric,
                              segment=segment, truth=truth, executed_notebook=notebook,
                              timeout=timeout)
        typer.echo(f"report     {result.seconds:6.1f}s  {result.images} plots -> {result.html}")

    @app.command("trace")
    def trace_command(  # noqa: PLR0917
        trace_id: Annotated[str, typer.Argument(help="Trace id (or a unique prefix of it).")],
        warehouse: WarehouseOption,
        html: Annotated[
            Path | None,
            typer.Option("--html", help="Also write the drill-down as a standalone HTML page."),
        ] = None,
        width: Annotated[
            int | None, typer.Option(help="Terminal width to render for (default: detected).")
        ] = None,
        content: Annotated[bool, typer.Option(
            "--content", help="Also show tier-3 content (full prompts, outputs): needs an "
            "allowed TRACEHOUSE_ROLE and --reason; the read is audited first.")] = False,
        reason: Annotated[str | None, typer.Option(help="Why you read the content (audited).")
                          ] = None,
        lake: Annotated[Path | None, typer.Option(envvar="TRACEHOUSE_LAKE",
                                                  help="Lake (audit log) for --content.")] = None,
        artifact_dir: Annotated[Path | None, typer.Option(
            envvar="TRACEHOUSE_ARTIFACT_DIR", help="Tier-3 store for --content.")] = None,
        policy: Annotated[Path | None, typer.Option(
            envvar="TRACEHOUSE_POLICY", help="Privacy policy TOML for --content.")] = None,
    ) -> None:
        """One request, explained: span waterfall, decisions per span, chunks, feedback, labels."""
        from rich.console import Console

        from tracehouse.trace_view import load_trace, render_console, render_html

        view = load_trace(warehouse, trace_id)
        render_console(view, Console(width=width) if width else Console())
        if content:
            from tracehouse.commands.artifacts import show_trace_content

            show_trace_content(trace_id=view.trace_id, warehouse=warehouse, lake=lake,
                               artifact_dir=artifact_dir, policy=policy, reason=reason)
        if html is not None:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(render_html(view), encoding="utf-8")
            typer.echo(f"wrote {html}")

    @app.command("traces")
    def traces_command(  # noqa: PLR0917
        warehouse: WarehouseOption,
        failure_category: Annotated[
            str | None,
            typer.Option(help="Human label, e.g. retrieval_miss, missing_tool_call."),
        ] = None,
        tag: Annotated[
            str | None,
            typer.Option(help="Rule-based failure tag, e.g. context_truncation, "
                              "tool_execution_failure."),
        ] = None,
        version: Annotated[
            list[str] | None,
            typer.Option(help="dim=value, repeatable: prompt_version=v7, release_sha=abc123, "
                              "retriever_version=..., model_name=..., tenant_id=..."),
        ] = None,
        route: Annotated[str | None, typer.Option(help="route_name.")] = None,
        thumbs_down: Annotated[
            bool, typer.Option("--thumbs-down", help="Only traces a user gave a thumbs-down.")
        ] = False,
        day: Annotated[
            str | None, typer.Option("--date", help="Only traces of this day (YYYY-MM-DD, UTC).")
        ] = None,
        limit: Annotated[int, typer.Option(help="How many traces to list.")] = 20,
    ) -> None:
        """List traces by filters, most suspicious first, to find one to open with `trace`."""
        from tracehouse.trace_view import TraceFilter, find_traces, render_trace_list

        versions: dict[str, str] = {}
        for item in version or []:
            dim, sep, value = item.partition("=")
            if not sep or not dim or not value:
                raise typer.BadParameter(f"{item!r} is not dim=value", param_hint="--version")
            versions[dim.strip()] = value.strip()
        filters = TraceFilter(failure_category=failure_category, tag=tag, versions=versions,
                              route=route, thumbs_down=thumbs_down,
                              day=_parse_day(day, "--date"), limit=limit)
        rows = find_traces(warehouse, filters)
        render_trace_list(rows)
        if rows:
            typer.echo(f"open one with: tracehouse trace --warehouse {warehouse} "
                       f"{rows[0]['trace_id']}")

