"""OpenTelemetry in: OTLP trace payloads decoded, mapped to the contract, redacted, landed.

- :mod:`tracehouse.otlp.decode`: protobuf / OTLP JSON / gzip to :class:`RawSpan` records.
- :mod:`tracehouse.otlp.mapping`: GenAI and OpenInference conventions to contract rows.
- :mod:`tracehouse.otlp.rows`: feedback / annotation rows and producers' Parquet, redacted.
- :mod:`tracehouse.otlp.ingest`: files to the lake through :func:`tracehouse.lake.write_batch`.
"""

from tracehouse.otlp.decode import (
    DecodeLimits,
    OTLPDecodeError,
    RawSpan,
    decode_file_bytes,
    decode_json,
    decode_protobuf,
    decode_request,
)
from tracehouse.otlp.mapping import MappingDefaults, SpanMapper, spans_to_table

__all__ = [
    "DecodeLimits",
    "MappingDefaults",
    "OTLPDecodeError",
    "RawSpan",
    "SpanMapper",
    "decode_file_bytes",
    "decode_json",
    "decode_protobuf",
    "decode_request",
    "spans_to_table",
]
