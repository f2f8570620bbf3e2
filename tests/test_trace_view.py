"""The drill-down: a failed trace from a small lake is explained (lost chunk, missing tool, ...)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from tests.test_quality import small_warehouse
from tracehouse.cli import app
from tracehouse.trace_view import (
    TraceFilter,
    TraceView,
    chunk_journey,
    explain,
    find_traces,
    load_trace,
    render_html,
    render_text,
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_warehouse(tmp_path_factory)[1]


def _one(warehouse: Path, where: str) -> str:
    con = duckdb.connect(str(warehouse / "tracehouse.duckdb"), read_only=True)
    try:
        row = con.execute(
            f"SELECT trace_id FROM marts.fct_requests WHERE {where} ORDER BY trace_id LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    if row is None:
        pytest.skip(f"the small lake has no trace where {where}")
    return str(row[0])


# --- unit: the chunk journey and the findings on a hand-made trace -------------------------


def _view() -> TraceView:
    request = {"trace_id": "a" * 32, "relevant_chunk_ids": ["c2", "c9", "c5"],
               "missing_required_tools": ["billing_lookup"], "is_required_tool_missing": True,
               "tools_called": [], "failure_category": "retrieval_miss", "correctness": 0.2}
    spans = [
        {"span_id": "r", "parent_span_id": None, "span_type": "request", "status": "ok",
         "offset_ms": 0.0, "duration_ms": 1000.0, "depth": 0},
        {"span_id": "s1", "parent_span_id": "r", "span_type": "retrieval", "status": "ok",
         "chunk_ids": ["c1", "c2", "c3", "c5"], "top_k_returned": 4, "offset_ms": 10.0,
         "duration_ms": 50.0, "depth": 1},
        {"span_id": "s2", "parent_span_id": "r", "span_type": "rerank", "status": "ok",
         "selected_chunk_ids": ["c1", "c3", "c5"], "offset_ms": 60.0, "duration_ms": 20.0,
         "depth": 1},
        {"span_id": "s3", "parent_span_id": "r", "span_type": "context_assembly", "status": "ok",
         "included_chunk_ids": ["c1", "c3"], "truncated": True, "token_budget": 4000,
         "excluded_chunks": [{"chunk_id": "c5", "reason": "budget"}], "offset_ms": 80.0,
         "duration_ms": 5.0, "depth": 1},
        {"span_id": "s4", "parent_span_id": "r", "span_type": "tool_call", "status": "timeout",
         "tool_name": "crm", "error_category": "dependency_down", "offset_ms": 90.0,
         "duration_ms": 800.0, "args_redacted": '{"email": "jane.doe@example.com"}', "depth": 1},
    ]
    view = TraceView("a" * 32, request, spans, feedback=[{"feedback_type": "thumbs_down"}])
    view.chunks = chunk_journey(view)
    return view


def test_chunk_journey_says_where_each_relevant_chunk_was_lost() -> None:
    view = _view()
    lost = {c.chunk_id: c.lost_at for c in view.chunks if c.relevant}
    assert lost == {"c2": "rerank", "c9": "retrieval", "c5": "context_assembly"}
    findings = " ".join(explain(view))
    assert "c2" in findings and "dropped by the reranker" in findings
    assert "c9 was never retrieved" in findings
    assert "c5" in findings and "budget" in findings
    assert "Required tool billing_lookup was never called" in findings
    assert "Context truncated" in findings
    assert "Tool crm failed: timeout" in findings
    assert "thumbs_down" in findings


def test_tool_arguments_are_masked_again_on_display() -> None:
    text = render_text(_view())
    assert "jane.doe@example.com" not in text
    html = render_html(_view())
    assert "jane.doe@example.com" not in html and "<script" not in html


# --- end to end on a small generated lake ---------------------------------------------------


@pytest.mark.slow
def test_a_retrieval_failure_names_the_lost_relevant_chunk(warehouse: Path) -> None:
    trace_id = _one(warehouse, "is_retrieval_judged AND NOT coalesce(is_retrieval_hit, true)")
    view = load_trace(warehouse, trace_id[:12])  # a prefix is enough
    assert view.trace_id == trace_id
    relevant = [c for c in view.chunks if c.relevant]
    assert relevant and all(not c.included for c in relevant)
    text = render_text(view)
    for c in relevant:
        assert c.chunk_id in text
    assert re.search(r"never retrieved|dropped by the reranker|excluded at context assembly", text)
    # the waterfall: one row per span, bars scaled to the root
    assert "Timeline (bars scaled to the request's" in text
    assert text.count("█") >= len(view.spans)


@pytest.mark.slow
def test_a_missing_tool_and_a_truncation_are_named(warehouse: Path) -> None:
    tool_trace = _one(warehouse, "is_required_tool_missing")
    text = render_text(load_trace(warehouse, tool_trace))
    assert re.search(r"Required tool \S+ was never called", text)
    truncated = _one(warehouse, "is_context_truncated")
    text = render_text(load_trace(warehouse, truncated))
    assert "Context truncated to the token budget" in text
    assert "tokens by section: system" in text


@pytest.mark.slow
def test_trace_and_traces_commands(warehouse: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["traces", "--warehouse", str(warehouse), "--thumbs-down",
                                 "--limit", "5"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    rows = find_traces(warehouse, TraceFilter(thumbs_down=True, limit=5))
    assert rows and rows[0]["trace_id"] in listed.output
    assert [r["suspicion"] for r in rows] == sorted((r["suspicion"] for r in rows), reverse=True)
    page = tmp_path / "trace.html"
    shown = runner.invoke(app, ["trace", "--warehouse", str(warehouse), rows[0]["trace_id"],
                                "--html", str(page)], env={"COLUMNS": "160"})
    assert shown.exit_code == 0, shown.output
    assert "What went wrong" in shown.output
    html = page.read_text()
    assert rows[0]["trace_id"] in html and "class='bar'" in html
    bad = runner.invoke(app, ["traces", "--warehouse", str(warehouse), "--version", "nope"])
    assert bad.exit_code != 0
    missing = runner.invoke(app, ["trace", "--warehouse", str(warehouse), "f" * 32])
    assert missing.exit_code == 1


def _long_rows(n: int) -> list[dict[str, object]]:
    from datetime import datetime

    return [{"trace_id": f"{i:02d}" + "f" * 30, "event_time": datetime(2026, 1, 3, 14, i),
             "route_name": "premium_reasoning_with_a_long_name", "model_name": "gpt-4.1-2025",
             "status": "error", "final_status": "escalated_to_human",
             "failure_category": None if i % 2 else "retrieval_miss",
             "failure_tags": ["context_truncation", "tool_execution_failure"],
             "has_thumbs_down": bool(i % 2), "cost_usd": 0.00112 * i, "duration_ms": 3260.0 * i}
            for i in range(1, n + 1)]


@pytest.mark.parametrize("width", [80, 120])
def test_the_trace_list_has_one_line_per_trace_within_the_terminal(width: int) -> None:
    from rich.console import Console

    from tracehouse.trace_view import render_trace_list

    rows = _long_rows(5)
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115, PTH123
    render_trace_list(rows, console)
    lines = console.export_text().rstrip("\n").split("\n")
    assert len(lines) == 2 + len(rows)  # title, header, one line per trace
    assert max(len(line) for line in lines) <= width
    for row, line in zip(rows, lines[2:], strict=True):
        assert line.startswith(str(row["trace_id"])[:12])
        assert ("TD" in line) == row["has_thumbs_down"]
    assert "retrieval_mi" in lines[3]  # the human label, else the rule-based tags
    assert "context_trun" in lines[2]


@pytest.mark.slow
def test_traces_command_fits_80_columns(warehouse: Path) -> None:
    listed = CliRunner().invoke(app, ["traces", "--warehouse", str(warehouse), "--limit", "8"],
                                env={"COLUMNS": "80"})
    assert listed.exit_code == 0, listed.output
    lines = listed.output.rstrip("\n").split("\n")
    table = [line for line in lines if not line.startswith("open one with")]
    assert len(table) == 2 + 8 and max(len(line) for line in table) <= 80
    ids = [r["trace_id"] for r in find_traces(warehouse, TraceFilter(limit=8))]
    assert [line[:12] for line in table[2:]] == [t[:12] for t in ids]
