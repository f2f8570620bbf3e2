"""OTLP/gRPC for :class:`tracehouse.server.Receiver`: ``TraceService/Export`` on port 4317.

The method is registered with no request deserializer, so the handler gets the serialized
``ExportTraceServiceRequest`` and sends it down the same path as an OTLP/HTTP protobuf body
(worker pool, mapping, redaction, spool, lake writer). grpc-core inflates gzip-compressed
messages and refuses one larger than ``max_decompressed_bytes`` (RESOURCE_EXHAUSTED).

Status codes, as the OTLP exporters expect them: malformed → INVALID_ARGUMENT (not retried);
buffer full, workers busy, shutting down → UNAVAILABLE (retried with backoff); no or wrong
token → UNAUTHENTICATED.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

if TYPE_CHECKING:
    from tracehouse.server import Receiver

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


class GRPCServer:
    """A grpcio server with the OTLP trace service, bound at construction."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        config = receiver.config
        limit = max(config.max_body_bytes, config.max_decompressed_bytes)
        # Handler threads only wait on the worker pool; one more than its slots lets the pool
        # answer "busy" (UNAVAILABLE) itself rather than grpc queueing without bound.
        self.server = grpc.server(
            futures.ThreadPoolExecutor(receiver.pool.max_pending + 1,
                                       thread_name_prefix="tracehouse-grpc"),
            maximum_concurrent_rpcs=receiver.pool.max_pending * 4,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(
                self.export,
                request_deserializer=None,  # raw bytes: decoded in the worker pool
                response_serializer=None,
            ),
        })
        self.server.add_generic_rpc_handlers((handler,))
        address = f"{config.host}:{config.grpc_port}"
        if ":" in config.host:
            address = f"[{config.host}]:{config.grpc_port}"
        if config.tls_cert is not None:
            assert config.tls_key is not None
            creds = grpc.ssl_server_credentials(
                [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())]
            )
            self.port = self.server.add_secure_port(address, creds)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """``TraceService/Export``: the serialized request in, an empty response out."""
        from tracehouse.server import SOURCE_TRACES_GRPC, IngestError

        receiver = self.receiver
        metadata = dict(context.invocation_metadata() or ())
        if not receiver.authorized(_text(metadata.get("authorization"))):
            receiver.count("rejected_requests")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            receiver.ingest_traces(request, "application/x-protobuf", None,
                                   source=SOURCE_TRACES_GRPC)
        except IngestError as exc:
            receiver.count("rejected_requests")
            code = _CODES.get(exc.status, grpc.StatusCode.INTERNAL)
            if exc.retry_after is not None:
                context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
            context.abort(code, exc.reason)
        receiver.count("grpc_requests")
        return _EMPTY_RESPONSE

    def start(self) -> None:
        """Start serving (grpc runs its own threads)."""
        self.server.start()

    def stop(self, grace: float) -> None:
        """Refuse new calls; calls in flight get ``grace`` seconds."""
        self.server.stop(grace).wait(grace + 5)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
