"""OTLP trace payloads (protobuf, OTLP JSON, gzip) to flat span records.

One :class:`RawSpan` per span: ids as lowercase hex, times as unix nanoseconds, kind and status
as integers, resource and span attributes as plain Python dicts (arrays as lists, kvlists as
dicts), exception events kept. Nothing is redacted here; :mod:`tracehouse.otlp.mapping` does
that before anything is written or buffered.

Limits (:class:`DecodeLimits`) are applied here, the same for protobuf and JSON, so that no
later step sees an unbounded string: span and event names and string attribute values longer
than the cap are cut (the span is marked ``truncated`` and lands with the ``truncated`` privacy
tag), attributes with over-long keys are dropped. Input that is not valid OTLP (a number out of
its protobuf type's range, ``doubleValue: "abc"``, a lone UTF-16 surrogate, nesting deeper than
the cap) raises :class:`OTLPDecodeError` with the reason: a 400, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tracehouse.errors import TracehouseError

MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# A JSON string escape of a UTF-16 surrogate: only then can a lone surrogate be in the result.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@dataclass(frozen=True)
class DecodeLimits:
    """Size caps applied while decoding (characters, not bytes)."""

    max_name_chars: int = 1_024  # span and event names: longer ones are cut
    max_key_chars: int = 256  # attribute keys: longer ones are dropped with their value
    max_value_chars: int = 65_536  # each string attribute value: longer ones are cut
    max_depth: int = 32  # nesting of array / kvlist attribute values: deeper is a 400


DEFAULT_LIMITS = DecodeLimits()

_SPAN_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class OTLPDecodeError(TracehouseError, ValueError):
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
    truncated: bool = False  # a name or attribute was cut (or dropped) by DecodeLimits


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------


def decompress(body: bytes, content_encoding: str | None = None,
               *, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Inflate a gzip or deflate body once; bounded by ``limit`` (of inflated bytes).

    ``content_encoding`` None (files) sniffs the gzip magic bytes; ``""`` / ``identity`` means
    not compressed (HTTP without the header). Exactly one layer is inflated: a gzip inside the
    gzip stays compressed (and then fails to decode as OTLP). Output never grows past
    ``limit + 1`` bytes, whatever the ratio: :class:`PayloadTooLargeError` above ``limit``.
    Concatenated gzip members are read in turn (the cap counts them all); a truncated stream or
    trailing bytes are a decode error.
    """
    enc = (content_encoding or "").strip().lower()
    if enc in ("", "identity") and not (content_encoding is None and body[:2] == b"\x1f\x8b"):
        return body  # (the wire size is the caller's limit)
    if enc in ("", "gzip", "x-gzip"):
        wbits, name = 16 + zlib.MAX_WBITS, "gzip"
    elif enc == "deflate":
        wbits, name = zlib.MAX_WBITS, "deflate"
    else:
        raise OTLPDecodeError(f"unsupported Content-Encoding {content_encoding!r}")
    out = bytearray()
    data = body
    while True:
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise OTLPDecodeError(f"body is not valid {name} data: {exc}") from None
        if len(out) > limit:
            raise PayloadTooLargeError(f"decompressed body exceeds {limit} bytes")
        if not d.eof:
            raise OTLPDecodeError(f"{name} body is truncated")
        data = d.unused_data
        if not data.strip(b"\x00"):
            return bytes(out)
        if name != "gzip" or data[:2] != b"\x1f\x8b":
            raise OTLPDecodeError(f"{len(data)} bytes of trailing data after the {name} stream")


# --------------------------------------------------------------------------------------------
# Protobuf
# --------------------------------------------------------------------------------------------


