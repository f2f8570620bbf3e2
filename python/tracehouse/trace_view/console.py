"""The drill-down in a terminal, with rich: header, findings, waterfall, decisions, chunks."""

from __future__ import annotations

from typing import Any

from tracehouse.trace_view.explain import explain
from tracehouse.trace_view.fields import (
    _annotation_lines,
    _feedback_lines,
    _header_fields,
    _ms,
    _span_label,
    _usd,
    decision_fields,
)
from tracehouse.trace_view.model import TraceView, _num

STATUS_STYLE = {"ok": "green", "error": "red", "timeout": "red", "blocked": "magenta",
                "degraded": "yellow"}


def _bar(offset: float, duration: float, total: float, width: int) -> tuple[int, int]:
    total = max(total, 1e-9)
    start = min(width - 1, max(0, round(offset / total * width)))
    length = max(1, round(duration / total * width))
    return start, min(length, width - start)


def render_console(view: TraceView, console: Any = None, *, bar_width: int | None = None) -> None:
    """Print the trace with rich: header, findings, waterfall, decisions, chunks, feedback."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    if bar_width is None:  # what is left of the width after the other columns
        label_width = max((len(_span_label(s)) + 2 * int(s.get("depth", 0))
                           for s in view.spans), default=20)
        bar_width = max(16, min(60, console.width - label_width - 56))
    console.rule(f"[bold]trace {view.trace_id}")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for k, v in _header_fields(view):
        head.add_row(k, v)
    console.print(head)

    findings = explain(view)
    console.print()
    console.print("[bold]What went wrong[/bold]" if findings else "[bold]Findings[/bold]")
    for line in findings or ["Nothing unusual found in the spans, feedback or labels."]:
        console.print(f"  - {line}", highlight=False)

    total = view.duration_ms
    table = Table(title=f"Timeline (bars scaled to the request's {_ms(total)})",
                  title_justify="left", show_lines=False, pad_edge=False)
    table.add_column("span", no_wrap=True)
    table.add_column("status", no_wrap=True, min_width=7)
    table.add_column("start", justify="right", no_wrap=True, min_width=7)
    table.add_column("duration", justify="right", no_wrap=True, min_width=8)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("waterfall", no_wrap=True, min_width=bar_width)
    for s in view.spans:
        off, dur = _num(s.get("offset_ms")) or 0.0, _num(s.get("duration_ms")) or 0.0
        start, length = _bar(off, dur, total, bar_width)
        status = str(s.get("status"))
        bar = Text(" " * start)
        bar.append("█" * length, style=STATUS_STYLE.get(status, "white"))
        bar.append(" " * (bar_width - start - length))
        cost = _num(s.get("cost_usd"))
        table.add_row(
            "  " * int(s.get("depth", 0)) + _span_label(s),
            Text(status, style=STATUS_STYLE.get(status, "")),
            _ms(off), _ms(dur), _usd(cost) if cost else "", bar,
        )
    console.print()
    console.print(table)

    console.print()
    console.print("[bold]Decisions, span by span[/bold]")
    for s in view.spans:
        fields = decision_fields(s)
        if not fields:
            continue
        status = str(s.get("status"))
        console.print(
            Text("  " * int(s.get("depth", 0)) + f"{s.get('span_type')}: {_span_label(s)} ")
            + Text(f"({status})", style=STATUS_STYLE.get(status, ""))
        )
        for label, value in fields:
            console.print(f"{'  ' * int(s.get('depth', 0))}    {label}: {value}", highlight=False,
                          soft_wrap=True)

    if view.chunks:
        chunks = Table(title="Chunk journey: retrieved -> selected by rerank -> included in the "
                             "prompt (* judged relevant)", title_justify="left")
        for col in ("chunk", "retrieved", "reranked", "prompt", "lost at"):
            chunks.add_column(col, no_wrap=True)
        for c in view.chunks:
            style = "bold red" if c.relevant and not c.included else (
                "bold green" if c.relevant else "")
            chunks.add_row(
                Text(("* " if c.relevant else "  ") + c.chunk_id, style=style),
                f"#{c.retrieved_rank}" if c.retrieved_rank else "-",
                f"#{c.selected_rank}" if c.selected_rank else "-",
                "included" if c.included else (f"excluded: {c.excluded_reason}"
                                               if c.excluded_reason else "-"),
                Text(c.lost_at or "", style="red") if c.relevant else "",
            )
        console.print()
        console.print(chunks)

    console.print()
    console.print("[bold]Feedback[/bold]")
    for line in _feedback_lines(view) or ["none"]:
        console.print(f"  {line}", highlight=False)
    console.print("[bold]Labels[/bold]")
    for line in _annotation_lines(view) or ["none"]:
        console.print(f"  {line}", highlight=False)


def render_text(view: TraceView, *, width: int = 140) -> str:
    """The console rendering as plain text (no colours)."""
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None, force_terminal=False,
                      file=open("/dev/null", "w"))  # noqa: SIM115, PTH123
    try:
        render_console(view, console)
        return console.export_text()
    finally:
        console.file.close()
