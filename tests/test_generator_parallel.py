"""The generator's work split (tracehouse.generator.days): the same files, byte for byte, on one
process or several, in one go or appended; the hand-over folder is removed; the one-copy
redelivery and day split equals the two-step one; generated rows land without per-row checks
because every one of them passes them (and the lake is the same as with the checks)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tracehouse.lake as lake_module
from tracehouse.contract import DATASETS as SPECS
from tracehouse.contract import validate_table
from tracehouse.generator import generate
from tracehouse.generator.days import (
    TMP_PREFIX,
    _delivery_order,
    by_ingest_day,
    day_files,
    ingest_parts,
    with_duplicates,
)
from tracehouse.generator.ids import hex_ids
from tracehouse.generator.spans import chunk_ids
from tracehouse.generator.world import US_PER_DAY
from tracehouse.lake import BatchReport, _split_by_day, lake_status, write_batch

START = date(2026, 1, 1)


def _files(lake: Path) -> dict[str, str]:
    return {str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(lake.rglob("*")) if p.is_file()}


def test_two_workers_write_the_same_lake_as_one(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    args = {"traces_per_day": 150, "seed": 5, "bad_rows": 0.01, "progress": False}
    r1 = generate(one, start=START, days=4, workers=1, **args)
    r2 = generate(two, start=START, days=4, workers=2, **args)
    generate(two, start=START + timedelta(days=4), days=2, workers=2, **args)  # appended
    generate(one, start=START + timedelta(days=4), days=2, workers=1, **args)
    assert (r1.received, r1.quarantined, r1.batches) == (r2.received, r2.quarantined,
                                                          r2.batches)
    assert r1.quarantined["spans"] > 0  # the bad-row batches went through the workers too
    assert _files(two) == _files(one)
    assert not list(two.glob(f"{TMP_PREFIX}*"))  # hand-over files removed


def test_ingest_parts_give_the_day_files_of_the_two_step_split() -> None:
    n = 5_000
    rng = np.random.default_rng(3)
    day0 = 20_454 * US_PER_DAY
    ingest = day0 + np.sort(rng.integers(0, 2 * US_PER_DAY, n))
    event = ingest - rng.integers(0, US_PER_DAY // 2, n)  # some rows from the day before
    ts = pa.timestamp("us", "UTC")
    chunks = [pa.table({"x": pa.array(rng.random(k)), "s": pa.array([f"r{i}" for i in range(k)]),
                        "event_time": pa.array(event[a:a + k]).cast(ts),
                        "ingest_time": pa.array(ingest[a:a + k]).cast(ts)})
              for a, k in ((0, 2_000), (2_000, 3_000))]
    table = pa.concat_tables(chunks)  # chunked, as the span builder's slot tables are
    fast = ingest_parts(table, 7, 739_000, 1)
    slow = by_ingest_day(with_duplicates(table, 7, 739_000, 1))
    assert fast.keys() == slow.keys() and len(fast) >= 3  # two days, redeliveries a day on
    for day, part in fast.items():
        expected = [t for _, t in _split_by_day(slow[day], "event_time")]
        got = day_files([part])
        assert len(got) == len(expected) >= 1
        for g, e in zip(got, expected, strict=True):
            assert g.equals(e)
            assert [c.num_chunks for c in g.columns] == [c.num_chunks for c in e.columns]
        assert _delivery_order([part]).equals(slow[day])  # what the bad rows are drawn from
    assert sum(p.rows.num_rows for p in fast.values()) > n  # ~1% delivered twice


def test_generated_batches_are_valid_and_the_ledger_reconciles(tmp_path: Path) -> None:
    """The generator lands its rows without the validator's per-row checks: every row it
    lands must pass them, and the lake must reconcile (landed = accepted + quarantined)."""
    lake = tmp_path / "lake"
    report = generate(lake, start=START, days=5, traces_per_day=200, seed=9, bad_rows=0.01,
                      progress=False, workers=1)
    landed = 0
    for dataset, spec in SPECS.items():
        for path in sorted((lake / dataset).glob("dt=*/*.parquet")):
            table = pq.read_table(path)
            day = date.fromisoformat(path.stem.split("-s9-")[1][:10])
            stamp = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
            result = validate_table(table, spec, ingest_time=stamp)
            assert result.rejected.num_rows == 0, (path, result.rejected.to_pylist()[:1])
            assert result.accepted.equals(table)
            landed += table.num_rows
    assert landed == sum(report.accepted.values())
    status = lake_status(lake).to_pylist()
    assert status and all(r["reconciled"] for r in status)
    assert sum(r["received"] for r in status) == sum(report.received.values())
    assert sum(r["quarantined"] for r in status) == sum(report.quarantined.values()) > 0


def test_validating_every_generated_row_gives_the_same_lake(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    args = {"start": START, "days": 4, "traces_per_day": 150, "seed": 5, "bad_rows": 0.01,
            "progress": False, "workers": 1}
    generate(tmp_path / "fast", **args)

    def through_the_validator(lake: Path, dataset: str, days: list[pa.Table],
                              **kw: object) -> BatchReport:
        return write_batch(lake, dataset, pa.concat_tables(days), **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(lake_module, "write_valid_days", through_the_validator)
    generate(tmp_path / "checked", **args)
    assert _files(tmp_path / "checked") == _files(tmp_path / "fast")


def test_fast_id_and_label_builders_equal_arrow_text() -> None:
    rng = np.random.default_rng(1)
    words = [rng.integers(0, 2**63, 1_000, dtype=np.int64).astype(np.uint64) for _ in range(2)]
    expected = [f"req_{a:016x}{b:016x}" for a, b in zip(*words, strict=True)]
    assert hex_ids(*words, prefix="req_").to_pylist() == expected
    codes = rng.integers(0, 100_000 * 64, 1_000)
    assert chunk_ids(codes).to_pylist() == [f"doc-{c // 64:05d}#c{c % 64:02d}" for c in codes]
    big = np.array([100_000 * 64 + 5])  # wider than the fixed-width path
    assert chunk_ids(big).to_pylist() == ["doc-100000#c05"]
