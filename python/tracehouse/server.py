"""`tracehouse serve`: an OTLP receiver (HTTP and gRPC) that lands spans, feedback, annotations.

Endpoints (loopback by default)::

    POST /v1/traces       OTLP/HTTP ExportTraceServiceRequest, protobuf or JSON, gzip/deflate
    POST /v1/feedback     contract feedback rows as JSON (array, {"rows": [...]}, or JSON lines)
    POST /v1/annotations  contract annotation rows, same shapes
    GET  /healthz         liveness and buffer state (never needs the token)
    gRPC :4317            opentelemetry.proto.collector.trace.v1.TraceService/Export

The HTTP side is a Starlette app on uvicorn (:mod:`tracehouse.server_http`), the gRPC side a
grpcio server (:mod:`tracehouse.server_grpc`); both hand the raw body to :class:`Receiver`,
which inflates, decodes, maps and redacts it in a bounded worker pool
(:mod:`tracehouse.server_work`; a malformed body is a 400 / INVALID_ARGUMENT with the reason,
nothing unredacted is ever buffered) and gives the table to :class:`LakeWriter`
(:mod:`tracehouse.spool`): a bounded buffer (503 + ``Retry-After`` when full, never unbounded
growth) drained by one writer thread into :func:`tracehouse.lake.write_batch` by size or age.
Before a request gets its 2xx its rows are also written to a spool file (``<lake>/_spool``,
fsynced); the spool file is removed once the rows are in the lake, and replayed at start-up if
the process died first. SIGTERM stops accepting, flushes everything accepted, and exits 0 (1
when acknowledged rows could not be landed; see :mod:`tracehouse.spool`).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from tracehouse.errors import TracehouseError
from tracehouse.lake import SPOOL_DIR
from tracehouse.otlp.decode import DEFAULT_LIMITS, DecodeLimits
from tracehouse.otlp.mapping import MappingDefaults
from tracehouse.redaction import Redactor
from tracehouse.server_work import (
    BusyError,
    JobError,
    WorkerPool,
    WorkerSetup,
)
from tracehouse.spool import BufferFullError, ClosingError, LakeWriter, ShutdownReport

__all__ = ["BufferFullError", "ClosingError", "LakeWriter", "Receiver", "ServerConfig", "serve"]

log = logging.getLogger(__name__)

SOURCE_TRACES = "otlp-http"
SOURCE_TRACES_GRPC = "otlp-grpc"
SOURCE_ROWS = "http-json"
TOKEN_ENV = "TRACEHOUSE_INGEST_TOKEN"


@dataclass
class ServerConfig:
    """Everything `tracehouse serve` can be told."""

    lake: Path
    host: str = "127.0.0.1"
    port: int = 4318  # OTLP/HTTP; 0 picks a free port
    grpc_port: int | None = None  # OTLP/gRPC (the CLI's default is 4317); None: no gRPC
    batch_rows: int = 5_000  # flush when this many rows are buffered ...
    flush_seconds: float = 2.0  # ... or when the oldest buffered rows are this old
    max_buffer_rows: int = 100_000  # above this, 503 + Retry-After
    max_body_bytes: int = 16 * 1024 * 1024  # 413 above (bytes on the wire)
    max_decompressed_bytes: int = 64 * 1024 * 1024  # 413 above (inflated size)
    retry_after_seconds: int = 2
    spool: bool = True
    spool_dir: Path | None = None  # default <lake>/_spool
    artifact_dir: Path | None = None  # tier-3 content store; None: content withheld
    defaults: MappingDefaults = field(default_factory=MappingDefaults)
    limits: DecodeLimits = DEFAULT_LIMITS  # name / key / value length caps, nesting depth
    auth_token: str | None = None  # required as "Authorization: Bearer <token>" when set
    tls_cert: Path | None = None  # PEM certificate (chain) and key: HTTPS and gRPC over TLS
    tls_key: Path | None = None
    workers: int = 2  # decode/map workers
    worker_kind: Literal["process", "thread"] = "process"
    max_pending: int = 16  # requests decoding or waiting for a worker; 503 above
    header_timeout_seconds: float = 10.0  # a request head must arrive within this
    body_timeout_seconds: float = 30.0  # the whole body must arrive within this (408)
    keepalive_seconds: float = 5.0  # idle keep-alive connections are closed after this
    max_connections: int = 256  # open HTTP connections; 503 above
    shutdown_grace_seconds: float = 10.0  # in-flight requests get this long at SIGTERM


# --------------------------------------------------------------------------------------------
# The transport-independent receiver
# --------------------------------------------------------------------------------------------


class IngestError(TracehouseError):
    """A refused request: ``status`` is the HTTP status (the gRPC side maps it to a code)."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Accepted:
    """What an accepted request carried."""

    rows: int
    dropped_fields: list[str] = field(default_factory=list)


