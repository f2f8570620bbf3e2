"""Finding traces by filters, most suspicious first, and listing them in a terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tracehouse.errors import InvalidInputError
from tracehouse.trace_view.fields import _fmt, _ms, _usd
from tracehouse.trace_view.load import _rows, connect
from tracehouse.trace_view.model import Row
from tracehouse.warehouse import MARTS_SCHEMA

VERSION_DIMENSIONS = (
    "release_sha", "app_version", "prompt_version", "retriever_version", "index_version",
    "embedding_version", "reranker_version", "route_policy_version", "classifier_version",
    "planner_version", "system_prompt_version", "model_name", "model_provider", "route_name",
    "tenant_id", "task_type", "intent", "environment",
)

SUSPICION_SQL = """
    (CASE WHEN failure_category IS NOT NULL THEN 4 ELSE 0 END)
    + (CASE WHEN has_thumbs_down THEN 3 ELSE 0 END)
    + (CASE WHEN has_escalation THEN 3 ELSE 0 END)
    + (CASE WHEN is_error THEN 2 ELSE 0 END)
    + (CASE WHEN coalesce(final_status, 'success') <> 'success' THEN 1 ELSE 0 END)
    + coalesce(len(failure_tags), 0)
    + (CASE WHEN is_successful_task THEN 0 ELSE 1 END)
"""


@dataclass
class TraceFilter:
    """Filters of `tracehouse traces`; every one optional."""

    failure_category: str | None = None
    tag: str | None = None
    versions: dict[str, str] = field(default_factory=dict)  # dim -> value
    route: str | None = None
    thumbs_down: bool = False
    day: date | None = None
    limit: int = 20


def find_traces(warehouse: Path | str, filters: TraceFilter) -> list[Row]:
    """Traces matching ``filters``, most suspicious first (labelled failures, thumbs-down,
    escalations, errors, rule-based failure tags), then most expensive."""
    clauses: list[str] = []
    params: list[Any] = []
    if filters.failure_category:
        clauses.append("failure_category = ?")
        params.append(filters.failure_category)
    if filters.tag:
        clauses.append("list_contains(failure_tags, ?)")
        params.append(filters.tag)
    for dim, value in filters.versions.items():
        if dim not in VERSION_DIMENSIONS:
            raise InvalidInputError(
                f"unknown dimension {dim!r}; use one of {', '.join(VERSION_DIMENSIONS)}"
            )
        clauses.append(f'"{dim}" = ?')
        params.append(value)
    if filters.route:
        clauses.append("route_name = ?")
        params.append(filters.route)
    if filters.thumbs_down:
        clauses.append("has_thumbs_down")
    if filters.day:
        clauses.append("trace_date = ?")
        params.append(filters.day)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    con = connect(warehouse)
    try:
        return _rows(
            con,
            f"""
            SELECT trace_id, event_time, route_name, model_name, task_type, status, final_status,
                   failure_category, failure_tags, has_thumbs_down, cost_usd, duration_ms,
                   {SUSPICION_SQL} AS suspicion
            FROM {MARTS_SCHEMA}.fct_requests {where}
            ORDER BY suspicion DESC, cost_usd DESC NULLS LAST, trace_id
            LIMIT {int(filters.limit)}
            """,
            params,
        )
    finally:
        con.close()


TRACE_ID_WIDTH = 12  # a prefix `tracehouse trace` accepts; 48 bits, unique in practice


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def trace_list_lines(rows: list[Row], width: int = 80) -> list[str]:
    """The result of :func:`find_traces` as fixed-width lines, one per trace, ``width`` wide.

    Columns: trace id prefix, start (UTC), route / model, final status, why it is suspicious
    (human label, else the rule-based failure tags), thumbs-down, cost, duration. The two text
    columns share what the fixed ones leave of ``width``.
    """
    fixed = {"trace": TRACE_ID_WIDTH, "started": 11, "status": 8, "td": 2, "cost": 8,
             "time": 7}
    gaps = 7
    free = max(16, width - sum(fixed.values()) - gaps)
    route_w = max(8, free // 2)
    why_w = max(8, free - route_w)

    def line(cells: list[tuple[str, int, str]]) -> str:
        parts = [(f"{_short(t, w):>{w}}" if align == ">" else f"{_short(t, w):<{w}}")
                 for t, w, align in cells]
        return " ".join(parts).rstrip()

    header = line([("trace", fixed["trace"], "<"), ("started UTC", fixed["started"], "<"),
                   ("route/model", route_w, "<"), ("status", fixed["status"], "<"),
                   ("why", why_w, "<"), ("TD", fixed["td"], "<"),
                   ("cost", fixed["cost"], ">"), ("time", fixed["time"], ">")])
    out = [header]
    for r in rows:
        started = r["event_time"].strftime("%m-%d %H:%M") if r.get("event_time") else "-"
        why = str(r.get("failure_category") or "") or (
            _fmt(r["failure_tags"]) if r.get("failure_tags") else "")
        status = str(r.get("final_status") or r.get("status") or "-")
        out.append(line([
            (str(r["trace_id"])[:TRACE_ID_WIDTH], fixed["trace"], "<"),
            (started, fixed["started"], "<"),
            (f"{r.get('route_name')} / {r.get('model_name')}", route_w, "<"),
            (status, fixed["status"], "<"), (why, why_w, "<"),
            ("TD" if r.get("has_thumbs_down") else "", fixed["td"], "<"),
            (_usd(r.get("cost_usd")), fixed["cost"], ">"),
            (_ms(r.get("duration_ms")), fixed["time"], ">"),
        ]))
    return out


def render_trace_list(rows: list[Row], console: Any = None) -> None:
    """Print the result of :func:`find_traces`: one line per trace, as wide as the terminal.

    Fits 80 columns (TD marks a thumbs-down); wider terminals give the route and the reasons
    more room.
    """
    from rich.console import Console

    console = console or Console()
    console.print(f"{len(rows)} traces, most suspicious first", highlight=False)
    for text in trace_list_lines(rows, width=min(max(console.width, 60), 200)):
        console.print(text, highlight=False, markup=False, soft_wrap=True)
