"""Bring your history: Langfuse and Phoenix exports land through redaction and the validator.

The fixtures follow each tool's documented export schema: Langfuse's blob-storage export
(legacy ``traces/`` and ``observations/`` tables, ``scores/``; snake_case fields, timestamps
as ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC in JSON lines) and Phoenix's
``px.Client().get_spans_dataframe()`` saved as Parquet (``context.trace_id``,
``attributes.llm.token_count.prompt``, ...). Each holds one bad row that must be quarantined.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tracehouse.cli import app
from tracehouse.history.langfuse import ingest_langfuse
from tracehouse.history.phoenix import ingest_phoenix
from tracehouse.lake import lake_status
from tracehouse.redaction import Redactor

KEY = "0123456789abcdef0123456789abcdef"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UUID_TRACE = "3f2a9c1e-7b4d-4e8f-9a6b-1c2d3e4f5a6b"


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def _jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def langfuse_export(root: Path) -> Path:
    """A legacy-mode export: traces (JSONL), observations (Parquet), scores (JSONL)."""
    _jsonl(root / "traces" / "2026-03-02" / "traces.jsonl", [
        {"id": "lf-trace-1", "timestamp": _ts(T0), "name": "support-chat",
         "environment": "production", "user_id": "alice@example.com", "session_id": "sess-9",
         "release": "abc123", "version": "2.4.0", "tags": ["beta"],
         "input": json.dumps({"query": "Refund to jane@example.com please"}),
         "output": json.dumps("Sure, here is how"),
         "metadata": json.dumps({"tenant_id": "acme", "task_type": "support",
                                 "route_name": "standard"}),
         "public": False, "bookmarked": False, "project_id": "p1"},
        {"id": UUID_TRACE, "timestamp": _ts(T0 + timedelta(minutes=5)), "name": "qa",
         "environment": "default", "user_id": None, "session_id": None, "release": None,
         "version": None, "tags": [], "input": json.dumps("what is the SLA?"),
         "output": None, "metadata": "{}", "project_id": "p1"},
    ])
    ts = pa.timestamp("us")  # Parquet exports carry typed (UTC) timestamps
    obs = [
        # trace 1: retriever, generation, a failed tool call
        {"id": "obs-1", "trace_id": "lf-trace-1", "type": "RETRIEVER", "name": "vector_search",
         "parent_observation_id": None, "start_time": T0 + timedelta(milliseconds=10),
         "end_time": T0 + timedelta(milliseconds=90), "level": "DEFAULT",
         "status_message": None, "provided_model_name": None, "usage_details": None,
         "cost_details": None, "total_cost": None, "prompt_name": None,
         "prompt_version": None, "input": "Refund to jane@example.com please",
         "output": "[3 documents]", "metadata": "{}"},
        {"id": "obs-2", "trace_id": "lf-trace-1", "type": "GENERATION", "name": "answer",
         "parent_observation_id": None, "start_time": T0 + timedelta(milliseconds=100),
         "end_time": T0 + timedelta(milliseconds=1300), "level": "DEFAULT",
         "status_message": None, "provided_model_name": "gpt-4o-mini",
         "usage_details": json.dumps({"input": 120, "output": 40, "total": 160}),
         "cost_details": json.dumps({"input": 0.0002, "output": 0.0004, "total": 0.0006}),
         "total_cost": 0.0006, "prompt_name": "support", "prompt_version": 3,
         "input": "[messages]", "output": "Sure, here is how", "metadata": "{}"},
        {"id": "obs-3", "trace_id": "lf-trace-1", "type": "TOOL", "name": "billing_lookup",
         "parent_observation_id": "obs-2", "start_time": T0 + timedelta(milliseconds=400),
         "end_time": T0 + timedelta(milliseconds=5400), "level": "ERROR",
         "status_message": "Timeout after 5s calling billing for alice@example.com",
         "provided_model_name": None, "usage_details": None, "cost_details": None,
         "total_cost": None, "prompt_name": None, "prompt_version": None, "input": None,
         "output": None, "metadata": "{}"},
        # trace 2: one generation, and one observation with no start time (bad row)
        {"id": "obs-4", "trace_id": UUID_TRACE, "type": "GENERATION", "name": "answer",
         "parent_observation_id": None, "start_time": T0 + timedelta(minutes=5, seconds=1),
         "end_time": T0 + timedelta(minutes=5, seconds=2), "level": "DEFAULT",
         "status_message": None, "provided_model_name": "claude-haiku",
         "usage_details": json.dumps({"input": 50, "output": 10}), "cost_details": None,
         "total_cost": None, "prompt_name": None, "prompt_version": None, "input": None,
         "output": None, "metadata": "{}"},
        {"id": "obs-5", "trace_id": UUID_TRACE, "type": "SPAN", "name": "broken",
         "parent_observation_id": None, "start_time": None, "end_time": None,
         "level": "DEFAULT", "status_message": None, "provided_model_name": None,
         "usage_details": None, "cost_details": None, "total_cost": None,
         "prompt_name": None, "prompt_version": None, "input": None, "output": None,
         "metadata": "{}"},
    ]
    table = pa.Table.from_pylist(obs)
    table = table.set_column(table.schema.get_field_index("start_time"), "start_time",
                             table.column("start_time").cast(ts))
    table = table.set_column(table.schema.get_field_index("end_time"), "end_time",
                             table.column("end_time").cast(ts))
    (root / "observations").mkdir(parents=True)
    pq.write_table(table, root / "observations" / "observations.parquet")
    _jsonl(root / "scores" / "scores.jsonl", [
        {"id": "s-1", "timestamp": _ts(T0 + timedelta(hours=2)), "trace_id": "lf-trace-1",
         "observation_id": None, "name": "correctness", "value": 0.25, "data_type": "NUMERIC",
         "string_value": None, "source": "ANNOTATION", "author_user_id": "bob",
         "comment": "missed the refund window"},
        {"id": "s-2", "timestamp": _ts(T0 + timedelta(hours=2)), "trace_id": "lf-trace-1",
         "observation_id": None, "name": "failure_category", "value": None,
         "data_type": "CATEGORICAL", "string_value": "tool_execution_failure",
         "source": "ANNOTATION", "author_user_id": "bob", "comment": None},
        {"id": "s-3", "timestamp": _ts(T0 + timedelta(minutes=1)), "trace_id": "lf-trace-1",
         "observation_id": None, "name": "user-feedback", "value": 0, "data_type": "NUMERIC",
         "string_value": None, "source": "API", "author_user_id": None,
         "comment": "wrong, call me on +44 20 7946 0958"},
        # out of [0, 1]: the trace's annotation is quarantined with the reason
        {"id": "s-4", "timestamp": _ts(T0 + timedelta(hours=3)), "trace_id": UUID_TRACE,
         "observation_id": None, "name": "correctness", "value": 1.7, "data_type": "NUMERIC",
         "string_value": None, "source": "EVAL", "author_user_id": None, "comment": None},
        {"id": "s-5", "timestamp": _ts(T0 + timedelta(hours=3)), "trace_id": UUID_TRACE,
         "observation_id": None, "name": "helpfulness", "value": 0.5, "data_type": "NUMERIC",
         "string_value": None, "source": "EVAL", "author_user_id": None, "comment": None},
    ])
    return root


def _accepted(lake: Path, dataset: str) -> list[dict[str, object]]:
    glob = str(lake / dataset / "dt=*" / "*.parquet")
    return duckdb.sql(f"SELECT * FROM read_parquet('{glob}') ORDER BY event_time NULLS LAST"
                      if dataset != "annotations" else
                      f"SELECT * FROM read_parquet('{glob}')").to_arrow_table().to_pylist()


def test_langfuse_export_lands_spans_labels_feedback_and_quarantines_bad_rows(
    tmp_path: Path,
) -> None:
    export = langfuse_export(tmp_path / "export")
    lake = tmp_path / "lake"
    report = ingest_langfuse(lake, export, Redactor(KEY.encode()))

    assert report.read == {"traces": 2, "observations": 5, "scores": 5}
    by_dataset = {r.dataset: r for r in report.reports}
    spans = by_dataset["spans"]
    # 2 roots + 5 observations; the observation without a start time is quarantined
    assert (spans.received, spans.accepted, spans.quarantined) == (7, 6, 1)
    assert any("event_time" in reason for reason in spans.reject_reasons)
    ann = by_dataset["annotations"]
    assert (ann.received, ann.accepted, ann.quarantined) == (2, 1, 1)
    assert any("correctness" in reason for reason in ann.reject_reasons)
    fb = by_dataset["feedback"]
    assert (fb.received, fb.accepted, fb.quarantined) == (1, 1, 0)
    assert report.not_landed == {"score name not mapped: helpfulness": 1}
    status = lake_status(lake).to_pylist()
    assert all(row["reconciled"] for row in status)
    assert sum(r["received"] for r in status) == 7 + 2 + 1

    rows = _accepted(lake, "spans")
    root = next(r for r in rows if r["request_id"] == "lf-trace-1")
    assert root["span_type"] == "request" and root["parent_span_id"] is None
    assert root["trace_id"] != "lf-trace-1" and len(root["trace_id"]) == 32
    assert (root["tenant_id"], root["task_type"], root["route_name"]) == (
        "acme", "support", "standard")
    assert (root["environment"], root["release_sha"], root["app_version"]) == (
        "prod", "abc123", "2.4.0")
    assert root["status"] == "error"  # one of its observations failed
    assert root["prompt_version"] == "support@3"
    query = json.loads(root["attributes"])["user_query_redacted"]
    assert "jane@example.com" not in query and "[EMAIL]" in query
    assert root["user_id_hash"] != "alice@example.com" and len(root["user_id_hash"]) == 64
    assert "content_withheld" in root["privacy_tags"]
    children = {r["operation_name"]: r for r in rows if r["trace_id"] == root["trace_id"]
                and r["parent_span_id"] is not None}
    assert children["vector_search"]["span_type"] == "retrieval"
    assert children["vector_search"]["parent_span_id"] == root["span_id"]
    gen = children["answer"]
    assert (gen["span_type"], gen["model_name"], gen["input_tokens"], gen["output_tokens"]) == (
        "llm", "gpt-4o-mini", 120, 40)
    assert gen["cost_usd_estimate"] == pytest.approx(0.0006)
    tool = children["billing_lookup"]
    assert (tool["span_type"], tool["tool_name"], tool["status"]) == (
        "tool_call", "billing_lookup", "timeout")
    assert tool["parent_span_id"] == gen["span_id"]
    assert "alice@example.com" not in tool["error_message_redacted"]
    uuid_root = next(r for r in rows if r["request_id"] == UUID_TRACE)
    assert uuid_root["trace_id"] == UUID_TRACE.replace("-", "")
    assert uuid_root["environment"] == "dev"  # Langfuse's "default" -> the default env

    label = _accepted(lake, "annotations")[0]
    assert label["trace_id"] == root["trace_id"]
    assert (label["correctness"], label["failure_category"]) == (0.25, "tool_execution_failure")
    assert label["annotator_id_hash"] != "bob"
    feedback = _accepted(lake, "feedback")[0]
    assert feedback["feedback_type"] == "thumbs_down"
    assert "7946" not in feedback["comment_redacted"]

    # the same export again lands the same ids: the warehouse keeps one row per id
    again = ingest_langfuse(lake, export, Redactor(KEY.encode()))
    ids = duckdb.sql(f"SELECT count(DISTINCT span_id), count(*) FROM read_parquet("
                     f"'{lake}/spans/dt=*/*.parquet')").fetchall()[0]
    assert again.reports[0].accepted == 6 and ids == (6, 12)


def phoenix_spans(path: Path) -> Path:
    """A span dataframe as Phoenix returns it, saved with to_parquet (columns as documented)."""
    tid = "a" * 31 + "1"
    ns = pa.timestamp("ns", tz="UTC")
    doc = pa.struct([("document.id", pa.string()), ("document.score", pa.float64()),
                     ("document.content", pa.string())])
    rows = [
        {"context.span_id": "1" * 16, "context.trace_id": tid, "parent_id": None,
         "name": "rag_pipeline", "span_kind": "CHAIN", "start_time": T0,
         "end_time": T0 + timedelta(seconds=2), "status_code": "OK", "status_message": "",
         "attributes.openinference.span.kind": "CHAIN",
         "attributes.input.value": "my card 4111 1111 1111 1111 was charged twice",
         "attributes.output.value": "I have refunded it", "attributes.llm.model_name": None,
         "attributes.llm.token_count.prompt": None, "attributes.llm.token_count.completion": None,
         "attributes.llm.provider": None, "attributes.retrieval.documents": None,
         "attributes.tool.name": None, "attributes.session.id": "s-1",
         "attributes.user.id": "u-42",
         "attributes.metadata": json.dumps({"tenant_id": "acme", "environment": "production",
                                            "release_sha": "def456"})},
        {"context.span_id": "2" * 16, "context.trace_id": tid, "parent_id": "1" * 16,
         "name": "retrieve", "span_kind": "RETRIEVER",
         "start_time": T0 + timedelta(milliseconds=5),
         "end_time": T0 + timedelta(milliseconds=80), "status_code": "OK",
         "status_message": "", "attributes.openinference.span.kind": "RETRIEVER",
         "attributes.input.value": "charged twice", "attributes.output.value": None,
         "attributes.llm.model_name": None, "attributes.llm.token_count.prompt": None,
         "attributes.llm.token_count.completion": None, "attributes.llm.provider": None,
         "attributes.retrieval.documents": [
             {"document.id": "kb-1", "document.score": 0.9, "document.content": "secret text"},
             {"document.id": "kb-7", "document.score": 0.5, "document.content": "more"}],
         "attributes.tool.name": None, "attributes.session.id": None,
         "attributes.user.id": None, "attributes.metadata": None},
        {"context.span_id": "3" * 16, "context.trace_id": tid, "parent_id": "1" * 16,
         "name": "ChatCompletion", "span_kind": "LLM",
         "start_time": T0 + timedelta(milliseconds=100),
         "end_time": T0 + timedelta(milliseconds=1900), "status_code": "OK",
         "status_message": "", "attributes.openinference.span.kind": "LLM",
         "attributes.input.value": "[messages]", "attributes.output.value": "refunded",
         "attributes.llm.model_name": "gpt-4o", "attributes.llm.token_count.prompt": 812,
         "attributes.llm.token_count.completion": 64, "attributes.llm.provider": "openai",
         "attributes.retrieval.documents": None, "attributes.tool.name": None,
         "attributes.session.id": None, "attributes.user.id": None,
         "attributes.metadata": None},
        {"context.span_id": "4" * 16, "context.trace_id": tid, "parent_id": "3" * 16,
         "name": "refund_tool", "span_kind": "TOOL",
         "start_time": T0 + timedelta(milliseconds=500),
         "end_time": T0 + timedelta(milliseconds=700), "status_code": "ERROR",
         "status_message": "ConnectionError: billing unavailable",
         "attributes.openinference.span.kind": "TOOL", "attributes.input.value": None,
         "attributes.output.value": None, "attributes.llm.model_name": None,
         "attributes.llm.token_count.prompt": None,
         "attributes.llm.token_count.completion": None, "attributes.llm.provider": None,
         "attributes.retrieval.documents": None, "attributes.tool.name": "refund",
         "attributes.session.id": None, "attributes.user.id": None,
         "attributes.metadata": None},
        # bad row: ends before it starts
        {"context.span_id": "5" * 16, "context.trace_id": tid, "parent_id": "1" * 16,
         "name": "postprocess", "span_kind": "GUARDRAIL",
         "start_time": T0 + timedelta(seconds=1), "end_time": T0, "status_code": "OK",
         "status_message": "", "attributes.openinference.span.kind": "GUARDRAIL",
         "attributes.input.value": None, "attributes.output.value": None,
         "attributes.llm.model_name": None, "attributes.llm.token_count.prompt": None,
         "attributes.llm.token_count.completion": None, "attributes.llm.provider": None,
         "attributes.retrieval.documents": None, "attributes.tool.name": None,
         "attributes.session.id": None, "attributes.user.id": None,
         "attributes.metadata": None},
    ]
    schema = pa.schema([
        ("context.span_id", pa.string()), ("context.trace_id", pa.string()),
        ("parent_id", pa.string()), ("name", pa.string()), ("span_kind", pa.string()),
        ("start_time", ns), ("end_time", ns), ("status_code", pa.string()),
        ("status_message", pa.string()), ("attributes.openinference.span.kind", pa.string()),
        ("attributes.input.value", pa.string()), ("attributes.output.value", pa.string()),
        ("attributes.llm.model_name", pa.string()),
        ("attributes.llm.token_count.prompt", pa.float64()),  # pandas: NaN-able floats
        ("attributes.llm.token_count.completion", pa.float64()),
        ("attributes.llm.provider", pa.string()),
        ("attributes.retrieval.documents", pa.list_(doc)),
        ("attributes.tool.name", pa.string()), ("attributes.session.id", pa.string()),
        ("attributes.user.id", pa.string()), ("attributes.metadata", pa.string()),
    ])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_phoenix_spans_land_typed_redacted_with_the_bad_row_quarantined(
    tmp_path: Path,
) -> None:
    spans_file = phoenix_spans(tmp_path / "spans.parquet")
    lake = tmp_path / "lake"
    report = ingest_phoenix(lake, spans_file, Redactor(KEY.encode()))

    batch = report.reports[0]
    assert report.read == {"spans": 5}
    assert (batch.received, batch.accepted, batch.quarantined) == (5, 4, 1)
    assert all(row["reconciled"] for row in lake_status(lake).to_pylist())
    rows = {r["span_id"]: r for r in _accepted(lake, "spans")}
    root = rows["1" * 16]
    assert (root["span_type"], root["tenant_id"], root["environment"], root["release_sha"]) == (
        "request", "acme", "prod", "def456")
    query = json.loads(root["attributes"])["user_query_redacted"]
    assert "4111" not in query and "[CARD]" in query
    assert root["user_id_hash"] != "u-42"
    retrieval = rows["2" * 16]
    attrs = json.loads(retrieval["attributes"])
    assert retrieval["span_type"] == "retrieval" and attrs["chunk_ids"] == ["kb-1", "kb-7"]
    assert attrs["top_k_returned"] == 2 and attrs["score_mean"] == pytest.approx(0.7)
    assert "secret text" not in json.dumps(retrieval, default=str)
    assert "content_withheld" in retrieval["privacy_tags"]
    assert retrieval["tenant_id"] == "acme"  # the envelope is carried from the root
    llm = rows["3" * 16]
    assert (llm["span_type"], llm["model_name"], llm["model_provider"], llm["input_tokens"],
            llm["output_tokens"]) == ("llm", "gpt-4o", "openai", 812, 64)
    tool = rows["4" * 16]
    assert (tool["span_type"], tool["tool_name"], tool["status"]) == ("tool_call", "refund",
                                                                       "error")


def test_history_commands_land_and_report(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEHOUSE_HASH_KEY", KEY)
    export = langfuse_export(tmp_path / "export")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "langfuse", "--lake", str(tmp_path / "lake"),
                                 str(export), "--score-map", "helpfulness=completeness"])
    assert result.exit_code == 0, result.output
    assert "spans batch" in result.output and "quarantined 1" in result.output
    assert "not landed" not in result.output  # helpfulness mapped by --score-map
    result = runner.invoke(app, ["ingest", "phoenix", "--lake", str(tmp_path / "lake2"),
                                 str(phoenix_spans(tmp_path / "p.parquet"))])
    assert result.exit_code == 0, result.output
    assert "received 5, accepted 4, quarantined 1" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["ingest", "langfuse", "--lake", str(tmp_path / "lake3"),
                                 str(empty)])
    assert result.exit_code == 1 and "no Langfuse export" in result.output


def test_langfuse_enriched_observations_alone_make_the_traces(tmp_path: Path) -> None:
    """The current default export (observations_v2/ + scores/, no traces/): every row carries
    its trace's fields, and the roots are made from them."""
    legacy = langfuse_export(tmp_path / "legacy")
    obs = pq.read_table(legacy / "observations" / "observations.parquet")
    trace_fields = {"lf-trace-1": ("support-chat", "alice@example.com", "sess-9", "abc123",
                                   "production"),
                    UUID_TRACE: ("qa", None, None, None, "default")}
    fields = [trace_fields[t] for t in obs.column("trace_id").to_pylist()]
    for i, name in enumerate(("trace_name", "user_id", "session_id", "release",
                              "environment")):
        obs = obs.append_column(name, pa.array([f[i] for f in fields], pa.string()))
    export = tmp_path / "v2"
    (export / "observations_v2").mkdir(parents=True)
    pq.write_table(obs, export / "observations_v2" / "part-0.parquet")
    lake = tmp_path / "lake"
    report = ingest_langfuse(lake, export, Redactor(KEY.encode()))
    spans = report.reports[0]
    assert report.read == {"observations_v2": 5}
    assert (spans.received, spans.accepted, spans.quarantined) == (7, 6, 1)
    rows = _accepted(lake, "spans")
    root = next(r for r in rows if r["request_id"] == "lf-trace-1")
    assert (root["operation_name"], root["session_id"], root["release_sha"],
            root["environment"]) == ("support-chat", "sess-9", "abc123", "prod")
    assert root["event_time"] == T0 + timedelta(milliseconds=10)  # its first observation
    assert len(root["user_id_hash"]) == 64
