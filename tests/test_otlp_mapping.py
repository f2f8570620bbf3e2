"""OTLP decoding and mapping: both conventions, both encodings, tokens, envelope, errors."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from typer.testing import CliRunner

from tracehouse.cli import app
from tracehouse.contract import DATASETS, validate_table
from tracehouse.lake import lake_status
from tracehouse.otlp.decode import (
    OTLPDecodeError,
    decode_file_bytes,
    decode_json,
    decode_protobuf,
    decode_request,
)
from tracehouse.otlp.ingest import ingest_otlp_files, ingest_parquet_files
from tracehouse.otlp.mapping import MappingDefaults, error_category, spans_to_table
from tracehouse.redaction import Redactor

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"
KEY = b"test-key-0123456789abcdef"
PII = json.loads((FIXTURES / "pii.json").read_text())


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(KEY)


def _lines(name: str) -> list[dict]:
    return [json.loads(x) for x in (FIXTURES / name).read_text().splitlines() if x.strip()]


def _to_protobuf(doc: dict) -> bytes:
    """OTLP JSON (hex ids) to a serialized protobuf request (protobuf JSON wants base64 ids)."""
    doc = copy.deepcopy(doc)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if s.get(k):
                        s[k] = base64.b64encode(bytes.fromhex(s[k])).decode()
    return json_format.ParseDict(doc, ExportTraceServiceRequest()).SerializeToString()


def _rows(table) -> dict[str, dict]:
    return {r["span_id"]: r for r in table.to_pylist()}


def _genai_table(redactor: Redactor):
    spans = decode_file_bytes((FIXTURES / "genai.jsonl").read_bytes())
    return spans_to_table(spans, redactor)


def test_genai_convention_maps_every_field(redactor: Redactor) -> None:
    table = _genai_table(redactor)
    assert table.schema.equals(DATASETS["spans"].schema)
    result = validate_table(table, DATASETS["spans"])
    assert result.rejected.num_rows == 0, result.rejected.to_pylist()
    rows = _rows(table)
    root, retrieval = rows["eee19b7ec3c1b174"], rows["aaa19b7ec3c1b101"]
    chat1, tool, chat2 = rows["aaa19b7ec3c1b102"], rows["aaa19b7ec3c1b103"], rows[
        "aaa19b7ec3c1b104"]

    assert root["span_type"] == "request" and root["parent_span_id"] is None
    assert root["environment"] == "prod"  # deployment.environment.name=production
    assert (root["service_name"], root["app_version"]) == ("support-bot", "1.4.2")
    assert root["duration_ms"] == 3000.0
    assert str(root["event_time"]) == "2026-03-04 09:00:00+00:00"
    assert json.loads(root["attributes"])["entrypoint"] == "chat"
    query = json.loads(root["attributes"])["user_query_redacted"]
    assert "[CARD]" in query and "[EMAIL]" in query and "[PHONE]" in query

    assert retrieval["span_type"] == "retrieval"
    ra = json.loads(retrieval["attributes"])
    assert ra["chunk_ids"] == ["chunk-17", "chunk-23"]
    assert ra["top_k_requested"] == 5 and ra["top_k_returned"] == 2
    assert ra["score_max"] == 0.91 and ra["score_min"] == 0.72
    assert ra["retriever_type"] == "vector" and ra["index_version"] == "idx-2026-03"

    assert chat1["span_type"] == "llm"
    assert chat1["model_name"] == "gpt-4o-2024-08-06"  # response model wins over request model
    assert chat1["model_provider"] == "openai"
    # cache and reasoning tokens are already inside input / output: never added again
    assert (chat1["input_tokens"], chat1["output_tokens"]) == (1200, 40)
    la = json.loads(chat1["attributes"])
    assert la["cached_tokens"] == 1000 and la["reasoning_tokens"] == 12
    assert la["finish_reason"] == "tool_calls"
    assert la["tool_calls_proposed"] == ["billing_lookup"]
    assert la["temperature"] == 0.2 and la["max_tokens"] == 512
    assert (chat2["input_tokens"], chat2["output_tokens"]) == (1500, 200)
    assert json.loads(chat2["attributes"])["finish_reason"] == "stop"

    assert tool["span_type"] == "tool_call" and tool["tool_name"] == "billing_lookup"
    assert tool["status"] == "timeout" and tool["error_type"] == "timeout"
    assert tool["error_message_redacted"] == "billing timed out for [EMAIL] from [IP]"
    ta = json.loads(tool["attributes"])
    assert ta["error_category"] == "timeout"
    args = ta["args_redacted"]
    assert args["date_from"] == "2026-02-01"  # allow-listed, kept
    assert args["locale"] == "en-GB [PHONE]"  # allow-listed, masked
    assert args["account_id"].startswith("hmac:") and args["email"].startswith("hmac:")
    assert {"args_allowlisted", "pii_masked", "content_withheld"} <= set(tool["privacy_tags"])


def test_envelope_carried_from_root_in_a_later_request(redactor: Redactor) -> None:
    rows = list(_rows(_genai_table(redactor)).values())
    expected_user = redactor.hash_id(PII["user_id"])
    for r in rows:
        assert r["tenant_id"] == "acme"
        assert (r["task_type"], r["route_name"], r["prompt_version"]) == ("support", "cheap", "v7")
        assert r["release_sha"] == "abc1234" and r["request_id"] == "req-0001"
        assert r["conversation_id"] == "conv-123" and r["experiment_ids"] == ["exp-42"]
        assert r["user_id_hash"] == expected_user


def test_children_without_their_root_use_own_attributes_or_defaults(redactor: Redactor) -> None:
    children = _lines("genai.jsonl")[0]
    children["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["attributes"].append(
        {"key": "tracehouse.tenant_id", "value": {"stringValue": "initech"}})
    spans = decode_json(json.dumps(children))
    defaults = MappingDefaults(tenant_id="t0", release_sha="r0")
    rows = spans_to_table(spans, redactor, defaults=defaults).to_pylist()
    assert [r["tenant_id"] for r in rows] == ["t0", "initech", "t0", "t0"]
    assert {r["release_sha"] for r in rows} == {"r0"}
    assert {r["request_id"] for r in rows} == {"5b8efff798038103d269b633813fc60c"}  # trace_id
    assert {r["task_type"] for r in rows} == {None}


def test_openinference_convention(redactor: Redactor) -> None:
    spans = decode_file_bytes((FIXTURES / "openinference.jsonl").read_bytes())
    table = spans_to_table(spans, redactor)
    assert validate_table(table, DATASETS["spans"]).rejected.num_rows == 0
    by_type = {r["span_type"]: r for r in table.to_pylist()}
    assert sorted(by_type) == sorted(
        ["request", "embedding", "retrieval", "rerank", "llm", "tool_call", "postprocess"])
    root = by_type["request"]
    assert root["environment"] == "staging"  # older deployment.environment key
    assert root["tenant_id"] == "globex"  # tracehouse.tenant_id on the resource
    assert root["session_id"] == "sess-42"
    assert root["user_id_hash"] == redactor.hash_id(PII["user_id2"])
    # input.value is tier 3: withheld, no preview unless the operator opts in
    assert "user_query_redacted" not in json.loads(root["attributes"])
    assert "content_withheld" in root["privacy_tags"]
    opted_in = spans_to_table(spans, redactor, defaults=MappingDefaults(query_preview=True))
    root_in = next(r for r in opted_in.to_pylist() if r["span_type"] == "request")
    assert json.loads(root_in["attributes"])["user_query_redacted"] == (
        "What is my IBAN [IBAN]? I am at [IP], ssn [NATIONAL_ID]")

    emb = by_type["embedding"]
    assert emb["model_name"] == "text-embedding-3-small" and emb["input_tokens"] == 12
    assert json.loads(emb["attributes"])["embedding_model"] == "text-embedding-3-small"

    ret = json.loads(by_type["retrieval"]["attributes"])
    assert ret["chunk_ids"] == ["doc-1", "doc-2", "doc-3"] and ret["top_k_returned"] == 3
    assert ret["score_mean"] == pytest.approx(0.6)

    rr = json.loads(by_type["rerank"]["attributes"])
    assert rr["reranker_model"] == "cohere-rerank-v3" and rr["candidate_count"] == 3
    assert rr["selected_chunk_ids"] == ["doc-3", "doc-1"] and rr["top_n_selected"] == 2
    assert rr["changed_rank_positions"] == 2
    assert rr["score_delta_mean"] == pytest.approx(((0.95 - 0.4) + (0.9 - 0.8)) / 2)

    llm = by_type["llm"]
    assert (llm["model_name"], llm["model_provider"]) == ("claude-sonnet-4", "anthropic")
    assert (llm["input_tokens"], llm["output_tokens"]) == (900, 120)
    assert llm["cost_usd_estimate"] == pytest.approx(0.0042)
    assert llm["prompt_version"] == "v3"
    la = json.loads(llm["attributes"])
    assert (la["cached_tokens"], la["reasoning_tokens"]) == (600, 30)
    assert la["temperature"] == 0.1 and la["max_tokens"] == 1024
    assert la["tool_calls_proposed"] == ["send_email"]

    tool = by_type["tool_call"]
    assert tool["tool_name"] == "send_email" and tool["status"] == "ok"
    ta = json.loads(tool["attributes"])
    assert ta["args_redacted"]["locale"] == "en-GB"
    assert ta["args_redacted"]["to"].startswith("hmac:")
    assert ta["args_redacted"]["api_token"].startswith("hmac:")
    assert ta["result_bytes"] == len(f"sent to {PII['email2']}")

    guard = by_type["postprocess"]
    assert guard["status"] == "blocked"
    ga = json.loads(guard["attributes"])
    assert ga["passed"] is False and ga["validator_name"] == "pii_filter"
    assert ga["filtered_categories"] == ["pii"]
    assert guard["error_message_redacted"] == "blocked: output contained [CARD]"
    for r in table.to_pylist():  # carried from the root
        assert (r["task_type"], r["route_name"], r["retriever_version"]) == (
            "qa", "premium", "r-12")


def test_protobuf_and_json_encodings_map_identically(redactor: Redactor) -> None:
    for name in ("genai.jsonl", "openinference.jsonl"):
        docs = _lines(name)
        from_json = [s for d in docs for s in decode_json(json.dumps(d))]
        from_pb = [s for d in docs for s in decode_protobuf(_to_protobuf(d))]
        assert from_json == from_pb
        assert spans_to_table(from_json, redactor).equals(spans_to_table(from_pb, redactor))


def test_request_bodies_and_file_framings(redactor: Redactor) -> None:
    doc = _lines("openinference.jsonl")[0]
    raw_json = json.dumps(doc).encode()
    pb = _to_protobuf(doc)
    n = 7
    assert len(decode_request(raw_json, "application/json")) == n
    assert len(decode_request(gzip.compress(raw_json), "application/json", "gzip")) == n
    assert len(decode_request(gzip.compress(pb), "application/x-protobuf", "gzip")) == n
    assert len(decode_file_bytes(pb)) == n
    framed = b"".join(struct.pack(">I", len(pb)) + pb for _ in range(2))
    assert len(decode_file_bytes(framed)) == 2 * n
    assert len(decode_file_bytes(gzip.compress(raw_json + b"\n" + raw_json))) == 2 * n
    # enum names and base64 ids, as protobuf's generic JSON writes them, are tolerated
    generic = json.loads(json_format.MessageToJson(ExportTraceServiceRequest.FromString(pb)))
    assert decode_json(json.dumps(generic)) == decode_json(raw_json)


@pytest.mark.parametrize(
    ("body", "ctype", "reason"),
    [
        (b"not json", "application/json", "not valid JSON"),
        (b'{"resourceSpans": 3}', "application/json", "must be a list"),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"x"}]}]}]}',
         "application/json", "not an integer"),
        (b"\xff\xfe garbage", "application/x-protobuf", "not a protobuf"),
        (b"{}", "text/plain", "unsupported Content-Type"),
    ],
)
def test_malformed_payloads_raise_with_a_reason(body: bytes, ctype: str, reason: str) -> None:
    with pytest.raises(OTLPDecodeError, match=reason):
        decode_request(body, ctype)


def test_exception_event_status_and_error_categories(redactor: Redactor) -> None:
    doc = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [
        {"traceId": "11" * 16, "spanId": "22" * 8, "name": "execute_tool crm", "kind": 1,
         "startTimeUnixNano": "1772614800000000000", "endTimeUnixNano": "1772614800250000000",
         "status": {"code": 2},
         "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                        {"key": "gen_ai.tool.name", "value": {"stringValue": "crm"}}],
         "events": [{"name": "exception", "timeUnixNano": "1772614800250000000", "attributes": [
             {"key": "exception.type", "value": {"stringValue": "openai.RateLimitError"}},
             {"key": "exception.message",
              "value": {"stringValue": f"429 for {PII['email']}"}}]}]},
    ]}]}]}
    (row,) = spans_to_table(decode_json(json.dumps(doc)), redactor).to_pylist()
    assert row["status"] == "error" and row["error_type"] == "rate_limit"
    assert row["error_message_redacted"] == "429 for [EMAIL]"
    assert row["span_type"] == "tool_call"  # a root of a known kind keeps its type
    assert row["duration_ms"] == 250.0 and row["environment"] == "dev"  # default
    assert error_category("ConnectionRefusedError") == "dependency_down"
    assert error_category("billing.InvoiceMissing") == "invoice_missing"


def test_ingest_quarantines_bad_spans_and_keeps_duplicates(tmp_path: Path,
                                                         redactor: Redactor) -> None:
    bad = _lines("openinference.jsonl")[0]
    spans = bad["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1]["endTimeUnixNano"] = str(int(spans[1]["startTimeUnixNano"]) - 1)  # end < start
    spans[2]["traceId"] = ""  # no trace id
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(bad) + "\n")
    lake = tmp_path / "lake"
    (report,) = ingest_otlp_files(lake, [f], redactor)
    assert (report.received, report.accepted, report.quarantined) == (7, 5, 2)
    assert any("end before start" in r for r in report.reject_reasons)
    assert any("trace_id" in r for r in report.reject_reasons)
    reports = ingest_otlp_files(lake, [FIXTURES / "genai.jsonl"] * 2, redactor)
    assert [r.accepted for r in reports] == [5, 5]  # duplicates kept for the warehouse's dedup
    status = lake_status(lake).to_pylist()
    assert all(r["reconciled"] for r in status)
    assert sum(r["received"] for r in status) == 17
    assert {r["source"] for r in status} == {"otlp-file"}


def test_ingest_parquet_lands_through_the_writer_redacted(tmp_path: Path,
                                                         redactor: Redactor) -> None:
    table = _genai_table(redactor)
    table = table.set_column(
        table.schema.get_field_index("error_message_redacted"), "error_message_redacted",
        [[f"mail {PII['email']}"] * table.num_rows])
    table = table.append_column("raw_prompt", [[PII["secret_text"]] * table.num_rows])
    src = tmp_path / "producer.parquet"
    pq.write_table(table, src)
    ((report, dropped),) = ingest_parquet_files(tmp_path / "lake", "spans", [src], redactor)
    assert report.accepted == 5 and dropped == ["raw_prompt"]
    landed = pq.read_table(report.files[0])
    assert set(landed.column("error_message_redacted").to_pylist()) == {"mail [EMAIL]"}


def test_cli_ingest_otlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.delenv("TRACEHOUSE_HASH_KEY", raising=False)
    args = ["ingest", "otlp", "--lake", str(tmp_path / "lake"), str(FIXTURES / "genai.jsonl")]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "TRACEHOUSE_HASH_KEY" in refused.output
    monkeypatch.setenv("TRACEHOUSE_HASH_KEY", KEY.decode())
    ok = runner.invoke(app, [*args, str(FIXTURES / "openinference.jsonl")])
    assert ok.exit_code == 0, ok.output
    assert "accepted 5, quarantined 0" in ok.output and "accepted 7" in ok.output
