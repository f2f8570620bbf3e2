"""The receiver under hostile input (issue 14.3): every malformed body a 400 with a reason, one
decompression capped on the inflated size, name / key / value caps, socket and body timeouts,
stalled clients cost no threads, /healthz answers while a big body is decoded."""

from __future__ import annotations

import copy
import gzip
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tracehouse.lake import lake_status
from tracehouse.otlp.decode import (
    DecodeLimits,
    OTLPDecodeError,
    PayloadTooLargeError,
    decode_json,
    decode_request,
    decompress,
)
from tracehouse.otlp.mapping import spans_to_table
from tracehouse.redaction import Redactor
from tracehouse.server import Receiver, ServerConfig

KEY = "hardening-test-key-0123456789"
T0 = 1_772_614_800_000_000_000  # 2026-03-04T09:00:00Z
FIXTURES = Path(__file__).parent / "fixtures" / "otlp"


def _span(**over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "051581bf3cb55c13",
        "name": "chat gpt-4o", "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 10**9),
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}],
    }
    s.update(over)
    return s


def _request(*spans: dict[str, Any]) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"spans": list(spans)}]}]}


def _attr(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def _nested_array(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"arrayValue": {"values": [value]}}
    return value


def _gzip_stream(n_bytes: int, chunk: int = 1 << 20) -> bytes:
    """gzip of ``n_bytes`` zero bytes, made without holding them in memory."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(chunk)
    parts = [c.compress(zeros) for _ in range(n_bytes // chunk)]
    parts.append(c.flush())
    return b"".join(parts)


# The findings of issue 14: each was a 500 (or a 200 and a stalled writer) before.
MALFORMED: dict[str, tuple[bytes, str]] = {
    "deep JSON nesting": (
        ('{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(), "nested"),
    "deep attribute nesting": (
        json.dumps(_request(_span(attributes=[_attr("x", _nested_array(40))]))).encode(),
        "nested deeper"),
    "lone surrogate": (
        json.dumps(_request(_span(name="a\ud800b"))).encode(), "surrogate"),
    "doubleValue abc": (
        json.dumps(_request(_span(attributes=[
            _attr("gen_ai.request.temperature", {"doubleValue": "abc"})]))).encode(),
        "doubleValue is not a number"),
    "10^30 token count": (
        json.dumps(_request(_span(attributes=[
            _attr("gen_ai.operation.name", {"stringValue": "chat"}),
            _attr("gen_ai.usage.input_tokens", {"intValue": str(10**30)})]))).encode(),
        "out of range"),
    "1e22 timestamp": (
        json.dumps(_request(_span(startTimeUnixNano=10**22,
                                  endTimeUnixNano=10**22 + 1))).encode(), "out of range"),
    "1e22 timestamp as a string": (
        json.dumps(_request(_span(startTimeUnixNano="1e22"))).encode(), "out of range"),
    "boolValue not a boolean": (
        json.dumps(_request(_span(attributes=[
            _attr("tracehouse.blocked", {"boolValue": "maybe"})]))).encode(), "boolValue"),
}


# --------------------------------------------------------------------------------------------
# decode level (fast)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_decode_rejects_malformed_json_with_a_reason(case: str) -> None:
    body, reason = MALFORMED[case]
    with pytest.raises(OTLPDecodeError, match=reason):
        decode_json(body)


def test_decode_accepts_what_otlp_json_allows() -> None:
    spans = decode_json(json.dumps(_request(_span(
        startTimeUnixNano=T0, endTimeUnixNano="1.7726148010e18",
        attributes=[_attr("a", {"doubleValue": "NaN"}), _attr("b", {"doubleValue": "2.5"}),
                    _attr("c", {"intValue": 7}), _attr("d", {"boolValue": True}),
                    _attr("e", {"stringValue": "😀 \ud83d\ude00"}),
                    _attr("f", _nested_array(32))]))).encode())
    (s,) = spans
    assert s.end_time_unix_nano == 1_772_614_801_000_000_000
    assert s.attributes["b"] == 2.5 and s.attributes["c"] == 7 and s.attributes["d"] is True
    assert s.attributes["e"] == "😀 😀"  # a valid surrogate pair is one character
    assert s.attributes["a"] != s.attributes["a"]  # NaN
    assert not s.truncated


def test_name_key_and_value_caps_cut_and_tag() -> None:
    limits = DecodeLimits(max_name_chars=100, max_key_chars=20, max_value_chars=50)
    body = json.dumps(_request(_span(
        name="x" * 65_536,
        attributes=[_attr("gen_ai.operation.name", {"stringValue": "chat"}),
                    _attr("k" * 21, {"stringValue": "dropped"}),
                    _attr("gen_ai.request.model", {"stringValue": "m" * 70})]))).encode()
    (span,) = decode_json(body, limits)
    assert len(span.name) == 100 and span.truncated
    assert "k" * 21 not in span.attributes
    assert span.attributes["gen_ai.request.model"] == "m" * 50
    (row,) = spans_to_table([span], Redactor(KEY.encode())).to_pylist()
    assert "truncated" in row["privacy_tags"]
    assert row["operation_name"] == "x" * 100
    # the default cap bounds a 64 KiB name (what cost 9 s of e-mail regex) to 1 024 chars
    (span,) = decode_json(json.dumps(_request(_span(name="a" * 65_536))).encode())
    assert len(span.name) == 1_024 and span.truncated
    (untouched,) = decode_json(json.dumps(_request(_span())).encode())
    assert not untouched.truncated


def test_protobuf_gets_the_same_caps() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id = b"\x01" * 16, b"\x02" * 8
    span.name = "n" * 5_000
    kv = span.attributes.add()
    kv.key, kv.value.string_value = "v", "s" * 100_000
    kv = span.attributes.add()
    kv.key, kv.value.string_value = "q" * 300, "dropped"
    (raw,) = decode_request(req.SerializeToString(), "application/x-protobuf")
    assert len(raw.name) == 1_024 and len(raw.attributes["v"]) == 65_536
    assert list(raw.attributes) == ["v"] and raw.truncated


def test_one_decompression_only_and_the_cap_is_on_the_inflated_size() -> None:
    inner = _gzip_stream(200 * 1024 * 1024)  # 200 MiB of zeros
    bomb = gzip.compress(inner, 9)
    assert len(bomb) < 2_000
    # inflated once: the inner gzip stays compressed and is not OTLP
    assert decompress(bomb, "gzip", limit=64 * 1024 * 1024) == inner
    with pytest.raises(OTLPDecodeError, match="protobuf"):
        decode_request(bomb, "application/x-protobuf", "gzip")
    # a single-layer bomb stops at the cap without inflating the rest
    with pytest.raises(PayloadTooLargeError, match="exceeds 1048576"):
        decompress(inner, "gzip", limit=1024 * 1024)
    with pytest.raises(OTLPDecodeError, match="truncated"):
        decompress(inner[: len(inner) // 2], "gzip")
    with pytest.raises(OTLPDecodeError, match="trailing"):
        decompress(gzip.compress(b"{}") + b"garbage", "gzip")
    two_members = gzip.compress(b'{"a": ') + gzip.compress(b"1}")
    assert decompress(two_members, "gzip") == b'{"a": 1}'
    with pytest.raises(PayloadTooLargeError):
        decompress(gzip.compress(b"x" * 600) * 2, "gzip", limit=1_000)
    # without a Content-Encoding a gzip body is not inflated at all
    assert decompress(inner[:100], "identity") == inner[:100]


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


def _post(url: str, body: bytes, ctype: str = "application/json",
          headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": ctype, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as resp:
        return json.loads(resp.read())


def _start(tmp_path: Path, **over: Any) -> Receiver:
    config = ServerConfig(**{"lake": tmp_path / "lake", "port": 0, "flush_seconds": 0.2,
                             "worker_kind": "thread", **over})
    receiver = Receiver(config, Redactor(KEY.encode()))
    receiver.start()
    return receiver


@pytest.fixture
def server(tmp_path: Path):
    receiver = _start(tmp_path, header_timeout_seconds=0.5, body_timeout_seconds=0.5,
                      max_decompressed_bytes=8 * 1024 * 1024)
    yield receiver
    receiver.stop()


@pytest.mark.slow
def test_every_malformed_body_is_a_400_with_a_reason(server: Receiver) -> None:
    url = f"http://127.0.0.1:{server.port}/v1/traces"
    for case, (body, reason) in MALFORMED.items():
        status, _, payload = _post(url, body)
        assert status == 400, (case, status, payload)
        assert reason in json.loads(payload)["error"], (case, payload)
    feedback = f"http://127.0.0.1:{server.port}/v1/feedback"
    bad_rows = {
        "lone surrogate": b'[{"feedback_id": "f", "comment": "x\\udc00"}]',
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "not UTF-8": b'[{"comment": "\xff\xfe"}]',
    }
    for case, body in bad_rows.items():
        status, _, payload = _post(feedback, body)
        assert status == 400 and json.loads(payload)["error"], (case, status, payload)
    # and a good request still lands
    good = (FIXTURES / "genai.jsonl").read_bytes().splitlines()[0]
    assert _post(url, good)[0] == 200
    health = _health(server.port)
    assert health["rejected_requests"] == len(MALFORMED) + len(bad_rows)
    deadline = time.monotonic() + 20
    while _health(server.port)["rows_written"] < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(r["received"] for r in lake_status(server.config.lake).to_pylist()) == 4


@pytest.mark.slow
def test_a_token_count_of_1e30_as_a_double_is_never_a_500_nor_lands(server: Receiver) -> None:
    # A valid double that no int64 column holds: refused with a reason, or landed without it.
    body = json.dumps(_request(_span(attributes=[
        _attr("gen_ai.operation.name", {"stringValue": "chat"}),
        _attr("gen_ai.usage.input_tokens", {"doubleValue": 1e30}),
        _attr("gen_ai.usage.output_tokens", {"intValue": 7})]))).encode()
    status, _, payload = _post(f"http://127.0.0.1:{server.port}/v1/traces", body)
    assert status in (200, 400), (status, payload)
    if status == 400:
        assert "contract" in json.loads(payload)["error"]
        return
    deadline = time.monotonic() + 20
    while _health(server.port)["rows_written"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    (row,) = pq.read_table(next((server.config.lake / "spans").glob("dt=*/*.parquet"))).to_pylist()
    assert row["input_tokens"] is None and row["output_tokens"] == 7


@pytest.mark.slow
def test_a_64_kib_span_name_lands_cut_and_tagged(server: Receiver) -> None:
    # The finding: 64 KiB of "a." in a name cost 9 s in the e-mail regex and blocked /healthz.
    body = json.dumps(_request(_span(name="a." * 32_768))).encode()
    status, _, _ = _post(f"http://127.0.0.1:{server.port}/v1/traces", body)
    assert status == 200
    deadline = time.monotonic() + 20
    while _health(server.port)["rows_written"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    (row,) = pq.read_table(next((server.config.lake / "spans").glob("dt=*/*.parquet"))).to_pylist()
    assert row["operation_name"] == "a." * 512 and "truncated" in row["privacy_tags"]


@pytest.mark.slow
def test_gzip_of_gzip_is_refused_and_a_bomb_is_413(server: Receiver) -> None:
    url = f"http://127.0.0.1:{server.port}/v1/traces"
    inner = _gzip_stream(200 * 1024 * 1024)
    status, _, payload = _post(url, gzip.compress(inner, 9), "application/x-protobuf",
                               {"Content-Encoding": "gzip"})
    assert status == 400 and "protobuf" in json.loads(payload)["error"]
    status, _, payload = _post(url, inner, "application/json", {"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed body exceeds" in json.loads(payload)["error"]
    assert _health(server.port)["status"] == "ok"


def _raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a new connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            out += b"<still open>"
        return out


@pytest.mark.slow
def test_bad_content_length_and_stalled_clients_are_cut_off(server: Receiver) -> None:
    port = server.port
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: -1\r\n\r\n")
    assert _raw(port, head).startswith(b"HTTP/1.1 400")
    # half a request head: closed after the head timeout (0.5 s), answered with nothing
    started = time.monotonic()
    assert _raw(port, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n") == b""
    assert time.monotonic() - started < 4
    # a body that never completes: 408 after the body timeout (0.5 s)
    stalled = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 1000\r\n\r\n{")
    reply = _raw(port, stalled)
    assert reply.startswith(b"HTTP/1.1 408") and b"not received within" in reply


@pytest.mark.slow
def test_stalled_bodies_hold_no_threads(tmp_path: Path) -> None:
    receiver = _start(tmp_path, body_timeout_seconds=30, header_timeout_seconds=30,
                      max_connections=1000)
    try:
        before = threading.active_count()
        socks = []
        head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{")
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
            s.sendall(head)
            socks.append(s)
        time.sleep(0.5)
        health = _health(receiver.port)  # still answers, with 300 bodies open
        assert health["status"] == "ok"
        assert threading.active_count() - before < 10  # was one thread per connection (306)
        for s in socks:
            s.close()
    finally:
        receiver.stop()


def _big_body(copies: int) -> bytes:
    """The 4 spans of the GenAI fixture ``copies`` times over, with distinct span ids."""
    doc = json.loads((FIXTURES / "genai.jsonl").read_bytes().splitlines()[0])
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(spans) == 4
    many = []
    for i in range(copies):
        for s in spans:
            s2 = copy.deepcopy(s)
            s2["spanId"] = f"{i:08x}{s['spanId'][8:]}"
            many.append(s2)
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"] = many
    return json.dumps(doc).encode()


@pytest.mark.slow
def test_busy_workers_answer_503_at_once(tmp_path: Path) -> None:
    receiver = _start(tmp_path, max_pending=1, workers=1, retry_after_seconds=4)
    try:
        url = f"http://127.0.0.1:{receiver.port}/v1/traces"
        result: dict[str, Any] = {}
        big = _big_body(1_500)
        poster = threading.Thread(target=lambda: result.update(status=_post(url, big)[0]))
        poster.start()
        deadline = time.monotonic() + 30
        while _health(receiver.port)["decode_in_flight"] == 0 and poster.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert poster.is_alive(), "the big request ended before the test could see it"
        small = (FIXTURES / "genai.jsonl").read_bytes().splitlines()[0]
        status, headers, payload = _post(url, small)
        assert status == 503 and headers["Retry-After"] == "4"
        assert "busy" in json.loads(payload)["error"]
        poster.join(60)
        assert result["status"] == 200
    finally:
        receiver.stop()


@pytest.mark.slow
def test_healthz_answers_while_a_big_body_is_decoded_in_a_worker_process(
        tmp_path: Path) -> None:
    receiver = _start(tmp_path, worker_kind="process", workers=1,
                      max_body_bytes=64 * 1024 * 1024)
    try:
        body = _big_body(2_500)
        url = f"http://127.0.0.1:{receiver.port}/v1/traces"
        result: dict[str, Any] = {}
        poster = threading.Thread(target=lambda: result.update(
            status=_post(url, body)[0], done=time.monotonic()))
        poster.start()
        seen_in_flight = []
        while poster.is_alive():
            started = time.monotonic()
            health = _health(receiver.port)
            seen_in_flight.append((health["decode_in_flight"], time.monotonic() - started))
            time.sleep(0.05)
        poster.join()
        assert result["status"] == 200
        during = [latency for n, latency in seen_in_flight if n >= 1]
        assert during, "the big request never showed as in flight"
        assert max(during) < 2.0, seen_in_flight  # answered while the worker was busy
    finally:
        receiver.stop()
    assert sum(r["accepted"] for r in lake_status(receiver.config.lake).to_pylist()) == \
        2_500 * 4
    assert pq.read_table(next((receiver.config.lake / "spans").glob("dt=*/*.parquet")))


@pytest.mark.slow
def test_a_dead_worker_process_costs_one_request_not_the_server(tmp_path: Path) -> None:
    import os
    import signal

    receiver = _start(tmp_path, worker_kind="process", workers=1)
    url = f"http://127.0.0.1:{receiver.port}/v1/traces"
    good = (FIXTURES / "genai.jsonl").read_bytes().splitlines()[0]
    try:
        assert _post(url, good)[0] == 200
        executor = receiver.pool._executor  # the one worker process, killed as by the OOM killer
        (pid,) = list(executor._processes)  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        status, _, payload = _post(url, good)
        assert status == 500 and "worker died" in json.loads(payload)["error"]
        assert _post(url, good)[0] == 200  # a new pool took over
        assert receiver.pool.restarts == 1
    finally:
        receiver.stop()
    assert sum(r["accepted"] for r in lake_status(receiver.config.lake).to_pylist()) == 8


@pytest.mark.slow
def test_a_spool_that_cannot_be_written_is_a_503_not_an_ack(tmp_path: Path) -> None:
    receiver = _start(tmp_path)
    url = f"http://127.0.0.1:{receiver.port}/v1/traces"
    good = (FIXTURES / "genai.jsonl").read_bytes().splitlines()[0]
    try:
        spool = receiver.writer.spool_dir
        assert spool is not None
        spool.rmdir()
        spool.write_text("not a folder")  # every spool write now fails
        status, headers, payload = _post(url, good)
        assert status == 503 and headers["Retry-After"] == "2"
        assert "cannot spool" in json.loads(payload)["error"]
        assert receiver.writer.buffered_rows == 0
        spool.unlink()
        spool.mkdir()
        assert _post(url, good)[0] == 200
    finally:
        receiver.stop()


def _serve(lake: Path) -> tuple[Any, str]:
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRACEHOUSE_HASH_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tracehouse.cli import main; main()", "serve",
         "--lake", str(lake), "--port", "0", "--grpc-port", "-1", "--workers", "1",
         "--flush-seconds", "600", "--batch-rows", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on http://" in line, line
    return proc, line.split("listening on ")[1].split()[0]


@pytest.mark.slow
def test_kill_9_after_the_200_loses_nothing(tmp_path: Path) -> None:
    import signal

    lake = tmp_path / "lake"
    lines = (FIXTURES / "genai.jsonl").read_bytes().splitlines()[:2]
    sent = sum(len(decode_json(line)) for line in lines)
    proc, base = _serve(lake)
    try:
        for line in lines:
            assert _post(f"{base}/v1/traces", line)[0] == 200
        assert _health(int(base.rsplit(":", 1)[1]))["rows_written"] == 0
    finally:
        proc.kill()  # SIGKILL: no flush (and the worker must exit too, or this never returns)
        proc.communicate(timeout=30)
    assert not list(lake.glob("spans/dt=*/*.parquet"))
    assert len(list((lake / "_spool").glob("*.arrow"))) == 2
    proc, base = _serve(lake)  # replays the spool
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "everything accepted is in the lake" in out, err
    status = lake_status(lake).to_pylist()
    assert sum(r["received"] for r in status) == sent and all(r["reconciled"] for r in status)
    assert not list((lake / "_spool").glob("*.arrow"))
