"""The lake: atomic day batches, quarantine with reasons, the ledger, adoption, reconciliation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tracehouse.contract import validate_table
from tracehouse.contract.schemas import SPANS
from tracehouse.lake import (
    LakeError,
    adopt_unregistered,
    lake_status,
    unregistered_files,
    write_batch,
    write_valid_batch,
    write_valid_days,
)

from .test_contract import good_span, spans_table

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def mixed_batch() -> pa.Table:
    rows = [
        good_span(span_id="a" * 16),
        good_span(
            span_id="b" * 16,
            event_time=datetime(2026, 1, 2, 23, 59, 59, tzinfo=UTC),
            end_time=datetime(2026, 1, 3, 0, 0, 1, tzinfo=UTC),
        ),
        good_span(span_id="c" * 16, status="weird"),
    ]
    return spans_table(rows)


def rows_in(paths: list[Path]) -> int:
    return sum(pq.read_metadata(p).num_rows for p in paths)


def test_write_batch_splits_by_day_and_quarantines_with_reason(tmp_path: Path) -> None:
    report = write_batch(tmp_path, "spans", mixed_batch(), source="test", batch_id="b1",
                         ingest_time=NOW)
    assert (report.received, report.accepted, report.quarantined) == (3, 2, 1)
    assert report.reject_reasons == {"status not in enum": 1}
    day1 = tmp_path / "spans/dt=2026-01-01/b1.parquet"
    day2 = tmp_path / "spans/dt=2026-01-02/b1.parquet"
    quarantined = tmp_path / "_quarantine/spans/dt=2026-01-01/b1.parquet"
    assert {day1, day2, quarantined} == set(report.files)
    assert pq.read_schema(day1).equals(SPANS.schema, check_metadata=False)
    q = pq.read_table(quarantined)
    assert q.column("reject_reason").to_pylist() == ["status not in enum"]
    assert q.column("status").to_pylist() == ["weird"]
    assert q.column("_batch_id").to_pylist() == ["b1"]
    assert q.column("_landing_source").to_pylist() == ["test"]
    # No temporary file is left behind.
    assert not list(tmp_path.rglob("*.tmp"))


def test_same_batch_id_and_ingest_time_give_identical_bytes(tmp_path: Path) -> None:
    for lake in ("a", "b"):
        write_batch(tmp_path / lake, "spans", mixed_batch(), source="test", batch_id="b1",
                    ingest_time=NOW)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.parquet"))
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_status_reconciles_received_accepted_quarantined(tmp_path: Path) -> None:
    write_batch(tmp_path, "spans", mixed_batch(), source="generator", batch_id="b1",
                ingest_time=NOW)
    write_batch(tmp_path, "spans", mixed_batch(), source="otlp-http", batch_id="b2",
                ingest_time=NOW)
    rows = lake_status(tmp_path).to_pylist()
    assert all(r["reconciled"] for r in rows)
    by_source = {(r["dt"], r["source"]): r for r in rows}
    assert by_source[("2026-01-01", "generator")]["received"] == 2
    assert by_source[("2026-01-01", "generator")]["quarantined"] == 1
    assert sum(r["received"] for r in rows) == 6
    assert sum(r["accepted"] + r["quarantined"] for r in rows) == 6


def test_a_lost_file_breaks_reconciliation(tmp_path: Path) -> None:
    write_batch(tmp_path, "spans", mixed_batch(), source="test", batch_id="b1", ingest_time=NOW)
    (tmp_path / "spans/dt=2026-01-02/b1.parquet").unlink()
    rows = {r["dt"]: r for r in lake_status(tmp_path).to_pylist()}
    assert rows["2026-01-02"]["reconciled"] is False
    assert rows["2026-01-01"]["reconciled"] is True


def test_producer_files_are_adopted_once(tmp_path: Path) -> None:
    good = write_batch(tmp_path / "src", "spans", spans_table([good_span()]), source="x",
                       batch_id="g", ingest_time=NOW).files[0]
    (tmp_path / "spans/dt=2026-01-01").mkdir(parents=True)
    clean = tmp_path / "spans/dt=2026-01-01/producer-clean.parquet"
    clean.write_bytes(good.read_bytes())
    dirty = tmp_path / "spans/dt=2026-01-01/producer-dirty.parquet"
    pq.write_table(mixed_batch().append_column("extra", pa.array([1, 2, 3])), dirty)

    assert len(unregistered_files(tmp_path)) == 2
    reports = {r.batch_id: r for r in adopt_unregistered(tmp_path, now=NOW)}
    # The clean file stays where it is, registered as it is.
    assert reports["producer-clean"].accepted == 1
    assert clean.is_file()
    # The dirty one is kept whole among the originals and landed again, valid rows only.
    dirty_report = reports["producer-dirty"]
    assert (dirty_report.accepted, dirty_report.quarantined) == (2, 1)
    assert dirty_report.dropped_columns == ["extra"]
    quarantined = pq.read_table(
        tmp_path / "_quarantine/spans/dt=2026-01-01/producer-dirty.parquet"
    )
    assert "extra" not in quarantined.column_names  # never checked, so never landed
    originals = tmp_path / "_quarantine/_originals/spans/dt=2026-01-01"
    assert (originals / "producer-dirty.parquet").is_file()
    relanded = pq.read_table(tmp_path / "spans/dt=2026-01-01/producer-dirty.parquet")
    assert relanded.schema.equals(SPANS.schema, check_metadata=False)
    # Nothing is left to adopt, and everything reconciles.
    assert unregistered_files(tmp_path) == []
    assert adopt_unregistered(tmp_path, now=NOW) == []
    assert all(r["reconciled"] for r in lake_status(tmp_path).to_pylist())


def test_a_file_that_is_not_parquet_is_kept_and_reported(tmp_path: Path) -> None:
    bad = tmp_path / "feedback/dt=2026-01-01/garbage.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_text("this is not parquet")
    (report,) = adopt_unregistered(tmp_path, now=NOW)
    assert "unreadable file" in next(iter(report.reject_reasons))
    assert not bad.exists()
    kept = tmp_path / "_quarantine/_originals/feedback/dt=2026-01-01/garbage.parquet"
    assert kept.read_text() == "this is not parquet"


def test_unknown_dataset_and_bad_batch_id_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LakeError, match="unknown dataset 'logs'"):
        write_batch(tmp_path, "logs", mixed_batch(), source="t")
    with pytest.raises(LakeError, match="batch id"):
        write_batch(tmp_path, "spans", mixed_batch(), source="t", batch_id="../escape")


def _valid_spans() -> pa.Table:
    """Two valid spans on two days, exactly in the contract schema."""
    table = validate_table(mixed_batch(), SPANS, ingest_time=NOW).accepted
    assert table.num_rows == 2
    return table


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_valid_batch_lands_as_write_batch_would_land_it(tmp_path: Path) -> None:
    table = _valid_spans()
    checked = write_batch(tmp_path / "a", "spans", table, source="gen", batch_id="b1",
                          ingest_time=NOW)
    trusted = write_valid_batch(tmp_path / "b", "spans", table, source="gen", batch_id="b1",
                                ingest_time=NOW)
    assert (trusted.received, trusted.accepted, trusted.quarantined) == (2, 2, 0)
    assert (checked.received, checked.accepted, checked.quarantined) == (2, 2, 0)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")  # files and ledger, byte for byte
    status = lake_status(tmp_path / "b").to_pylist()
    assert status and all(r["reconciled"] for r in status)


def test_a_valid_batch_that_is_not_valid_is_refused_before_anything_lands(
    tmp_path: Path,
) -> None:
    table = _valid_spans()
    tenant = table.schema.get_field_index("tenant_id")
    bad = {
        "not in the contract schema": table.drop_columns(["attributes"]),
        "nulls in tenant_id": table.set_column(
            tenant, table.schema.field(tenant), pa.array([None, "t-1"], pa.string())),
        "outside the plausible window": table.set_column(
            table.schema.get_field_index("end_time"), table.schema.field("end_time"),
            pa.array([datetime(2031, 1, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC"))),
    }
    for reason, t in bad.items():
        with pytest.raises(LakeError, match=reason):
            write_valid_batch(tmp_path, "spans", t, source="gen", batch_id="b1",
                              ingest_time=NOW)
    # Days the producer did not split (or not in order) are refused too.
    with pytest.raises(LakeError, match="days not split"):
        write_valid_days(tmp_path, "spans", [table], source="gen", batch_id="b1",
                         ingest_time=NOW)
    one, two = table.slice(0, 1), table.slice(1, 1)
    first, second = sorted([one, two], key=lambda t: t.column("event_time")[0].as_py())
    with pytest.raises(LakeError, match="days not split"):
        write_valid_days(tmp_path, "spans", [second, first], source="gen", batch_id="b1",
                         ingest_time=NOW)
    assert not list(tmp_path.rglob("*.parquet"))
    report = write_valid_days(tmp_path, "spans", [first, second], source="gen", batch_id="b1",
                              ingest_time=NOW)
    assert report.accepted == 2 and len(report.files) == 2
