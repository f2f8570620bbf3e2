"""OTLP/HTTP for :class:`tracehouse.server.Receiver`: a Starlette app served by uvicorn.

The event loop only moves bytes: it checks the token, the Content-Type and the declared length
before reading anything, reads the body (at most ``max_body_bytes``, within
``body_timeout_seconds``), and hands it to a thread that waits on the worker pool and the spool
fsync. So a slow or huge request never delays ``/healthz`` or another client. Connections that
do not send a complete request head within ``header_timeout_seconds`` are closed (a stalled
client costs a socket, never a thread), and at most ``max_connections`` are served at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from tracehouse.errors import TracehouseError
from tracehouse.server_work import JSON_TYPES, PROTOBUF_TYPES, ROWS_TYPES

if TYPE_CHECKING:
    from tracehouse.server import Receiver

log = logging.getLogger(__name__)


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(doc).encode(), status, headers, "application/json")


def _error(status: int, reason: str, retry_after: int | None = None,
           *, close: bool = False) -> Response:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="tracehouse"'
    if close:
        headers["Connection"] = "close"
    return _json(status, {"error": reason}, headers)


def _ctype(request: Request, default: str = "") -> str:
    return (request.headers.get("content-type") or default).split(";")[0].strip().lower()


class _RefusedError(TracehouseError):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _App:
    """The endpoints; one instance per receiver."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.config = receiver.config
        # Threads that wait for a worker and fsync the spool. Requests handed to them are
        # counted here (on the event loop only), so none ever queues: one more is a 503.
        self.max_pending = receiver.pool.max_pending
        self.pending = 0
        self.io = ThreadPoolExecutor(self.max_pending, thread_name_prefix="tracehouse-io")

    async def healthz(self, request: Request) -> Response:
        return _json(200, self.receiver.health())

    def _check_room(self) -> None:
        if self.pending >= self.max_pending:
            raise _RefusedError(_error(
                503, f"all {self.max_pending} decode slots are busy; retry later",
                self.config.retry_after_seconds))

    async def _body(self, request: Request) -> bytes:
        """The body, bounded in size and time; raises :class:`_RefusedError`."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _RefusedError(_error(413, f"body of {declared} bytes exceeds {limit}",
                                       close=True))
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.config.body_timeout_seconds):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _RefusedError(_error(413, f"body exceeds {limit} bytes", close=True))
                    chunks.append(chunk)
        except TimeoutError:
            raise _RefusedError(_error(
                408, f"body not received within {self.config.body_timeout_seconds:g} s",
                close=True)) from None
        return b"".join(chunks)

    async def _ingest(self, request: Request, accepted_ctypes: tuple[str, ...],
                      default_ctype: str, call: Any) -> Response:
        receiver = self.receiver
        try:
            if not receiver.authorized(request.headers.get("authorization")):
                raise _RefusedError(_error(401, "missing or wrong bearer token", close=True))
            ctype = _ctype(request, default_ctype)
            if ctype not in accepted_ctypes:
                raise _RefusedError(_error(
                    415, f"unsupported Content-Type {ctype!r}: use {' or '.join(accepted_ctypes)}",
                    close=True))
            self._check_room()
            body = await self._body(request)
            self._check_room()
            encoding = request.headers.get("content-encoding")
            loop = asyncio.get_running_loop()
            self.pending += 1
            try:
                return await loop.run_in_executor(self.io, call, body, ctype, encoding)
            finally:
                self.pending -= 1
        except _RefusedError as exc:
            receiver.count("rejected_requests")
            return exc.response
        except ClientDisconnect:
            receiver.count("rejected_requests")
            return _error(400, "client disconnected before the body was complete")

    def _traces(self, body: bytes, ctype: str, encoding: str | None) -> Response:
        from tracehouse.server import IngestError

        try:
            self.receiver.ingest_traces(body, ctype, encoding)
        except IngestError as exc:
            return self._refused(exc)
        if ctype in PROTOBUF_TYPES:
            # An empty ExportTraceServiceResponse: full success, serialized, is zero bytes.
            return Response(b"", 200, media_type=ctype)
        return Response(b"{}", 200, media_type="application/json")

    def _rows(self, dataset: str) -> Any:
        from tracehouse.server import IngestError

        def call(body: bytes, _ctype: str, encoding: str | None) -> Response:
            try:
                accepted = self.receiver.ingest_rows(dataset, body, encoding)
            except IngestError as exc:
                return self._refused(exc)
            return _json(200, {"received_rows": accepted.rows,
                               "dropped_fields": accepted.dropped_fields})

        return call

    def _refused(self, exc: Any) -> Response:
        self.receiver.count("rejected_requests")
        if exc.status >= 500:
            log.warning("%d: %s", exc.status, exc.reason)
        return _error(exc.status, exc.reason, exc.retry_after)

    async def traces(self, request: Request) -> Response:
        return await self._ingest(request, (*PROTOBUF_TYPES, *JSON_TYPES), "", self._traces)

    async def feedback(self, request: Request) -> Response:
        return await self._ingest(request, ROWS_TYPES, "application/json",
                                  self._rows("feedback"))

    async def annotations(self, request: Request) -> Response:
        return await self._ingest(request, ROWS_TYPES, "application/json",
                                  self._rows("annotations"))

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return _error(404, f"no such endpoint: {request.url.path}")


def build_app(receiver: Receiver) -> Starlette:
    """The Starlette app of ``receiver`` (its thread pool is closed by :class:`HTTPServer`)."""
    app = _App(receiver)
    starlette = Starlette(
        routes=[
            Route("/healthz", app.healthz, methods=["GET"]),
            Route("/v1/traces", app.traces, methods=["POST"]),
            Route("/v1/feedback", app.feedback, methods=["POST"]),
            Route("/v1/annotations", app.annotations, methods=["POST"]),
        ],
        exception_handlers={404: app.not_found},
    )
    starlette.state.io = app.io
    return starlette


def _protocol_with_head_timeout(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head does not arrive within
    ``seconds`` (of connecting, or of the previous response). uvicorn has no such timer: a
    client that sends half a request line would otherwise hold the connection for ever."""

    class _Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(seconds, self._head_timeout)

        def _head_timeout(self) -> None:
            self._head_timer = None
            waiting_for_head = self.cycle is None or self.cycle.response_complete
            if waiting_for_head and not self.transport.is_closing():
                log.debug("closing a connection that sent no request head in %g s", seconds)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return _Protocol


class HTTPServer:
    """uvicorn on a socket bound at construction, run in a background thread."""

    def __init__(self, receiver: Receiver) -> None:
        config = receiver.config
        self.sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((config.host, config.port))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.app = build_app(receiver)
        tls = {}
        if config.tls_cert is not None:
            tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
        self.uvicorn = uvicorn.Server(uvicorn.Config(
            self.app,
            http=_protocol_with_head_timeout(config.header_timeout_seconds),
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=max(1, round(config.keepalive_seconds)),
            timeout_graceful_shutdown=max(1, round(config.shutdown_grace_seconds)),
            limit_concurrency=config.max_connections,
            **tls,  # type: ignore[arg-type]
        ))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        """Serve in a background thread; return once uvicorn listens."""
        self._thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [self.sock]},
                                        name="tracehouse-http", daemon=True)
        self._thread.start()
        while not self.uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start (see the log)")
            self._thread.join(0.02)

    def stop(self, grace: float) -> None:
        """Stop accepting; requests in flight get up to ``grace`` seconds to finish."""
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(grace + 5)
        self.app.state.io.shutdown(wait=True)
        self.sock.close()
