"""The contract as code: every bad-input class of the validator, and exact schemas on accept."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from tracehouse.contract import REJECT_REASON, validate_table
from tracehouse.contract.dbt_export import GENERATED
from tracehouse.contract.schemas import (
    ANNOTATIONS,
    ATTRIBUTE_KEYS,
    FEEDBACK,
    SPAN_TYPES,
    SPANS,
    segment_key,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def good_span(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "schema_version": "1",
        "event_time": T0,
        "end_time": datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC),
        "duration_ms": 1000.0,
        "trace_id": "ab" * 16,
        "span_id": "cd" * 8,
        "parent_span_id": None,
        "request_id": "req-1",
        "tenant_id": "t-1",
        "environment": "prod",
        "service_name": "copilot",
        "app_version": "1.0.0",
        "release_sha": "abc123",
        "span_type": "request",
        "operation_name": "handle_request",
        "status": "ok",
        "attributes": "{}",
    }
    row.update(overrides)
    return row


def spans_table(rows: list[dict[str, object]]) -> pa.Table:
    fields = [SPANS.schema.field(name) for name in rows[0]]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def only_reason(rows: list[dict[str, object]]) -> str:
    result = validate_table(spans_table(rows), SPANS)
    assert result.accepted.num_rows == 0
    assert result.rejected.num_rows == 1
    return str(result.rejected.column(REJECT_REASON)[0])


def test_good_row_is_accepted_cast_to_the_exact_contract_schema() -> None:
    result = validate_table(spans_table([good_span()]), SPANS)
    assert result.rejected.num_rows == 0
    assert result.accepted.schema.equals(SPANS.schema, check_metadata=False)
    assert result.accepted.column("ingest_time")[0].as_py() is not None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"request_id": None}, "missing required value: request_id"),
        ({"span_type": "bogus"}, "span_type not in enum"),
        ({"status": "fine"}, "status not in enum"),
        ({"environment": "qa"}, "environment not in enum"),
        ({"cache_status": "warm"}, "cache_status not in enum"),
        ({"trace_id": "AB" * 16}, "malformed trace_id"),
        ({"trace_id": "ab" * 15}, "malformed trace_id"),
        ({"trace_id": "0" * 32}, "malformed trace_id"),
        ({"span_id": "xyz"}, "malformed span_id"),
        ({"parent_span_id": "12345"}, "malformed parent_span_id"),
        ({"end_time": datetime(2026, 1, 1, 11, 0, tzinfo=UTC)}, "end before start"),
        ({"duration_ms": -1.0}, "negative duration"),
        ({"attributes": "[1, 2]"}, "attributes not a JSON object"),
        ({"attributes": "{not json"}, "attributes not a JSON object"),
        ({"schema_version": "2"}, "unknown schema_version"),
    ],
)
def test_each_bad_value_is_rejected_with_its_reason(
    overrides: dict[str, object], reason: str
) -> None:
    assert only_reason([good_span(**overrides)]) == reason


def test_missing_required_column_rejects_every_row() -> None:
    rows = [good_span(), good_span(span_id="ef" * 8)]
    table = spans_table(rows).drop_columns(["tenant_id"])
    result = validate_table(table, SPANS)
    assert result.accepted.num_rows == 0
    assert set(result.rejected.column(REJECT_REASON).to_pylist()) == {
        "missing required column: tenant_id"
    }


def test_uncastable_values_are_rejected_and_castable_strings_accepted() -> None:
    table = pa.table(
        {
            **{k: [v, v] for k, v in good_span().items() if k not in ("event_time", "end_time",
                                                                    "duration_ms")},
            "event_time": ["2026-01-01T12:00:00Z", "yesterday"],
            "end_time": ["2026-01-01T12:00:01Z", "2026-01-01T12:00:01Z"],
            "duration_ms": ["1000", "1000"],
            "span_id": ["cd" * 8, "ce" * 8],
        }
    )
    result = validate_table(table, SPANS)
    assert result.accepted.num_rows == 1
    assert result.accepted.column("event_time").type == pa.timestamp("us", tz="UTC")
    assert result.accepted.column("duration_ms").to_pylist() == [1000.0]
    assert result.rejected.column(REJECT_REASON).to_pylist() == [
        "uncastable event_time: not timestamp[us, tz=UTC]"
    ]
    # The rejected row keeps what was sent, as text, so nothing is lost.
    assert result.rejected.column("event_time").to_pylist() == ["yesterday"]


def test_several_broken_rules_are_all_named() -> None:
    reason = only_reason([good_span(duration_ms=-5.0, status="nope", attributes="[]")])
    assert reason.split("; ") == [
        "status not in enum",
        "negative duration",
        "attributes not a JSON object",
    ]


def test_unknown_columns_are_dropped_and_counted_not_fatal() -> None:
    table = spans_table([good_span()]).append_column("my_extra", pa.array([7]))
    result = validate_table(table, SPANS)
    assert result.accepted.num_rows == 1
    assert result.dropped_columns == ["my_extra"]
    assert "my_extra" not in result.accepted.column_names
    bad = validate_table(table.set_column(0, "schema_version", pa.array(["9"])), SPANS)
    assert "my_extra" not in bad.rejected.column_names


def test_counts_reconcile_on_a_mixed_batch() -> None:
    rows = [good_span(span_id=f"{i:016x}", duration_ms=float(i % 3 - 1)) for i in range(1, 301)]
    result = validate_table(spans_table(rows), SPANS)
    assert result.received_rows == 300
    assert result.rejected.num_rows == 100  # every third row has duration -1
    assert result.accepted.num_rows == 200


def test_feedback_and_annotation_rules() -> None:
    fb = pa.table(
        {
            "schema_version": ["1", "1"],
            "feedback_id": ["f1", "f2"],
            "event_time": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
            "trace_id": ["ab" * 16, "ab" * 16],
            "tenant_id": ["t", "t"],
            "feedback_type": ["thumbs_down", "meh"],
        }
    )
    result = validate_table(fb, FEEDBACK)
    assert result.accepted.num_rows == 1
    assert result.rejected.column(REJECT_REASON).to_pylist() == ["feedback_type not in enum"]

    ann = pa.table(
        {
            "schema_version": ["1", "1", "1"],
            "annotation_id": ["a1", "a2", "a3"],
            "label_time": pa.array([T0] * 3, pa.timestamp("us", tz="UTC")),
            "trace_id": ["ab" * 16] * 3,
            "correctness": [0.5, 1.5, None],
            "failure_category": [None, None, "vibes"],
            "relevant_chunk_ids": [["c1"], [], None],
        }
    )
    result = validate_table(ann, ANNOTATIONS)
    assert result.accepted.num_rows == 1
    assert result.rejected.column(REJECT_REASON).to_pylist() == [
        "correctness outside [0, 1]",
        "failure_category not in enum",
    ]


def test_naive_timestamps_are_taken_as_utc() -> None:
    row = good_span()
    table = spans_table([row])
    naive = pa.timestamp("us")
    table = table.set_column(1, "event_time", table.column("event_time").cast(naive))
    result = validate_table(table, SPANS)
    assert result.accepted.column("event_time")[0].as_py() == T0


def test_every_span_type_has_its_attribute_keys() -> None:
    assert len(SPAN_TYPES) == 13
    assert set(ATTRIBUTE_KEYS) == set(SPAN_TYPES)
    assert ATTRIBUTE_KEYS["retrieval"]["chunk_ids"] == "list_str"
    assert ATTRIBUTE_KEYS["context_assembly"]["excluded_chunks"] == "list_obj"


def test_segment_key_is_sorted_and_pipe_joined() -> None:
    assert segment_key() == "all"
    assert segment_key(task_type="support", route_name="cheap") == (
        "route_name=cheap|task_type=support"
    )


def test_generated_dbt_files_are_current() -> None:
    root = Path(__file__).resolve().parents[1]
    for relative, render in GENERATED.items():
        on_disk = (root / relative).read_text(encoding="utf-8")
        assert on_disk == render(), (  # type: ignore[operator]
            f"{relative} is stale: run `python -m tracehouse.contract.dbt_export`"
        )


def test_generated_macro_carries_every_attribute_key() -> None:
    root = Path(__file__).resolve().parents[1]
    text = (root / "macros/contract/_contract.sql").read_text(encoding="utf-8")
    keys_json = re.search(r"\{% set keys = (\{.*\}) %\}", text)
    assert keys_json is not None
    parsed = json.loads(keys_json.group(1))
    assert {t: dict(map(tuple, v)) for t, v in parsed.items()} == ATTRIBUTE_KEYS
