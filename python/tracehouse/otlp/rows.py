"""Contract rows that arrive as JSON or as a producer's Parquet: typed, redacted, contract-only.

Feedback and annotations (``POST /v1/feedback``, ``POST /v1/annotations``) and a producer's own
Parquet files (``tracehouse ingest parquet``) already speak the contract; what they may still
carry in clear is checked here before :func:`tracehouse.lake.write_batch` sees them, because
the quarantine keeps a rejected row's every column as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tracehouse.contract import DATASETS
from tracehouse.contract.schemas import SPAN_ID_PATTERN, TRACE_ID_PATTERN
from tracehouse.errors import TracehouseError
from tracehouse.redaction import Redactor

# Raw fields that producers may send instead of the contract's redacted column.
RAW_ALIASES: dict[str, dict[str, str]] = {
    "feedback": {"user_id": "user_id_hash", "comment": "comment_redacted"},
    "annotations": {"annotator_id": "annotator_id_hash"},
    "spans": {"user_id": "user_id_hash", "error_message": "error_message_redacted"},
}
FREE_TEXT_LIMIT = 2000  # longest comment / error message that lands, masked
# Ids with a format: a value that breaks it is quarantined, so it is hashed before, never kept.
ID_PATTERNS: dict[str, re.Pattern[str]] = {
    "trace_id": re.compile(TRACE_ID_PATTERN),
    "span_id": re.compile(SPAN_ID_PATTERN),
    "parent_span_id": re.compile(SPAN_ID_PATTERN),
}


class RowsError(TracehouseError, ValueError):
    """A body that is not contract rows (sent back with a 400)."""


@dataclass
class PreparedRows:
    """A contract-only, redacted table and the incoming fields that were left out."""

    table: pa.Table
    dropped_fields: list[str] = field(default_factory=list)


def parse_rows(body: bytes) -> list[dict[str, Any]]:
    """Rows of a JSON body: an array of objects, ``{"rows": [...]}``, an object, JSON lines."""
    text = body.decode("utf-8", errors="strict").strip() if body else ""
    if not text:
        raise RowsError("empty body: send a JSON array of rows")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        try:
            doc = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise RowsError(f"body is not JSON or JSON lines: {exc}") from None
    if isinstance(doc, dict):
        doc = doc["rows"] if isinstance(doc.get("rows"), list) else [doc]
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise RowsError("expected a JSON array of row objects")
    return doc


def _column(values: list[Any], type_: pa.DataType) -> pa.Array:
    """Values in the contract type when they fit; else as text for the validator to judge."""
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    rendered = [
        None if v is None else v if isinstance(v, str) else json.dumps(v, default=str)
        for v in values
    ]
    return pa.array(rendered, type=pa.string())


def rows_to_table(dataset: str, rows: Sequence[dict[str, Any]], redactor: Redactor) -> PreparedRows:
    """JSON rows to a redacted table of the dataset's contract columns (uncastable values are
    kept as text, so the lake quarantines them with a reason)."""
    spec = DATASETS[dataset]
    aliases = RAW_ALIASES.get(dataset, {})
    names = set(spec.schema.names)
    dropped: set[str] = set()
    normalized: list[dict[str, Any]] = []
    for r in rows:
        out: dict[str, Any] = {}
        for k, v in r.items():
            if k in names:
                out[k] = v
            elif k in aliases:
                target = aliases[k]
                if out.get(target) is None and v is not None:
                    out[target] = redactor.hash_id(str(v)) if target.endswith("_hash") else v
            else:
                dropped.add(str(k))
        normalized.append(out)
    present = [f for f in spec.schema if any(f.name in r for r in normalized)]
    arrays = {f.name: _column([r.get(f.name) for r in normalized], f.type) for f in present}
    if not arrays:  # no contract field at all: every row is quarantined with its reasons
        arrays = {"schema_version": pa.nulls(len(normalized), pa.string())}
    table = pa.table(arrays)
    return PreparedRows(redact_table(table, redactor), sorted(dropped))


def _mask_json_text(text: str, redactor: Redactor) -> str:
    """Mask every string and every object key inside a JSON document; mask the raw text if it
    does not parse."""
    tags: set[str] = set()
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return redactor.metadata(text, tags) or ""
    return json.dumps(redactor.json_value(doc, tags), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def redact_table(table: pa.Table, redactor: Redactor) -> pa.Table:
    """Every text value of a contract table checked before it lands.

    ``*_hash`` columns: kept if already a digest, else hashed. ``*_redacted`` columns: masked
    and cut to :data:`FREE_TEXT_LIMIT`. ``attributes``: every string and key inside masked.
    ``trace_id``, ``span_id``, ``parent_span_id``: hashed unless well-formed. Other id columns
    (``*_id``): hashed if a detector fires. Any other text: masked. Lists of text: masked.
    """
    tags: set[str] = set()
    columns = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        type_ = col.type
        if pa.types.is_string(type_) or pa.types.is_large_string(type_):
            values = col.to_pylist()
            if name in ID_PATTERNS:
                new = [redactor.checked_id(v, ID_PATTERNS[name], tags) for v in values]
            elif name.endswith("_hash"):
                new = [redactor.id_hash_column(v) for v in values]
            elif name.endswith("_redacted"):
                new = [redactor.free_text(v, tags, limit=FREE_TEXT_LIMIT) for v in values]
            elif name == "attributes":
                new = [None if v is None else _mask_json_text(v, redactor) for v in values]
            elif name.endswith("_id"):
                new = [redactor.safe_identifier(v, tags) for v in values]
            else:
                new = [redactor.metadata(v, tags) for v in values]
            columns.append(pa.array(new, type=pa.string()))
        elif pa.types.is_list(type_) and pa.types.is_string(type_.value_type):
            values = col.to_pylist()
            new_lists = [
                None if v is None else [redactor.metadata(x, tags) for x in v] for v in values
            ]
            columns.append(pa.array(new_lists, type=type_))
        elif pa.types.is_nested(type_) and name != "artifact_refs":
            # any other nested value (a struct, a map): rendered as masked JSON text
            values = col.to_pylist()
            new = [None if v is None else _mask_json_text(json.dumps(v, default=str), redactor)
                   for v in values]
            columns.append(pa.array(new, type=pa.string()))
        else:
            columns.append(col)
    return pa.table(columns, names=table.column_names)


def prepare_table(dataset: str, table: pa.Table, redactor: Redactor) -> PreparedRows:
    """A producer's table reduced to the contract's columns and redacted."""
    names = DATASETS[dataset].schema.names
    keep = [n for n in table.column_names if n in names]
    dropped = [n for n in table.column_names if n not in names]
    return PreparedRows(redact_table(table.select(keep), redactor), dropped)
