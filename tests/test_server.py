"""`tracehouse serve` end to end: the real OpenTelemetry SDK and OTLP/HTTP exporter, both
conventions, PII planted everywhere, SIGTERM flush; plus 400 / 413 / 415 / 503 and the spool."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from tracehouse.lake import lake_status, write_batch
from tracehouse.otlp import decode_file_bytes, spans_to_table
from tracehouse.redaction import Redactor
from tracehouse.server import LakeWriter, Receiver, ServerConfig

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"
PII: dict[str, str] = json.loads((FIXTURES / "pii.json").read_text())
KEY = "e2e-test-key-0123456789abcdef"
T0 = 1_772_614_800_000_000_000  # 2026-03-04T09:00:00Z
MS = 1_000_000


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _post(url: str, body: bytes, ctype: str, encoding: str | None = None
          ) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive, as HTTP's are) and body of a POST."""
    headers = {"Content-Type": ctype}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _emit(endpoint: str, resource: dict[str, Any], build, *, gzip_body: bool = False) -> None:
    provider = TracerProvider(resource=Resource.create(resource))
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=10,
                                compression=Compression.Gzip if gzip_body else None)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    build(provider.get_tracer("tracehouse-test"))
    assert provider.force_flush(20_000)
    provider.shutdown()


def _child(tracer, ctx, name: str, start_ms: int, end_ms: int, attrs: dict[str, Any], *,  # noqa: PLR0917
           error: str | None = None, exc: Exception | None = None) -> None:
    span = tracer.start_span(name, context=ctx, kind=SpanKind.CLIENT,
                             start_time=T0 + start_ms * MS, attributes=attrs)
    if exc is not None:
        span.record_exception(exc, timestamp=T0 + end_ms * MS)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=T0 + end_ms * MS)


def genai_trace(tracer) -> None:
    root = tracer.start_span("invoke_agent support_agent", kind=SpanKind.SERVER, start_time=T0,
                             attributes={
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.conversation.id": f"conv {PII['phone']}",  # an id holding PII: hashed
        "enduser.id": PII["user_id"],
        "tracehouse.tenant_id": "acme", "tracehouse.task_type": "support",
        "tracehouse.route_name": "cheap", "tracehouse.prompt_version": "v7",
        "tracehouse.release_sha": "abc1234", "tracehouse.entrypoint": "chat",
        "tracehouse.user_query": f"card {PII['card']} charged twice, I am {PII['email']}, "
                                 f"ssn {PII['ssn']}, ip {PII['ipv6']}",
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
            {"type": "text", "content": PII["secret_text"]}]}]),
    })
    ctx = set_span_in_context(root)
    _child(tracer, ctx, "retrieval kb", 10, 110, {
        "gen_ai.operation.name": "retrieval", "gen_ai.request.top_k": 5,
        "gen_ai.retrieval.query.text": f"refund {PII['iban']}",
        "gen_ai.retrieval.documents": json.dumps(
            [{"id": "chunk-17", "score": 0.9}, {"id": "chunk-23", "score": 0.5}]),
    })
    _child(tracer, ctx, "chat gpt-4o", 120, 1120, {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 40,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.reasoning.output_tokens": 12,
        "gen_ai.response.finish_reasons": ["tool_calls"],
        "gen_ai.system_instructions": f"admin key {PII['openai_key']}",
        "gen_ai.output.messages": f"calling tool for {PII['email']}",
    })
    _child(tracer, ctx, "execute_tool billing_lookup", 1130, 1630, {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "billing_lookup",
        "gen_ai.tool.call.arguments": json.dumps({
            "account_id": PII["account_id"], "email": PII["email"], "date_from": "2026-02-01",
            "locale": f"en-GB {PII['phone_us']}", "auth": PII["bearer"]}),
        "error.type": "TimeoutError",
    }, error=f"billing timed out for {PII['email']} at {PII['ip']}",
        exc=TimeoutError(f"read timeout key={PII['aws_key']} card {PII['card_plain']}"))
    _child(tracer, ctx, "chat gpt-4o", 1640, 2940, {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 200,
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.output.messages": f"refund to {PII['iban']} for {PII['jwt']}",
    })
    root.end(end_time=T0 + 3000 * MS)


