"""The request drill-down: one trace, its span tree as a timeline, and every decision it made.

:func:`load_trace` reads one trace from the current publication (``marts.fct_requests``,
``marts.fct_spans``, and the published feedback and annotation events), :func:`explain`
says in plain sentences what went wrong (the relevant chunk lost at rerank, the required tool
never called, the context truncated, the validator that blocked), :func:`render_console` prints
it with rich (a waterfall scaled to the root's duration, then the decision fields of each span),
and :func:`render_html` writes the same as a standalone page (inline CSS, no scripts).
:func:`find_traces` lists traces by filters, most suspicious first, to find one to open.
"""

from __future__ import annotations

from tracehouse.trace_view.console import render_console, render_text
from tracehouse.trace_view.explain import explain
from tracehouse.trace_view.fields import decision_fields
from tracehouse.trace_view.find import TraceFilter, find_traces, render_trace_list
from tracehouse.trace_view.load import connect, load_trace, load_trace_from
from tracehouse.trace_view.model import ChunkStep, Row, TraceNotFoundError, TraceView, chunk_journey
from tracehouse.trace_view.page import render_html

__all__ = [
    "ChunkStep", "Row", "TraceFilter", "TraceNotFoundError", "TraceView", "chunk_journey",
    "connect", "decision_fields", "explain", "find_traces", "load_trace", "load_trace_from",
    "render_console", "render_html", "render_text", "render_trace_list",
]