class _Limiter:
    """Applies :class:`DecodeLimits` to names and attributes; remembers whether it cut."""

    def __init__(self, limits: DecodeLimits) -> None:
        self.limits = limits
        self.cut = False

    def name(self, value: str) -> str:
        if len(value) > self.limits.max_name_chars:
            self.cut = True
            return value[: self.limits.max_name_chars]
        return value

    def text(self, value: str) -> str:
        if len(value) > self.limits.max_value_chars:
            self.cut = True
            return value[: self.limits.max_value_chars]
        return value

    def key_ok(self, key: str) -> bool:
        if len(key) > self.limits.max_key_chars:
            self.cut = True
            return False
        return True

    def depth(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise OTLPDecodeError(
                f"attribute value nested deeper than {self.limits.max_depth} levels"
            )


def _pb_value(v: AnyValue, lim: _Limiter, depth: int = 1) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return lim.text(v.string_value)
    if which == "array_value":
        lim.depth(depth)
        return [_pb_value(x, lim, depth + 1) for x in v.array_value.values]
    if which == "kvlist_value":
        lim.depth(depth)
        return _pb_attrs(v.kvlist_value.values, lim, depth + 1)
    if which == "bytes_value":
        return lim.text(base64.b64encode(v.bytes_value).decode("ascii"))
    return getattr(v, which)


def _pb_attrs(kvs: Any, lim: _Limiter, depth: int = 1) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value, lim, depth) for kv in kvs if lim.key_ok(kv.key)}


def _spans_from_pb(req: ExportTraceServiceRequest, limits: DecodeLimits) -> Iterator[RawSpan]:
    for rs in req.resource_spans:
        res_lim = _Limiter(limits)
        resource = _pb_attrs(rs.resource.attributes, res_lim)
        for ss in rs.scope_spans:
            scope = ss.scope.name[: limits.max_name_chars]
            for s in ss.spans:
                lim = _Limiter(limits)
                yield RawSpan(
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex() or None,
                    name=lim.name(s.name),
                    kind=int(s.kind),
                    start_time_unix_nano=int(s.start_time_unix_nano),
                    end_time_unix_nano=int(s.end_time_unix_nano),
                    status_code=int(s.status.code),
                    status_message=lim.text(s.status.message),
                    attributes=_pb_attrs(s.attributes, lim),
                    resource=resource,
                    scope_name=scope,
                    events=[
                        RawEvent(lim.name(e.name), int(e.time_unix_nano),
                                 _pb_attrs(e.attributes, lim))
                        for e in s.events
                    ],
                    truncated=lim.cut or res_lim.cut,
                )