def openinference_trace(tracer) -> None:
    root = tracer.start_span("rag_pipeline", kind=SpanKind.SERVER, start_time=T0 + 5000 * MS,
                             attributes={
        "openinference.span.kind": "CHAIN",
        "input.value": f"my IBAN {PII['iban']} and phone {PII['phone']}?",
        "output.value": f"Your IBAN is {PII['iban']}",
        "session.id": "sess-42", "user.id": PII["user_id2"],
        "tracehouse.tenant_id": "globex", "tracehouse.task_type": "qa",
        "metadata": json.dumps({"email": PII["email2"]}),
    })
    ctx = set_span_in_context(root)
    base = 5000
    _child(tracer, ctx, "embed", base + 5, base + 45, {
        "openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small",
        "embedding.embeddings.0.embedding.text": PII["secret_text"],
        "llm.token_count.prompt": 12,
    })
    _child(tracer, ctx, "retrieve", base + 45, base + 145, {
        "openinference.span.kind": "RETRIEVER",
        "retrieval.documents.0.document.id": "doc-1", "retrieval.documents.0.document.score": 0.8,
        "retrieval.documents.0.document.content": f"customer {PII['email2']}",
        "retrieval.documents.1.document.id": "doc-2", "retrieval.documents.1.document.score": 0.4,
        "retrieval.documents.1.document.content": f"card {PII['card']}",
    })
    _child(tracer, ctx, "rerank", base + 145, base + 205, {
        "openinference.span.kind": "RERANKER", "reranker.model_name": "cohere-rerank-v3",
        "reranker.query": PII["secret_text"],
        "reranker.input_documents.0.document.id": "doc-1",
        "reranker.input_documents.1.document.id": "doc-2",
        "reranker.output_documents.0.document.id": "doc-2",
    })
    _child(tracer, ctx, "llm", base + 205, base + 1705, {
        "openinference.span.kind": "LLM", "llm.model_name": "claude-sonnet-4",
        "llm.provider": "anthropic", "llm.token_count.prompt": 900,
        "llm.token_count.completion": 120, "llm.token_count.prompt_details.cache_read": 600,
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": f"{PII['secret_text']} {PII['ssn']}",
        "llm.output_messages.0.message.content": f"mail {PII['email2']}",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "send_email",
    })
    _child(tracer, ctx, f"send_email to {PII['email2']}", base + 1705, base + 1805, {
        "openinference.span.kind": "TOOL", "tool.name": "send_email",
        "input.value": json.dumps({"to": PII["email2"], "api_token": PII["openai_key"],
                                   "locale": "en-GB"}),
        "output.value": f"error for {PII['email2']}",
        "error.type": "ConnectionRefusedError",
    }, error=f"SMTP refused {PII['email2']} from {PII['ip']}")
    _child(tracer, ctx, "pii_filter", base + 1805, base + 1855, {
        "openinference.span.kind": "GUARDRAIL", "error.type": "guardrail_blocked",
        "output.value": PII["card_plain"],
    }, error=f"blocked {PII['card_plain']}")
    root.end(end_time=T0 + (base + 2000) * MS)