class Receiver:
    """The OTLP receiver: HTTP and gRPC servers, worker pool, redactor and lake writer."""

    def __init__(self, config: ServerConfig, redactor: Redactor) -> None:
        from tracehouse.server_http import HTTPServer

        self.config = config
        self.redactor = redactor
        if (config.tls_cert is None) != (config.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key")
        self.pool = WorkerPool(
            WorkerSetup(redactor=redactor, lake=Path(config.lake), defaults=config.defaults,
                        artifact_dir=config.artifact_dir, limits=config.limits,
                        max_decompressed_bytes=config.max_decompressed_bytes),
            workers=config.workers, kind=config.worker_kind, max_pending=config.max_pending,
        )
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
        self.http = HTTPServer(self)  # binds the socket now: the port is known
        self.grpc: Any = None
        if config.grpc_port is not None:
            from tracehouse.server_grpc import GRPCServer

            self.grpc = GRPCServer(self)

    @property
    def port(self) -> int:
        """The bound HTTP port (useful with ``port=0``)."""
        return self.http.port

    @property
    def grpc_port(self) -> int | None:
        """The bound gRPC port, or None without gRPC."""
        return self.grpc.port if self.grpc is not None else None

    @property
    def tls(self) -> bool:
        """True when both transports speak TLS."""
        return self.config.tls_cert is not None

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``key`` shown by ``/healthz``."""
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
            "decode_in_flight": self.pool.in_flight,
            "decode_slots": self.pool.max_pending,
            **counts,
        }

    def authorized(self, authorization: str | None) -> bool:
        """True without a configured token, or when ``authorization`` is ``Bearer <token>``."""
        token = self.config.auth_token
        if not token:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode()
        )

    # ---- request handling (blocking: called from worker-facing threads) ----------------

    def _work(self, method: str, *args: Any) -> Any:
        try:
            return self.pool.run(method, *args)
        except BusyError as exc:
            raise IngestError(503, f"{exc}; retry later", self.config.retry_after_seconds) from None
        except JobError as exc:
            raise IngestError(exc.status, exc.reason) from None

    def _submit(self, dataset: str, table: pa.Table, source: str) -> None:
        try:
            self.writer.submit(dataset, table, source=source)
        except (BufferFullError, ClosingError) as exc:
            raise IngestError(503, f"{exc}; retry later", self.config.retry_after_seconds) from None
        except OSError as exc:  # the spool could not be written (disk full, ...): not acked
            log.error("cannot spool %d %s rows: %s", table.num_rows, dataset, exc)
            raise IngestError(503, f"cannot spool the rows ({exc.strerror or exc}); retry later",
                              self.config.retry_after_seconds) from None

    def ingest_traces(self, body: bytes, content_type: str, content_encoding: str | None,
                      *, source: str = SOURCE_TRACES) -> Accepted:
        """Inflate, decode, map, redact and buffer one OTLP export; raises :class:`IngestError`."""
        table = self._work("traces", body, content_type, content_encoding)
        self._submit("spans", table, source)
        self.count("trace_requests")
        self.count("spans_received", table.num_rows)
        return Accepted(table.num_rows)

    def ingest_rows(self, dataset: str, body: bytes, content_encoding: str | None) -> Accepted:
        """Buffer contract rows of ``dataset`` sent as JSON; raises :class:`IngestError`."""
        table, dropped = self._work("rows", dataset, body, content_encoding)
        self._submit(dataset, table, SOURCE_ROWS)
        self.count(f"{dataset}_rows_received", table.num_rows)
        return Accepted(table.num_rows, dropped)

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers and the writer (replaying the spool), then serve in background
        threads; returns once both transports listen."""
        self.pool.start()
        self.writer.start()
        self.http.start()
        if self.grpc is not None:
            self.grpc.start()

    def stop(self) -> ShutdownReport:
        """Stop accepting, let in-flight requests finish, land everything accepted; what was
        left (the exit code of `serve`)."""
        grace = self.config.shutdown_grace_seconds
        if self.grpc is not None:
            self.grpc.stop(grace)
        self.http.stop(grace)
        self.shutdown_report = self.writer.close()
        self.pool.close()
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