def decode_protobuf(body: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> list[RawSpan]:
    """Spans of one serialized ``ExportTraceServiceRequest``."""
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except (DecodeError, RuntimeWarning, ValueError, RecursionError) as exc:
        raise OTLPDecodeError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    return list(_spans_from_pb(req, limits))


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


def _int(value: Any, what: str, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    """An integer as OTLP JSON writes it (a number, or a decimal string for 64-bit fields),
    within [lo, hi] (the protobuf field's type)."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise OTLPDecodeError(f"{what} is not an integer: {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise OTLPDecodeError(f"{what} is not an integer: {value!r}")
        n = int(value)
    elif isinstance(value, str) and len(value) <= 64:
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise OTLPDecodeError(f"{what} is not an integer: {value!r}") from None
        if not d.is_finite() or d != d.to_integral_value():
            raise OTLPDecodeError(f"{what} is not an integer: {value!r}")
        if abs(d.adjusted()) > 40:
            raise OTLPDecodeError(f"{what} {value} is out of range [{lo}, {hi}]")
        n = int(d)
    else:
        raise OTLPDecodeError(f"{what} is not an integer: {str(value)[:40]!r}")
    if not lo <= n <= hi:
        raise OTLPDecodeError(f"{what} {str(value)[:40]} is out of range [{lo}, {hi}]")
    return n


def _time(value: Any, what: str) -> int:
    return _int(value, what, 0, UINT64_MAX)  # fixed64


_FLOAT_WORDS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _double(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        if value in _FLOAT_WORDS:
            return _FLOAT_WORDS[value]
        try:
            return float(value) if len(value) <= 40 else float("x")
        except ValueError:
            pass
    raise OTLPDecodeError(f"doubleValue is not a number: {str(value)[:40]!r}")


def _str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OTLPDecodeError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _json_id(value: Any, nbytes: int, what: str) -> str:
    """A hex id from OTLP JSON (hex), tolerating base64 as protobuf's generic JSON writes it."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise OTLPDecodeError(f"{what} must be a hex string")
    v = value.strip()[:256]
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


def _json_value(v: Any, lim: _Limiter, depth: int = 1) -> Any:
    if not isinstance(v, dict):
        if isinstance(v, str):
            return lim.text(v)
        if isinstance(v, list):
            raise OTLPDecodeError("an attribute value must be an AnyValue object")
        return v
    if "stringValue" in v or "string_value" in v:
        return lim.text(_str(_get(v, "stringValue", "string_value"), "stringValue"))
    if "intValue" in v or "int_value" in v:
        return _int(_get(v, "intValue", "int_value"), "intValue")
    if "doubleValue" in v or "double_value" in v:
        return _double(_get(v, "doubleValue", "double_value"))
    if "boolValue" in v or "bool_value" in v:
        b = _get(v, "boolValue", "bool_value")
        if isinstance(b, bool) or b is None:
            return bool(b)
        if b in ("true", "false"):
            return b == "true"
        raise OTLPDecodeError(f"boolValue is not a boolean: {str(b)[:40]!r}")
    if "arrayValue" in v or "array_value" in v:
        lim.depth(depth)
        arr = _get(v, "arrayValue", "array_value") or {}
        values = arr.get("values") or []
        if not isinstance(values, list):
            raise OTLPDecodeError("arrayValue.values must be a list")
        return [_json_value(x, lim, depth + 1) for x in values]
    if "kvlistValue" in v or "kvlist_value" in v:
        lim.depth(depth)
        kv = _get(v, "kvlistValue", "kvlist_value") or {}
        return _json_attrs(kv.get("values", []), lim, depth + 1)
    if "bytesValue" in v or "bytes_value" in v:
        return lim.text(_str(_get(v, "bytesValue", "bytes_value"), "bytesValue"))
    return None


def _json_attrs(kvs: Any, lim: _Limiter, depth: int = 1) -> dict[str, Any]:
    if not kvs:
        return {}
    if not isinstance(kvs, list):
        raise OTLPDecodeError("attributes must be a list of {key, value}")
    out: dict[str, Any] = {}
    for kv in kvs:
        if not isinstance(kv, dict) or "key" not in kv:
            raise OTLPDecodeError("an attribute has no key")
        key = str(kv["key"])
        if lim.key_ok(key):
            out[key] = _json_value(kv.get("value"), lim, depth)
    return out


def _enum(value: Any, names: dict[str, int], what: str) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return _int(value, what, INT32_MIN, INT32_MAX)


def _spans_from_json(doc: Any, limits: DecodeLimits) -> Iterator[RawSpan]:
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
        res_lim = _Limiter(limits)
        resource = _json_attrs((rs.get("resource") or {}).get("attributes"), res_lim)
        for ss in _get(rs, "scopeSpans", "scope_spans") or []:
            scope = _str((ss.get("scope") or {}).get("name"), "scope.name")
            for s in ss.get("spans") or []:
                if not isinstance(s, dict):
                    raise OTLPDecodeError("a span must be an object")
                lim = _Limiter(limits)
                status = s.get("status") or {}
                yield RawSpan(
                    trace_id=_json_id(_get(s, "traceId", "trace_id"), 16, "traceId"),
                    span_id=_json_id(_get(s, "spanId", "span_id"), 8, "spanId"),
                    parent_span_id=_json_id(
                        _get(s, "parentSpanId", "parent_span_id"), 8, "parentSpanId"
                    ) or None,
                    name=lim.name(_str(s.get("name"), "name")),
                    kind=_enum(s.get("kind"), _SPAN_KINDS, "kind"),
                    start_time_unix_nano=_time(
                        _get(s, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"
                    ),
                    end_time_unix_nano=_time(
                        _get(s, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"
                    ),
                    status_code=_enum(status.get("code"), _STATUS_CODES, "status.code"),
                    status_message=lim.text(_str(status.get("message"), "status.message")),
                    attributes=_json_attrs(s.get("attributes"), lim),
                    resource=resource,
                    scope_name=scope[: limits.max_name_chars],
                    events=[
                        RawEvent(
                            lim.name(_str(e.get("name"), "event name")),
                            _time(_get(e, "timeUnixNano", "time_unix_nano"), "timeUnixNano"),
                            _json_attrs(e.get("attributes"), lim),
                        )
                        for e in s.get("events") or []
                    ],
                    truncated=lim.cut or res_lim.cut,
                )


def load_json(body: bytes | str) -> Any:
    """``json.loads`` for untrusted bodies: every failure an :class:`OTLPDecodeError` with the
    reason (bad JSON, invalid UTF-8, nesting beyond the parser's depth, lone surrogates)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OTLPDecodeError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise OTLPDecodeError("body is not valid JSON: nested too deeply") from None
    check_unicode(body, doc)
    return doc


def check_unicode(body: bytes | str, doc: Any) -> None:
    """Raise :class:`OTLPDecodeError` when ``doc`` (parsed from ``body``) holds a lone UTF-16
    surrogate, which no UTF-8 file can store. Costs nothing unless ``body`` has a surrogate
    escape at all."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if not _SURROGATE_ESCAPE.search(raw):
        return
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise OTLPDecodeError(
            f"body holds a lone UTF-16 surrogate (\\u{ord(exc.object[exc.start]):04x}): "
            "strings must be valid Unicode"
        ) from None
    except RecursionError:
        raise OTLPDecodeError("body is not valid JSON: nested too deeply") from None


def decode_json(body: bytes | str, limits: DecodeLimits = DEFAULT_LIMITS) -> list[RawSpan]:
    """Spans of one OTLP JSON ``ExportTraceServiceRequest``."""
    doc = load_json(body)
    try:
        return list(_spans_from_json(doc, limits))
    except (AttributeError, TypeError) as exc:
        raise OTLPDecodeError(f"malformed OTLP JSON: {exc}") from None


def decode_json_lines(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> list[RawSpan]:
    """Spans of a file of OTLP JSON requests, one per line (the collector file exporter)."""
    spans: list[RawSpan] = []
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            spans.extend(decode_json(line, limits))
        except OTLPDecodeError as exc:
            raise OTLPDecodeError(f"line {lineno}: {exc}") from None
    return spans


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def decode_request(body: bytes, content_type: str | None,
                   content_encoding: str | None = None, *,
                   limit: int = MAX_DECOMPRESSED_BYTES,
                   limits: DecodeLimits = DEFAULT_LIMITS) -> list[RawSpan]:
    """Spans of an OTLP/HTTP request body, by its Content-Type and Content-Encoding (inflated
    once, at most ``limit`` bytes)."""
    data = decompress(body, content_encoding, limit=limit)
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in ("application/x-protobuf", "application/protobuf"):
        return decode_protobuf(data, limits)
    if ctype == "application/json":
        return decode_json(data, limits)
    raise OTLPDecodeError(
        f"unsupported Content-Type {content_type!r}: use application/x-protobuf or "
        "application/json"
    )


def decode_file_bytes(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> list[RawSpan]:
    """Spans of a file: OTLP JSON lines, one protobuf request, or length-prefixed requests
    (gzip-compressed or not)."""
    data = decompress(data)
    if data.lstrip()[:1] in (b"{", b"["):
        if data.lstrip()[:1] == b"[":
            raise OTLPDecodeError("expected OTLP JSON objects, one per line, not a JSON array")
        return decode_json_lines(data, limits)
    framed = _framed_messages(data)
    if framed is not None:
        try:
            return [s for msg in framed for s in decode_protobuf(msg, limits)]
        except OTLPDecodeError:
            pass
    return decode_protobuf(data, limits)