def _lake_text(lake: Path) -> str:
    """Every value in every file under the lake (Parquet decoded), as one string."""
    parts = []
    for path in sorted(lake.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            table = pq.ParquetFile(path).read()  # (quarantine files may repeat a name)
            parts.append(json.dumps([c.to_pylist() for c in table.columns], default=str))
            parts.append(" ".join(table.column_names))
        else:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
        parts.append(str(path))
    return "\n".join(parts)


def _assert_no_pii(lake: Path) -> None:
    text = _lake_text(lake)
    planted = set(PII.values())
    planted |= {v.replace(" ", "") for v in planted}  # compacted card / IBAN / phone
    planted |= {"".join(c for c in PII[k] if c.isdigit()) for k in ("card", "phone", "ssn")}
    leaked = sorted(v for v in planted if v in text)
    assert not leaked, f"planted PII landed in clear: {leaked}"


# --------------------------------------------------------------------------------------------
# the end-to-end test
# --------------------------------------------------------------------------------------------


def test_e2e_sdk_to_serve_both_conventions_no_pii(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = {**os.environ, "TRACEHOUSE_HASH_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tracehouse.cli import main; main()", "serve",
         "--lake", str(lake), "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0",
         "--flush-seconds", "600", "--batch-rows", "100000"],  # only SIGTERM flushes
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, proc.stderr.read() if proc.stderr else ""
        base = line.split("listening on ")[1].split()[0]
        traces = f"{base}/v1/traces"

        _emit(traces, {"service.name": "support-bot", "service.version": "1.4.2",
                       "deployment.environment.name": "production"}, genai_trace)
        _emit(traces, {"service.name": "rag-api", "service.version": "2.0.0",
                       "deployment.environment": "staging"}, openinference_trace,
              gzip_body=True)

        feedback = [
            {"schema_version": "1", "feedback_id": "fb-1", "event_time": "2026-03-04T10:00:00Z",
             "trace_id": "00000000000000000000000000000001", "tenant_id": "acme",
             "feedback_type": "thumbs_down", "user_id": PII["user_id"],
             "comment": f"wrong! reach me at {PII['email']} / {PII['phone']}",
             "source": "ui", "shoe_size": 42},
            {"schema_version": "1", "feedback_id": "fb-2", "event_time": "2026-03-04T10:05:00Z",
             "trace_id": "00000000000000000000000000000002", "tenant_id": "acme",
             "feedback_type": "loved_it", "comment_redacted": f"card {PII['card']}"},
        ]
        status, _, body = _post(f"{base}/v1/feedback", json.dumps(feedback).encode(),
                                "application/json")
        assert status == 200 and json.loads(body)["dropped_fields"] == ["shoe_size"]
        annotations = {"rows": [{
            "schema_version": "1", "annotation_id": "an-1", "label_time": "2026-03-05T08:00:00Z",
            "trace_id": "00000000000000000000000000000001", "annotator_id": PII["email2"],
            "correctness": 0.2, "failure_category": "tool_execution_failure",
            "relevant_chunk_ids": ["chunk-17"], "required_tools": ["billing_lookup"]}]}
        status, _, _ = _post(f"{base}/v1/annotations", json.dumps(annotations).encode(),
                             "application/json")
        assert status == 200

        # malformed payloads: 400 with a reason, and the server keeps running
        status, _, body = _post(traces, b"\x00\xffnot-protobuf", "application/x-protobuf")
        assert status == 400 and "protobuf" in json.loads(body)["error"]
        status, _, body = _post(traces, b'{"resourceSpans": 1}', "application/json")
        assert status == 400 and "resourceSpans" in json.loads(body)["error"]
        status, _, _ = _post(f"{base}/v1/feedback", b"[1, 2]", "application/json")
        assert status == 400
        health = _get(f"{base}/healthz")
        assert health["status"] == "ok" and health["buffered_rows"] == 5 + 7 + 2 + 1
        assert health["rows_written"] == 0  # nothing flushed yet: SIGTERM must do it
        assert list(lake.glob("spans/dt=*/*.parquet")) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "everything accepted is in the lake" in out

    # ---- what landed --------------------------------------------------------------------
    status_rows = lake_status(lake).to_pylist()
    assert all(r["reconciled"] for r in status_rows), status_rows
    by_dataset: dict[str, dict[str, int]] = {}
    for r in status_rows:
        d = by_dataset.setdefault(r["dataset"], {"received": 0, "accepted": 0, "quarantined": 0})
        for k in d:
            d[k] += r[k]
    assert by_dataset["spans"] == {"received": 12, "accepted": 12, "quarantined": 0}
    assert by_dataset["feedback"] == {"received": 2, "accepted": 1, "quarantined": 1}
    assert by_dataset["annotations"] == {"received": 1, "accepted": 1, "quarantined": 0}
    assert {r["source"] for r in status_rows} == {"otlp-http", "http-json"}
    assert not list((lake / "_spool").glob("*.arrow"))  # all landed, spool emptied

    spans = pa.concat_tables(pq.read_table(p) for p in lake.glob("spans/dt=*/*.parquet"))
    rows = spans.to_pylist()
    assert spans.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert spans.schema.field("input_tokens").type == pa.int64()
    redactor = Redactor(KEY.encode())
    genai = [r for r in rows if r["service_name"] == "support-bot"]
    oi = [r for r in rows if r["service_name"] == "rag-api"]
    assert sorted(r["span_type"] for r in genai) == ["llm", "llm", "request", "retrieval",
                                                     "tool_call"]
    assert sorted(r["span_type"] for r in oi) == ["embedding", "llm", "postprocess", "request",
                                                  "rerank", "retrieval", "tool_call"]
    assert len({r["span_id"] for r in rows}) == 12
    assert {r["trace_id"] for r in genai}.isdisjoint({r["trace_id"] for r in oi})
    assert all(len(r["trace_id"]) == 32 and len(r["span_id"]) == 16 for r in rows)

    for r in genai:
        assert r["environment"] == "prod" and r["tenant_id"] == "acme"
        assert r["user_id_hash"] == redactor.hash_id(PII["user_id"])
        assert r["conversation_id"] == redactor.hash_id(f"conv {PII['phone']}")
        assert (r["task_type"], r["route_name"], r["release_sha"]) == ("support", "cheap",
                                                                       "abc1234")
    for r in oi:
        assert r["environment"] == "staging" and r["tenant_id"] == "globex"
        assert r["user_id_hash"] == redactor.hash_id(PII["user_id2"])
        assert r["release_sha"] == "unknown" and r["app_version"] == "2.0.0"

    durations = {(r["service_name"], r["span_type"], r["duration_ms"]) for r in rows}
    for expected in [("support-bot", "request", 3000.0), ("support-bot", "retrieval", 100.0),
                     ("support-bot", "tool_call", 500.0), ("rag-api", "request", 2000.0),
                     ("rag-api", "llm", 1500.0), ("rag-api", "postprocess", 50.0)]:
        assert expected in durations

    llm_tokens = sorted((r["input_tokens"], r["output_tokens"]) for r in rows
                        if r["span_type"] == "llm")
    assert llm_tokens == [(900, 120), (1200, 40), (1500, 200)]  # cache/reasoning not added
    assert sum(r["input_tokens"] or 0 for r in rows) == 1200 + 1500 + 900 + 12
    emb = next(r for r in oi if r["span_type"] == "embedding")
    assert emb["input_tokens"] == 12

    tools = {r["tool_name"]: r for r in rows if r["span_type"] == "tool_call"}
    billing, mail = tools["billing_lookup"], tools["send_email"]
    assert (billing["status"], billing["error_type"]) == ("timeout", "timeout")
    assert billing["error_message_redacted"] == "billing timed out for [EMAIL] at [IP]"
    assert json.loads(billing["attributes"])["args_redacted"]["date_from"] == "2026-02-01"
    assert (mail["status"], mail["error_type"]) == ("error", "dependency_down")
    assert mail["operation_name"] == "send_email to [EMAIL]"
    assert json.loads(mail["attributes"])["error_category"] == "dependency_down"
    guard = next(r for r in oi if r["span_type"] == "postprocess")
    assert guard["status"] == "blocked"

    root = next(r for r in genai if r["span_type"] == "request")
    query = json.loads(root["attributes"])["user_query_redacted"]
    assert query == "card [CARD] charged twice, I am [EMAIL], ssn [NATIONAL_ID], ip [IP]"
    assert {"pii_masked", "contains_user_text", "content_withheld", "ids_hashed"} <= set(
        root["privacy_tags"])
    retrieval = next(r for r in genai if r["span_type"] == "retrieval")
    assert json.loads(retrieval["attributes"])["chunk_ids"] == ["chunk-17", "chunk-23"]

    fb = pq.read_table(next(lake.glob("feedback/dt=*/*.parquet"))).to_pylist()
    assert fb[0]["comment_redacted"] == "wrong! reach me at [EMAIL] / [PHONE]"
    assert fb[0]["user_id_hash"] == redactor.hash_id(PII["user_id"])
    quarantined = next(lake.glob("_quarantine/feedback/dt=*/*.parquet"))
    (q,) = pq.ParquetFile(quarantined).read().to_pylist()
    assert "feedback_type not in enum" in q["reject_reason"]
    assert q["comment_redacted"] == "card [CARD]"
    (ann,) = pq.read_table(next(lake.glob("annotations/dt=*/*.parquet"))).to_pylist()
    assert ann["annotator_id_hash"] == redactor.hash_id(PII["email2"])

    _assert_no_pii(lake)


# --------------------------------------------------------------------------------------------
# in-process: back-pressure, limits, content types, spool
# --------------------------------------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path):
    config = ServerConfig(lake=tmp_path / "lake", port=0, batch_rows=10_000,
                          flush_seconds=600, max_buffer_rows=8, max_body_bytes=200_000,
                          retry_after_seconds=3, worker_kind="thread")
    r = Receiver(config, Redactor(KEY.encode()))
    r.start()
    yield r
    r.stop()


def test_full_buffer_answers_503_with_retry_after(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/v1/traces"
    body = (FIXTURES / "openinference.jsonl").read_bytes()  # 7 spans; the buffer holds 8
    assert _post(url, body, "application/json")[0] == 200
    status, headers, payload = _post(url, body, "application/json")
    assert status == 503 and headers["Retry-After"] == "3"
    assert "buffer full" in json.loads(payload)["error"]
    assert _get(f"http://127.0.0.1:{receiver.port}/healthz")["buffered_rows"] == 7
    receiver.stop()  # flushes the accepted request, not the refused one
    receiver.stop = lambda: None  # type: ignore[method-assign]
    lake = receiver.config.lake
    assert sum(r["accepted"] for r in lake_status(lake).to_pylist()) == 7


def test_limits_and_content_types(receiver: Receiver) -> None:
    base = f"http://127.0.0.1:{receiver.port}"
    body = (FIXTURES / "genai.jsonl").read_bytes().splitlines()[0]
    assert _post(f"{base}/v1/traces", body, "text/plain")[0] == 415
    assert _post(f"{base}/v1/traces", b"x" * 300_000, "application/json")[0] == 413
    assert _post(f"{base}/v1/traces", b"\x1f\x8bnot gzip", "application/json", "gzip")[0] == 400
    assert _post(f"{base}/v1/traces", body, "application/json", "br")[0] == 400
    assert _post(f"{base}/v1/metrics", body, "application/json")[0] == 404
    status, _, payload = _post(f"{base}/v1/traces", gzip.compress(body), "application/json",
                               "gzip")
    assert (status, payload) == (200, b"{}")
    assert _get(f"{base}/healthz")["buffered_rows"] == 4


def test_spool_replays_rows_accepted_by_a_process_that_died(tmp_path: Path) -> None:
    lake, spool = tmp_path / "lake", tmp_path / "lake" / "_spool"
    table = spans_to_table(decode_file_bytes((FIXTURES / "genai.jsonl").read_bytes()),
                           Redactor(KEY.encode()))
    dead = LakeWriter(lake, spool_dir=spool)
    dead.spool_dir.mkdir(parents=True)  # type: ignore[union-attr]
    dead.submit("spans", table, source="otlp-http")  # accepted, then the process "dies"
    assert len(list(spool.glob("*.arrow"))) == 1
    assert not list(lake.glob("spans/dt=*/*.parquet"))
    revived = LakeWriter(lake, spool_dir=spool, flush_seconds=0.05)
    revived.start()
    revived.close()
    assert not list(spool.glob("*.arrow"))
    assert sum(r["accepted"] for r in lake_status(lake).to_pylist()) == 5


def test_writer_retries_a_failed_write(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk hiccup")
        return write_batch(*args, **kwargs)

    table = spans_to_table(decode_file_bytes((FIXTURES / "genai.jsonl").read_bytes()),
                           Redactor(KEY.encode()))
    writer = LakeWriter(tmp_path / "lake", flush_seconds=0.01, write=flaky)
    writer.start()
    writer.submit("spans", table, source="otlp-http")
    deadline = time.monotonic() + 10
    while writer.buffered_rows and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    assert calls["n"] == 2 and writer.rows_written == 5 and writer.write_errors == 1
