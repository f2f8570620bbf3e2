"""Malformed rows: every kind of defect the contract validator knows, for the quarantine.

Bad rows are corrupted copies of good rows (with fresh ids), written in their own small batches
per dataset and ingest day: one batch with a string-typed numeric column (so that an uncastable
value can exist) holding one defect per row, and one batch that lacks a required column.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracehouse.generator.ids import hex_ids, mix64

Fix = Callable[[pa.Table, np.ndarray], pa.Table]


def _set(table: pa.Table, column: str, mask: np.ndarray, value: object) -> pa.Table:
    i = table.schema.get_field_index(column)
    col = table.column(i)
    scalar = pa.scalar(value, col.type)
    return table.set_column(i, column, pc.if_else(pa.array(mask), scalar, col))


def _shift_end(table: pa.Table, mask: np.ndarray) -> pa.Table:
    i = table.schema.get_field_index("end_time")
    start = table.column("event_time")
    earlier = pc.subtract(start, pa.scalar(5_000_000, pa.duration("us")))
    return table.set_column(i, "end_time", pc.if_else(pa.array(mask), earlier,
                                                      table.column(i)))


# dataset -> (string-typed column for the uncastable defect, its bad text, defects, column
# dropped in the missing-column batch)
DEFECTS: Final[dict[str, tuple[str, str, list[Fix], str]]] = {
    "spans": ("duration_ms", "fast", [
        lambda t, m: _set(t, "tenant_id", m, None),
        lambda t, m: _set(t, "duration_ms", m, "fast"),
        lambda t, m: _set(t, "span_type", m, "llm_call"),
        lambda t, m: _set(t, "status", m, "success"),
        lambda t, m: _set(t, "trace_id", m, "ABC123-not-a-trace"),
        lambda t, m: _set(t, "span_id", m, "0000000000000000"),
        lambda t, m: _set(t, "parent_span_id", m, "parent"),
        _shift_end,
        lambda t, m: _set(t, "duration_ms", m, "-12.5"),
        lambda t, m: _set(t, "attributes", m, '["not", "an", "object"]'),
        lambda t, m: _set(t, "attributes", m, "{truncated json"),
        lambda t, m: _set(t, "schema_version", m, "2"),
        lambda t, m: _set(t, "cache_status", m, "warm"),
    ], "service_name"),
    "feedback": ("value", "five", [
        lambda t, m: _set(t, "tenant_id", m, None),
        lambda t, m: _set(t, "value", m, "five"),
        lambda t, m: _set(t, "feedback_type", m, "like"),
        lambda t, m: _set(t, "trace_id", m, "not-a-trace"),
        lambda t, m: _set(t, "schema_version", m, "0"),
        lambda t, m: _set(t, "source", m, "email"),
    ], "feedback_type"),
    "annotations": ("correctness", "high", [
        lambda t, m: _set(t, "trace_id", m, None),
        lambda t, m: _set(t, "correctness", m, "high"),
        lambda t, m: _set(t, "failure_category", m, "vibes"),
        lambda t, m: _set(t, "groundedness", m, 1.7),
        lambda t, m: _set(t, "trace_id", m, "F" * 32),
        lambda t, m: _set(t, "schema_version", m, "2"),
    ], "label_time"),
}
ID_COLUMN: Final = {"spans": "span_id", "feedback": "feedback_id", "annotations": "annotation_id"}


def bad_batches(dataset: str, good: pa.Table, fraction: float, seed: int,
                dayk: int) -> list[tuple[str, pa.Table]]:
    """(batch suffix, table) pairs of malformed rows: ``fraction`` x ``len(good)`` (rounded up)
    with one defect each, plus a small batch without a required column."""
    if fraction <= 0 or good.num_rows == 0:
        return []
    rng = np.random.default_rng([seed, dayk, 71, len(dataset)])
    text_col, _, defects, dropped = DEFECTS[dataset]
    n_typed = math.ceil(fraction * good.num_rows)  # one defect each, kinds rotating by day
    n_col = math.ceil(n_typed / len(defects))  # plus a few rows lacking a required column
    n_bad = n_typed + n_col
    out: list[tuple[str, pa.Table]] = []
    rows = good.take(pa.array(rng.integers(0, good.num_rows, n_bad)))
    id_col = ID_COLUMN[dataset]
    fresh = hex_ids(mix64(seed, 70, dayk, np.arange(n_bad)))
    rows = rows.set_column(rows.schema.get_field_index(id_col), id_col, fresh)
    if n_typed:
        typed = rows.slice(0, n_typed)
        i = typed.schema.get_field_index(text_col)
        typed = typed.set_column(i, pa.field(text_col, pa.string()),
                                 pc.cast(typed.column(i), pa.string()))
        kind = (np.arange(n_typed) + dayk * n_typed) % len(defects)
        for k, fix in enumerate(defects):
            mask = kind == k
            if mask.any():
                typed = fix(typed, mask)
        out.append(("bad", typed))
    col_batch = rows.slice(n_typed).drop_columns([dropped])
    out.append(("badcol", col_batch))
    return out
