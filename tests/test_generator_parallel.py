"""The generator's work split (tracehouse.generator.days): the same files, byte for byte, on one
process or several, in one go or appended; the hand-over folder is removed; the one-copy
redelivery split equals the two-step one."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from tracehouse.generator import generate
from tracehouse.generator.days import TMP_PREFIX, by_ingest_day, ingest_parts, with_duplicates
from tracehouse.generator.world import US_PER_DAY

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


def test_ingest_parts_equal_the_two_step_split() -> None:
    n = 5_000
    rng = np.random.default_rng(3)
    day0 = 20_454 * US_PER_DAY
    ingest = day0 + np.sort(rng.integers(0, 2 * US_PER_DAY, n))
    chunks = [pa.table({"x": pa.array(rng.random(k)), "s": pa.array([f"r{i}" for i in range(k)]),
                        "ingest_time": pa.array(ingest[a:a + k]).cast(pa.timestamp("us", "UTC"))})
              for a, k in ((0, 2_000), (2_000, 3_000))]
    table = pa.concat_tables(chunks)  # chunked, as the span builder's slot tables are
    fast = ingest_parts(table, 7, 739_000, 1)
    slow = by_ingest_day(with_duplicates(table, 7, 739_000, 1))
    assert fast.keys() == slow.keys() and len(fast) >= 3  # two days, redeliveries a day on
    for day in fast:
        assert fast[day].equals(slow[day])
    assert sum(t.num_rows for t in fast.values()) > n  # ~1% delivered twice
