"""OTLP trace payloads (protobuf, OTLP JSON, gzip) to flat span records.

One :class:`RawSpan` per span: ids as lowercase hex, times as unix nanoseconds, kind and status
as integers, resource and span attributes as plain Python dicts (arrays as lists, kvlists as
dicts), exception events kept. Nothing is redacted here; :mod:`tracehouse.otlp.mapping` does
that before anything is written or buffered.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024

_SPAN_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class OTLPDecodeError(ValueError):
    """A payload that is not OTLP trace data; the message says why (sent back with a 400)."""


class PayloadTooLargeError(OTLPDecodeError):
    """A compressed payload that inflates beyond the allowed size."""


@dataclass
class RawEvent:
    """A span event (``exception`` events carry ``exception.type`` / ``.message``)."""

    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


@dataclass
class RawSpan:
    """One decoded span with its resource's attributes."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope_name: str = ""
    events: list[RawEvent] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------


def decompress(body: bytes, content_encoding: str | None = None,
               *, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Inflate a gzip or deflate body (by header, or by gzip magic bytes); bounded by ``limit``."""
    enc = (content_encoding or "").strip().lower()
    if enc in ("", "identity") and body[:2] != b"\x1f\x8b":
        return body
    if enc in ("", "identity", "gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise OTLPDecodeError(f"unsupported Content-Encoding {content_encoding!r}")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OTLPDecodeError(f"body is not valid {enc or 'gzip'} data: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLargeError(f"decompressed body exceeds {limit} bytes")
    return out


# --------------------------------------------------------------------------------------------
# Protobuf
# --------------------------------------------------------------------------------------------


def _pb_value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return getattr(v, which)


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def _spans_from_pb(req: ExportTraceServiceRequest) -> Iterator[RawSpan]:
    for rs in req.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for s in ss.spans:
                yield RawSpan(
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex() or None,
                    name=s.name,
                    kind=int(s.kind),
                    start_time_unix_nano=int(s.start_time_unix_nano),
                    end_time_unix_nano=int(s.end_time_unix_nano),
                    status_code=int(s.status.code),
                    status_message=s.status.message,
                    attributes=_pb_attrs(s.attributes),
                    resource=resource,
                    scope_name=scope,
                    events=[
                        RawEvent(e.name, int(e.time_unix_nano), _pb_attrs(e.attributes))
                        for e in s.events
                    ],
                )


def decode_protobuf(body: bytes) -> list[RawSpan]:
    """Spans of one serialized ``ExportTraceServiceRequest``."""
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise OTLPDecodeError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    return list(_spans_from_pb(req))


def _framed_messages(data: bytes) -> list[bytes] | None:
    """Split 4-byte big-endian length-prefixed messages (the collector file exporter's proto
    format); None unless the framing covers ``data`` exactly."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            return None
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + n > len(data):
            return None
        out.append(data[pos : pos + n])
        pos += n
    return out or None


# --------------------------------------------------------------------------------------------
# OTLP JSON
# --------------------------------------------------------------------------------------------


def _get(obj: dict[str, Any], camel: str, snake: str | None = None) -> Any:
    if camel in obj:
        return obj[camel]
    return obj.get(snake) if snake else None


def _int(value: Any, what: str) -> int:
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OTLPDecodeError(f"{what} is not an integer: {value!r}") from None


def _json_id(value: Any, nbytes: int, what: str) -> str:
    """A hex id from OTLP JSON (hex), tolerating base64 as protobuf's generic JSON writes it."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise OTLPDecodeError(f"{what} must be a hex string")
    v = value.strip()
    if len(v) == nbytes * 2:
        try:
            bytes.fromhex(v)
            return v.lower()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return v.lower()  # left for the contract check to quarantine with a reason
    return raw.hex() if len(raw) == nbytes else v.lower()


def _json_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    if "stringValue" in v or "string_value" in v:
        return _get(v, "stringValue", "string_value")
    if "intValue" in v or "int_value" in v:
        return _int(_get(v, "intValue", "int_value"), "intValue")
    if "doubleValue" in v or "double_value" in v:
        d = _get(v, "doubleValue", "double_value")
        return float(d) if d is not None else None
    if "boolValue" in v or "bool_value" in v:
        return bool(_get(v, "boolValue", "bool_value"))
    if "arrayValue" in v or "array_value" in v:
        arr = _get(v, "arrayValue", "array_value") or {}
        return [_json_value(x) for x in arr.get("values", [])]
    if "kvlistValue" in v or "kvlist_value" in v:
        kv = _get(v, "kvlistValue", "kvlist_value") or {}
        return _json_attrs(kv.get("values", []))
    if "bytesValue" in v or "bytes_value" in v:
        return _get(v, "bytesValue", "bytes_value")
    return None


def _json_attrs(kvs: Any) -> dict[str, Any]:
    if not kvs:
        return {}
    if not isinstance(kvs, list):
        raise OTLPDecodeError("attributes must be a list of {key, value}")
    out: dict[str, Any] = {}
    for kv in kvs:
        if not isinstance(kv, dict) or "key" not in kv:
            raise OTLPDecodeError("an attribute has no key")
        out[str(kv["key"])] = _json_value(kv.get("value"))
    return out


def _enum(value: Any, names: dict[str, int], what: str) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return _int(value, what)


def _spans_from_json(doc: Any) -> Iterator[RawSpan]:
    if not isinstance(doc, dict):
        raise OTLPDecodeError("OTLP JSON must be an object with resourceSpans")
    resource_spans = _get(doc, "resourceSpans", "resource_spans")
    if resource_spans is None:
        if doc:
            raise OTLPDecodeError("OTLP JSON object has no resourceSpans")
        return
    if not isinstance(resource_spans, list):
        raise OTLPDecodeError("resourceSpans must be a list")
    for rs in resource_spans:
        resource = _json_attrs((rs.get("resource") or {}).get("attributes"))
        for ss in _get(rs, "scopeSpans", "scope_spans") or []:
            scope = ((ss.get("scope") or {}).get("name")) or ""
            for s in ss.get("spans") or []:
                if not isinstance(s, dict):
                    raise OTLPDecodeError("a span must be an object")
                status = s.get("status") or {}
                yield RawSpan(
                    trace_id=_json_id(_get(s, "traceId", "trace_id"), 16, "traceId"),
                    span_id=_json_id(_get(s, "spanId", "span_id"), 8, "spanId"),
                    parent_span_id=_json_id(
                        _get(s, "parentSpanId", "parent_span_id"), 8, "parentSpanId"
                    ) or None,
                    name=str(s.get("name") or ""),
                    kind=_enum(s.get("kind"), _SPAN_KINDS, "kind"),
                    start_time_unix_nano=_int(
                        _get(s, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"
                    ),
                    end_time_unix_nano=_int(
                        _get(s, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"
                    ),
                    status_code=_enum(status.get("code"), _STATUS_CODES, "status.code"),
                    status_message=str(status.get("message") or ""),
                    attributes=_json_attrs(s.get("attributes")),
                    resource=resource,
                    scope_name=str(scope),
                    events=[
                        RawEvent(
                            str(e.get("name") or ""),
                            _int(_get(e, "timeUnixNano", "time_unix_nano"), "timeUnixNano"),
                            _json_attrs(e.get("attributes")),
                        )
                        for e in s.get("events") or []
                    ],
                )


def decode_json(body: bytes | str) -> list[RawSpan]:
    """Spans of one OTLP JSON ``ExportTraceServiceRequest``."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OTLPDecodeError(f"body is not valid JSON: {exc}") from None
    try:
        return list(_spans_from_json(doc))
    except (AttributeError, TypeError) as exc:
        raise OTLPDecodeError(f"malformed OTLP JSON: {exc}") from None


def decode_json_lines(data: bytes) -> list[RawSpan]:
    """Spans of a file of OTLP JSON requests, one per line (the collector file exporter)."""
    spans: list[RawSpan] = []
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            spans.extend(decode_json(line))
        except OTLPDecodeError as exc:
            raise OTLPDecodeError(f"line {lineno}: {exc}") from None
    return spans


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def decode_request(body: bytes, content_type: str | None,
                   content_encoding: str | None = None) -> list[RawSpan]:
    """Spans of an OTLP/HTTP request body, by its Content-Type and Content-Encoding."""
    data = decompress(body, content_encoding)
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in ("application/x-protobuf", "application/protobuf"):
        return decode_protobuf(data)
    if ctype == "application/json":
        return decode_json(data)
    raise OTLPDecodeError(
        f"unsupported Content-Type {content_type!r}: use application/x-protobuf or "
        "application/json"
    )


def decode_file_bytes(data: bytes) -> list[RawSpan]:
    """Spans of a file: OTLP JSON lines, one protobuf request, or length-prefixed requests
    (gzip-compressed or not)."""
    data = decompress(data)
    if data.lstrip()[:1] in (b"{", b"["):
        if data.lstrip()[:1] == b"[":
            raise OTLPDecodeError("expected OTLP JSON objects, one per line, not a JSON array")
        return decode_json_lines(data)
    framed = _framed_messages(data)
    if framed is not None:
        try:
            return [s for msg in framed for s in decode_protobuf(msg)]
        except OTLPDecodeError:
            pass
    return decode_protobuf(data)
