"""Batch checks of annotations: correctness is judged among labels only.

Promotions and eval results carry no correctness by design (an eval result's correctness is
the candidate's score, often absent), so a batch of them must not warn
``correctness_null_share``; a batch of labels without correctness still must.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from tracehouse.contract.schemas import ANNOTATIONS_SCHEMA, SCHEMA_VERSION
from tracehouse.lake import write_batch
from tracehouse.quality.batches import MAX_ANNOTATION_NULL_SHARE, batch_stats, new_batches

LABEL_TIME = datetime(2026, 1, 2, 12, tzinfo=UTC)


def _annotations(kind: str | None, n: int, with_correctness: int, prefix: str) -> pa.Table:
    rows = []
    for i in range(n):
        rows.append({
            "schema_version": SCHEMA_VERSION,
            "annotation_id": f"{prefix}-{i:04d}",
            "label_time": LABEL_TIME,
            "trace_id": f"{i + 1:032x}",
            "correctness": 0.9 if i < with_correctness else None,
            "annotation_kind": kind,
            "eval_dataset_id": "eval-x" if kind in ("promotion", "eval_result") else None,
            "eval_run_id": "run-b" if kind == "eval_result" else None,
        })
    columns = {f.name: [r.get(f.name) for r in rows] for f in ANNOTATIONS_SCHEMA}
    return pa.table(columns, schema=ANNOTATIONS_SCHEMA)


def test_eval_result_and_promotion_batches_do_not_count_as_labels_without_correctness(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    ingest = datetime(2026, 1, 2, 13, tzinfo=UTC)
    batches = {
        "evals": _annotations("eval_result", 20, with_correctness=2, prefix="ev"),
        "promotions": _annotations("promotion", 5, with_correctness=0, prefix="pr"),
        "labels-ok": _annotations("label", 10, with_correctness=9, prefix="lo"),
        "labels-legacy": _annotations(None, 10, with_correctness=10, prefix="ll"),  # null = label
        "labels-bad": _annotations("label", 10, with_correctness=2, prefix="lb"),
        "mixed": pa.concat_tables([
            _annotations("eval_result", 30, with_correctness=0, prefix="mx-e"),
            _annotations("label", 4, with_correctness=4, prefix="mx-l"),
        ]),
    }
    for batch_id, table in batches.items():
        report = write_batch(lake, "annotations", table, source="test", batch_id=batch_id,
                             ingest_time=ingest)
        assert report.quarantined == 0, report.reject_reasons

    con = duckdb.connect()
    stats = batch_stats(con, lake, "annotations", new_batches(con, lake, all_batches=True))
    share = dict(zip(stats["batch_id"], stats["correctness_null_share"], strict=True))
    assert share["evals"] == 0.0  # was 0.9: 18 of 20 rows without correctness
    assert share["promotions"] == 0.0  # was 1.0
    assert share["mixed"] == 0.0  # was 30/34: its labels all have correctness
    assert share["labels-legacy"] == 0.0
    assert abs(share["labels-ok"] - 0.1) < 1e-9
    assert abs(share["labels-bad"] - 0.8) < 1e-9
    warned = {b for b, s in share.items() if s > MAX_ANNOTATION_NULL_SHARE}
    assert warned == {"labels-bad"}
