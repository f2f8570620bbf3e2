"""The lake source tests an incremental run leaves out are enforced where every batch lands.

An unchanged-project incremental `tracehouse run` does not run the data tests of the raw lake
sources (`source:lake`, tracehouse.pipeline.SLICED_RUN_EXCLUDES): they re-read the whole lake
every run. Each of their checks (a column that must not be NULL, a column with accepted values)
must therefore be enforced by the lake writer, which quarantines the row before any reader sees
it. This test reads the checks from the generated sources YAML, so a check added there that the
writer does not enforce fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from tests.test_contract import good_span
from tracehouse.contract.dbt_export import SOURCES_PATH
from tracehouse.contract.schemas import DATASETS
from tracehouse.lake import write_batch
from tracehouse.pipeline import SLICED_RUN_EXCLUDES
from tracehouse.warehouse import project_dir

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INGEST = datetime(2026, 1, 1, 13, 0, tzinfo=UTC)

GOOD_ROWS: dict[str, dict[str, object]] = {
    "spans": good_span(),
    "feedback": {"schema_version": "1", "feedback_id": "f1", "event_time": T0,
                 "trace_id": "ab" * 16, "tenant_id": "t-1", "feedback_type": "thumbs_down"},
    "annotations": {"schema_version": "1", "annotation_id": "a1", "label_time": T0,
                    "trace_id": "ab" * 16, "correctness": 0.5,
                    "failure_category": "retrieval_miss"},
}


def _source_checks() -> list[tuple[str, str, str]]:
    """(dataset, column, check) for every check of the lake sources' `column_checks` tests."""
    doc = yaml.safe_load((project_dir() / SOURCES_PATH).read_text(encoding="utf-8"))
    (lake,) = [s for s in doc["sources"] if s["name"] == "lake"]
    out = []
    for table in lake["tables"]:
        column_tests = [t for c in table["columns"] for t in c.get("data_tests", [])]
        assert not column_tests, f"{table['name']}: column tests outside column_checks"
        for test in table.get("data_tests", []):
            args: dict[str, Any] = test["column_checks"]["arguments"]
            out += [(table["name"], c, "not_null") for c in args.get("not_null", [])]
            out += [(table["name"], c, "accepted_values") for c in args.get("accepted_values", {})]
    return out


SOURCE_CHECKS = _source_checks()


def test_the_sources_check_every_required_column_and_enum() -> None:
    for dataset, spec in DATASETS.items():
        checked = {(c, k) for d, c, k in SOURCE_CHECKS if d == dataset}
        assert checked == ({(c, "not_null") for c in spec.required_columns}
                           | {(c, "accepted_values") for c in spec.enums}), dataset
    assert "source:lake" in SLICED_RUN_EXCLUDES.split()


@pytest.mark.parametrize(("dataset", "column", "check"), SOURCE_CHECKS,
                         ids=[f"{d}.{c}.{k}" for d, c, k in SOURCE_CHECKS])
def test_a_row_breaking_a_source_check_is_quarantined_not_landed(
    tmp_path: Path, dataset: str, column: str, check: str,
) -> None:
    spec = DATASETS[dataset]
    good = dict(GOOD_ROWS[dataset])
    if check == "accepted_values":
        good[column] = spec.enums[column][0]
    bad = {**good, column: None if check == "not_null" else "not-in-the-contract"}
    bad[spec.id_column] = "bad-row" if column != spec.id_column else None
    schema = pa.schema([spec.schema.field(name) for name in good])
    table = pa.Table.from_pylist([good, bad], schema=schema)
    report = write_batch(tmp_path, dataset, table, source="test", batch_id="b1",
                         ingest_time=INGEST)
    assert (report.received, report.accepted, report.quarantined) == (2, 1, 1)
    landed = duckdb.sql(
        f"select {column} from read_parquet('{tmp_path / dataset}/dt=*/*.parquet')"
    ).fetchall()
    assert landed == [(good[column],)]  # the source view reads the good row only
