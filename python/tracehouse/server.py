"""`tracehouse serve`: an OTLP/HTTP receiver that lands spans, feedback and annotations.

Endpoints (loopback by default)::

    POST /v1/traces       OTLP ExportTraceServiceRequest, protobuf or JSON, gzip/deflate allowed
    POST /v1/feedback     contract feedback rows as JSON (array, {"rows": [...]}, or JSON lines)
    POST /v1/annotations  contract annotation rows, same shapes
    GET  /healthz         liveness and buffer state

A request is decoded, mapped and redacted in its handler thread (a malformed body gets a 400
with the reason; nothing unredacted is ever buffered), then handed to :class:`LakeWriter`:
a bounded buffer (503 + ``Retry-After`` when full, never unbounded growth) drained by one writer
thread into :func:`tracehouse.lake.write_batch` by size or age. Before a request gets its 2xx
its rows are also written to a spool file (``<lake>/_spool``, fsynced); the spool file is removed
once the rows are in the lake, and replayed at start-up if the process died first. SIGTERM
stops accepting, flushes everything accepted, and exits 0 (1 when acknowledged rows could not
be landed; see :mod:`tracehouse.spool`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from tracehouse.lake import SPOOL_DIR
from tracehouse.otlp.decode import (
    OTLPDecodeError,
    PayloadTooLargeError,
    decode_request,
    decompress,
)
from tracehouse.otlp.mapping import MappingDefaults, SpanMapper
from tracehouse.otlp.rows import RowsError, parse_rows, rows_to_table
from tracehouse.redaction import ArtifactStore, Redactor
from tracehouse.spool import BufferFullError, ClosingError, LakeWriter, ShutdownReport

__all__ = ["BufferFullError", "ClosingError", "LakeWriter", "Receiver", "ServerConfig", "serve"]

log = logging.getLogger(__name__)

SOURCE_TRACES = "otlp-http"
SOURCE_ROWS = "http-json"
_PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")


@dataclass
class ServerConfig:
    """Everything `tracehouse serve` can be told."""

    lake: Path
    host: str = "127.0.0.1"
    port: int = 4318
    batch_rows: int = 5_000  # flush when this many rows are buffered ...
    flush_seconds: float = 2.0  # ... or when the oldest buffered rows are this old
    max_buffer_rows: int = 100_000  # above this, 503 + Retry-After
    max_body_bytes: int = 16 * 1024 * 1024  # 413 above (compressed size)
    max_decompressed_bytes: int = 64 * 1024 * 1024  # 413 above (inflated size)
    retry_after_seconds: int = 2
    spool: bool = True
    spool_dir: Path | None = None  # default <lake>/_spool
    artifact_dir: Path | None = None  # tier-3 content store; None: content withheld
    defaults: MappingDefaults = field(default_factory=MappingDefaults)


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class _HTTPError(Exception):
    def __init__(self, status: HTTPStatus, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tracehouse"
    receiver: Receiver  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, doc: Any,
                   headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json", headers)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/healthz":
            self._send_json(HTTPStatus.OK, self.receiver.health())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        route = {
            "/v1/traces": self.receiver.handle_traces,
            "/v1/feedback": lambda b, h: self.receiver.handle_rows("feedback", b, h),
            "/v1/annotations": lambda b, h: self.receiver.handle_rows("annotations", b, h),
        }.get(path)
        try:
            body = self._read_body()
            if route is None:
                raise _HTTPError(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")
            status, payload, ctype = route(body, self.headers)
        except _HTTPError as exc:
            self.receiver.count("rejected_requests")
            if exc.status >= 500:
                log.warning("%s %s: %s", exc.status.value, path, exc.reason)
            self._send_json(exc.status, {"error": exc.reason}, exc.headers)
            return
        except Exception:
            self.receiver.count("rejected_requests")
            log.exception("unexpected error on %s", path)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
            return
        self._send(status, payload, ctype)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise _HTTPError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported")
        if length is None:
            self.close_connection = True
            raise _HTTPError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if n > self.receiver.config.max_body_bytes:
            self.close_connection = True
            raise _HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"body of {n} bytes exceeds {self.receiver.config.max_body_bytes}")
        return self.rfile.read(n)


class Receiver:
    """The OTLP/HTTP receiver: HTTP server, mapper, redactor and lake writer together."""

    def __init__(self, config: ServerConfig, redactor: Redactor) -> None:
        self.config = config
        self.redactor = redactor
        artifacts = (
            ArtifactStore(config.artifact_dir, lake=config.lake) if config.artifact_dir else None
        )
        self.mapper = SpanMapper(redactor, defaults=config.defaults, artifacts=artifacts)
        spool = None
        if config.spool:
            spool = config.spool_dir or Path(config.lake) / SPOOL_DIR
        self.writer = LakeWriter(
            Path(config.lake),
            batch_rows=config.batch_rows,
            flush_seconds=config.flush_seconds,
            max_buffer_rows=config.max_buffer_rows,
            spool_dir=spool,
        )
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"receiver": self})
        self.httpd = ThreadingHTTPServer((config.host, config.port), handler)
        self.httpd.daemon_threads = True
        self._serve_thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        return int(self.httpd.server_address[1])

    def count(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def health(self) -> dict[str, Any]:
        """Liveness and buffer state, as ``GET /healthz`` returns it."""
        with self._counts_lock:
            counts = dict(self._counts)
        return {
            "status": "ok",
            "buffered_rows": self.writer.buffered_rows,
            "max_buffer_rows": self.config.max_buffer_rows,
            "rows_written": self.writer.rows_written,
            "batches_written": self.writer.batches_written,
            "write_errors": self.writer.write_errors,
            **counts,
        }

    # ---- request handling (called from handler threads) --------------------------------

    def _submit(self, dataset: str, table: pa.Table, source: str) -> None:
        try:
            self.writer.submit(dataset, table, source=source)
        except (BufferFullError, ClosingError) as exc:
            raise _HTTPError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"{exc}; retry later",
                {"Retry-After": str(self.config.retry_after_seconds)},
            ) from None

    def _inflate(self, body: bytes, headers: Any) -> bytes:
        try:
            return decompress(body, headers.get("Content-Encoding"),
                              limit=self.config.max_decompressed_bytes)
        except PayloadTooLargeError as exc:
            raise _HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
        except OTLPDecodeError as exc:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, str(exc)) from None

    def handle_traces(self, body: bytes, headers: Any) -> tuple[HTTPStatus, bytes, str]:
        """Decode, map, redact and buffer one OTLP export; the OTLP success response."""
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in (*_PROTOBUF_TYPES, "application/json"):
            raise _HTTPError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"unsupported Content-Type {ctype!r}: use application/x-protobuf or "
                "application/json",
            )
        data = self._inflate(body, headers)
        try:
            spans = decode_request(data, ctype)
        except OTLPDecodeError as exc:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        table = self.mapper.to_table(spans)
        self._submit("spans", table, SOURCE_TRACES)
        self.count("trace_requests")
        self.count("spans_received", table.num_rows)
        if ctype in _PROTOBUF_TYPES:
            # An empty ExportTraceServiceResponse: full success, serialized, is zero bytes.
            return HTTPStatus.OK, b"", ctype
        return HTTPStatus.OK, b"{}", "application/json"

    def handle_rows(self, dataset: str, body: bytes,
                    headers: Any) -> tuple[HTTPStatus, bytes, str]:
        """Buffer contract rows of ``dataset`` sent as JSON; how many were taken."""
        ctype = (headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", "application/x-ndjson", "application/jsonl"):
            raise _HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                             f"unsupported Content-Type {ctype!r}: send JSON rows")
        data = self._inflate(body, headers)
        try:
            prepared = rows_to_table(dataset, parse_rows(data), self.redactor)
        except (RowsError, UnicodeDecodeError) as exc:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        self._submit(dataset, prepared.table, SOURCE_ROWS)
        self.count(f"{dataset}_rows_received", prepared.table.num_rows)
        doc = {"received_rows": prepared.table.num_rows, "dropped_fields": prepared.dropped_fields}
        return HTTPStatus.OK, json.dumps(doc).encode(), "application/json"

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer and serve in a background thread."""
        self.writer.start()
        self._serve_thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name="tracehouse-http", daemon=True,
        )
        self._serve_thread.start()

    def stop(self) -> ShutdownReport:
        """Stop accepting, land everything accepted, close the socket; what was left."""
        self.httpd.shutdown()
        self.shutdown_report = self.writer.close()
        self.httpd.server_close()
        return self.shutdown_report


def serve(config: ServerConfig, redactor: Redactor,
          *, ready: Callable[[Receiver], None] | None = None) -> int:
    """Run the receiver until SIGTERM or SIGINT, then flush; 0, or 1 when acknowledged rows
    are not in the lake (they stay in the spool; the log says how many)."""
    receiver = Receiver(config, redactor)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.warning("signal %d: stopping, flushing %d buffered rows", signum,
                    receiver.writer.buffered_rows)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    report = None
    try:
        receiver.start()
        if ready is not None:
            ready(receiver)
        while not stop.wait(0.2):
            pass
    finally:
        report = receiver.stop()
        for s, h in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, h)
    return report.exit_code
