"""OTLP/gRPC, bearer-token auth and TLS on `tracehouse serve`: the real OpenTelemetry SDK gRPC
exporter into the same mapping / redaction / spool path as OTLP/HTTP."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.test_server import KEY, PII, _assert_no_pii, genai_trace
from tracehouse.lake import lake_status
from tracehouse.redaction import Redactor
from tracehouse.server import Receiver, ServerConfig

pytestmark = pytest.mark.slow

TOKEN = "s3cret-ingest-token-for-tests"


def _receiver(tmp_path: Path, **over: Any) -> Receiver:
    config = ServerConfig(**{"lake": tmp_path / "lake", "port": 0, "grpc_port": 0,
                             "flush_seconds": 600, "batch_rows": 100_000,
                             "worker_kind": "thread", **over})
    receiver = Receiver(config, Redactor(KEY.encode()))
    receiver.start()
    return receiver


def _emit_grpc(receiver: Receiver, *, headers: dict[str, str] | None = None,
               credentials: grpc.ChannelCredentials | None = None) -> None:
    provider = TracerProvider(resource=Resource.create({
        "service.name": "support-bot", "service.version": "1.4.2",
        "deployment.environment.name": "production"}))
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{receiver.grpc_port}", insecure=credentials is None,
        credentials=credentials, headers=headers, timeout=10,
        compression=grpc.Compression.Gzip,
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    genai_trace(provider.get_tracer("tracehouse-test"))
    assert provider.force_flush(20_000)
    provider.shutdown()


def _landed_spans(receiver: Receiver) -> list[dict[str, Any]]:
    receiver.stop()
    receiver.stop = lambda: None  # type: ignore[method-assign]
    lake = receiver.config.lake
    files = list(lake.glob("spans/dt=*/*.parquet"))
    return pa.concat_tables(pq.read_table(p) for p in files).to_pylist() if files else []


def _export(channel: grpc.Channel, body: bytes, metadata: Any = None) -> grpc.StatusCode:
    call = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=None, response_deserializer=None)
    try:
        call(body, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_sdk_grpc_exporter_lands_like_http(tmp_path: Path) -> None:
    receiver = _receiver(tmp_path)
    try:
        _emit_grpc(receiver)
        assert receiver.health()["buffered_rows"] == 5
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            assert _export(channel, b"\x00\xffnot-protobuf") == grpc.StatusCode.INVALID_ARGUMENT
            bad = json.dumps({"x": 1}).encode()
            assert _export(channel, bad) == grpc.StatusCode.INVALID_ARGUMENT
            # the generated stub (a parsed request) works too; an empty export is a success
            TraceServiceStub(channel).Export(ExportTraceServiceRequest(), timeout=10)
    finally:
        rows = _landed_spans(receiver)
    assert sorted(r["span_type"] for r in rows) == ["llm", "llm", "request", "retrieval",
                                                    "tool_call"]
    redactor = Redactor(KEY.encode())
    assert {r["user_id_hash"] for r in rows} == {redactor.hash_id(PII["user_id"])}
    assert {r["environment"] for r in rows} == {"prod"}
    status = lake_status(receiver.config.lake).to_pylist()
    assert {r["source"] for r in status} == {"otlp-grpc"}
    assert sum(r["accepted"] for r in status) == 5 and all(r["reconciled"] for r in status)
    _assert_no_pii(receiver.config.lake)


def test_grpc_full_buffer_is_unavailable_so_exporters_retry(tmp_path: Path) -> None:
    receiver = _receiver(tmp_path, max_buffer_rows=6)
    try:
        _emit_grpc(receiver)  # 5 rows buffered
        req = ExportTraceServiceRequest()
        span = req.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "x"
        span.start_time_unix_nano = 1_772_614_800 * 10**9
        span.end_time_unix_nano = span.start_time_unix_nano + 10**9
        body = req.SerializeToString()
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            assert _export(channel, body) == grpc.StatusCode.OK  # 6 of 6
            assert _export(channel, body) == grpc.StatusCode.UNAVAILABLE
    finally:
        rows = _landed_spans(receiver)
    assert len(rows) == 6


def _get(url: str, headers: dict[str, str] | None = None, context: Any = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _post(url: str, body: bytes, headers: dict[str, str] | None = None,
          context: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


FEEDBACK = json.dumps([{"schema_version": "1", "feedback_id": "fb-1",
                        "event_time": "2026-03-04T10:00:00Z",
                        "trace_id": "00000000000000000000000000000001", "tenant_id": "acme",
                        "feedback_type": "thumbs_down"}]).encode()


def test_bearer_token_on_http_and_grpc(tmp_path: Path) -> None:
    receiver = _receiver(tmp_path, auth_token=TOKEN)
    base = f"http://127.0.0.1:{receiver.port}"
    try:
        status, headers = _post(f"{base}/v1/feedback", FEEDBACK)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert _post(f"{base}/v1/feedback", FEEDBACK,
                     {"Authorization": "Bearer wrong-token"})[0] == 401
        assert _post(f"{base}/v1/traces", b"{}", {"Authorization": f"Basic {TOKEN}"})[0] == 401
        assert _post(f"{base}/v1/feedback", FEEDBACK,
                     {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert _get(f"{base}/healthz") == 200  # liveness probes need no token
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            assert _export(channel, b"") == grpc.StatusCode.UNAUTHENTICATED
            assert _export(channel, b"", [("authorization", "Bearer nope")]) == \
                grpc.StatusCode.UNAUTHENTICATED
            assert _export(channel, b"", [("authorization", f"Bearer {TOKEN}")]) == \
                grpc.StatusCode.OK
        _emit_grpc(receiver, headers={"authorization": f"Bearer {TOKEN}"})
        health = receiver.health()
        assert health["rejected_requests"] == 5
        assert health["buffered_rows"] == 1 + 5
    finally:
        rows = _landed_spans(receiver)
    assert len(rows) == 5


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_on_http_and_grpc(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    receiver = _receiver(tmp_path, tls_cert=cert, tls_key=key, auth_token=TOKEN)
    trust = ssl.create_default_context(cafile=str(cert))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert receiver.tls
        status, _ = _post(f"https://127.0.0.1:{receiver.port}/v1/feedback", FEEDBACK, auth,
                          context=trust)
        assert status == 200
        # plain HTTP on the TLS port gets no answer; an untrusting client refuses the cert
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _post(f"http://127.0.0.1:{receiver.port}/v1/feedback", FEEDBACK, auth)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _post(f"https://127.0.0.1:{receiver.port}/v1/feedback", FEEDBACK, auth,
                  context=ssl.create_default_context())
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        _emit_grpc(receiver, headers={"authorization": f"Bearer {TOKEN}"}, credentials=creds)
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as plain:
            assert _export(plain, b"", [("authorization", f"Bearer {TOKEN}")]) == \
                grpc.StatusCode.UNAVAILABLE
        deadline = time.monotonic() + 5
        while receiver.health()["buffered_rows"] < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.health()["buffered_rows"] == 1 + 5
    finally:
        rows = _landed_spans(receiver)
    assert len(rows) == 5


def test_grpc_limit_applies_to_the_inflated_message(tmp_path: Path) -> None:
    receiver = _receiver(tmp_path, max_body_bytes=1024 * 1024,
                         max_decompressed_bytes=1024 * 1024)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}",
                                   compression=grpc.Compression.Gzip) as channel:
            # 2 MiB of zeros gzip to ~2 KiB on the wire: refused once inflated
            assert _export(channel, bytes(2 * 1024 * 1024)) == \
                grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _export(channel, bytes(512 * 1024)) == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        receiver.stop()


def test_cli_serve_with_token_tls_and_grpc(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    cert, key = _self_signed(tmp_path)
    env = {**os.environ, "TRACEHOUSE_HASH_KEY": KEY, "TRACEHOUSE_INGEST_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tracehouse.cli import main; main()", "serve",
         "--lake", str(tmp_path / "lake"), "--port", "0", "--grpc-port", "0",
         "--tls-cert", str(cert), "--tls-key", str(key), "--workers", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("tracehouse serve: listening on https://127.0.0.1:"), line
        assert "OTLP/gRPC on 127.0.0.1:" in line and "bearer token required" in line
        base = line.split("listening on ")[1].split()[0]
        trust = ssl.create_default_context(cafile=str(cert))
        assert _post(f"{base}/v1/feedback", FEEDBACK, context=trust)[0] == 401
        assert _post(f"{base}/v1/feedback", FEEDBACK, {"Authorization": f"Bearer {TOKEN}"},
                     context=trust)[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "everything accepted is in the lake" in out
    status = lake_status(tmp_path / "lake").to_pylist()
    assert sum(r["accepted"] for r in status) == 1
