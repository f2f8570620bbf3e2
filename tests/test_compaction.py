"""`tracehouse lake compact`: one file per dataset and day, counts still reconcile, no row lost
or doubled, unregistered files left alone, and batch checks still find a compacted batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tracehouse.compaction import BATCH_COLUMN, COMPACTED_PREFIX, compact_lake
from tracehouse.lake import lake_status, write_batch

from .test_contract import good_span, spans_table

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _land(lake: Path, n_batches: int) -> None:
    for b in range(n_batches):
        rows = [
            good_span(span_id=f"{b + 1:04x}{i:012x}", trace_id=f"{b + 1:04x}{i:028x}",
                      event_time=datetime(2026, 1, 2 + i % 2, 10, tzinfo=UTC),
                      end_time=datetime(2026, 1, 2 + i % 2, 10, 0, 1, tzinfo=UTC))
            for i in range(6)
        ]
        write_batch(lake, "spans", spans_table(rows), source="test", batch_id=f"b{b}",
                    ingest_time=NOW + timedelta(minutes=b))


def _rows(lake: Path) -> list[tuple[object, ...]]:
    glob = str(lake / "spans" / "dt=*" / "*.parquet")
    return duckdb.sql(
        f"select span_id, ingest_time, dt from read_parquet('{glob}', hive_partitioning = true, "
        "union_by_name = true) order by all"
    ).fetchall()


def test_compact_merges_each_day_into_one_file_and_keeps_every_row(tmp_path: Path) -> None:
    _land(tmp_path, 4)
    before = _rows(tmp_path)
    assert len(before) == 24
    assert len(list((tmp_path / "spans").glob("dt=*/*.parquet"))) == 8

    reports = compact_lake(tmp_path)

    assert sorted(r.dt for r in reports) == ["2026-01-02", "2026-01-03"]
    assert all(r.atomic_swap and r.batches == 4 and r.rows == 12 for r in reports)
    files = sorted((tmp_path / "spans").glob("dt=*/*.parquet"))
    assert [p.name.startswith(COMPACTED_PREFIX) for p in files] == [True, True]
    assert not list((tmp_path / "spans").glob(".*"))  # no staging folder left behind
    assert _rows(tmp_path) == before  # same rows, each once, on the same day
    batches = pq.read_table(files[0], columns=[BATCH_COLUMN]).column(BATCH_COLUMN).to_pylist()
    assert sorted(set(batches)) == ["b0", "b1", "b2", "b3"]

    status = lake_status(tmp_path).to_pylist()
    assert all(r["reconciled"] for r in status)
    test_rows = [r for r in status if r["source"] == "test"]
    assert sum(r["received"] for r in test_rows) == sum(r["accepted"] for r in test_rows) == 24
    assert {r["source"] for r in status} == {"test", "compaction"}


def test_compacting_again_folds_new_batches_into_the_merged_file(tmp_path: Path) -> None:
    _land(tmp_path, 2)
    compact_lake(tmp_path)
    write_batch(tmp_path, "spans", spans_table([good_span(
        span_id="f" * 16, event_time=datetime(2026, 1, 2, 11, tzinfo=UTC),
        end_time=datetime(2026, 1, 2, 11, 0, 1, tzinfo=UTC))]), source="test",
                batch_id="late", ingest_time=NOW + timedelta(hours=1))
    day = tmp_path / "spans" / "dt=2026-01-02"
    assert len(list(day.glob("*.parquet"))) == 2
    compact_lake(tmp_path, days=["2026-01-02"])
    (merged,) = day.glob("*.parquet")
    kept = pq.read_table(merged, columns=[BATCH_COLUMN]).column(BATCH_COLUMN).to_pylist()
    assert sorted(set(kept)) == ["b0", "b1", "late"]  # the first compaction's batches kept
    assert all(r["reconciled"] for r in lake_status(tmp_path).to_pylist())
    assert len(_rows(tmp_path)) == 13


def test_unregistered_files_are_not_merged(tmp_path: Path) -> None:
    _land(tmp_path, 2)
    day = tmp_path / "spans" / "dt=2026-01-02"
    foreign = day / "producer-file.parquet"
    pq.write_table(spans_table([good_span(
        span_id="e" * 16, event_time=datetime(2026, 1, 2, 11, tzinfo=UTC),
        end_time=datetime(2026, 1, 2, 11, 0, 1, tzinfo=UTC))]), foreign)
    compact_lake(tmp_path)
    assert foreign.exists()  # carried over into the swapped folder, untouched
    assert len(list(day.glob(f"{COMPACTED_PREFIX}*.parquet"))) == 1


def test_batch_checks_find_the_rows_of_a_compacted_batch(tmp_path: Path) -> None:
    from tracehouse.quality.batches import NewBatches, batch_stats

    _land(tmp_path, 3)
    compact_lake(tmp_path)
    ledger = duckdb.sql(
        f"select dataset, batch_id, any_value(source) as source, sum(received) as received, "
        f"sum(accepted) as accepted, sum(quarantined) as quarantined "
        f"from read_parquet('{tmp_path}/_ledger/spans/b*.parquet') group by all"
    ).df()
    con = duckdb.connect()
    stats = batch_stats(con, tmp_path, "spans", NewBatches(ledger))
    assert sorted(stats["batch_id"]) == ["b0", "b1", "b2"]
    assert list(stats["rows"]) == [6, 6, 6]
    assert list(stats["redelivered_share"]) == [0.0, 0.0, 0.0]


def test_compaction_never_runs_under_a_run(tmp_path: Path) -> None:
    """A run holds the lake's files lock shared; compaction wants it exclusive: exit 75, no
    file touched; once the run is over it compacts."""
    from typer.testing import CliRunner

    from tracehouse.cli import app
    from tracehouse.runlock import EXIT_LOCKED, LakeBusyError, lake_files_lock

    _land(tmp_path, 3)
    files = sorted((tmp_path / "spans").glob("dt=*/*.parquet"))
    with lake_files_lock(tmp_path, rewrite=False, what="a run"):
        with pytest.raises(LakeBusyError) as err:
            compact_lake(tmp_path)
        assert err.value.exit_code == EXIT_LOCKED
        result = CliRunner().invoke(app, ["lake", "compact", "--lake", str(tmp_path)])
        assert result.exit_code == EXIT_LOCKED, result.output
        assert "tracehouse run" in result.output
        assert sorted((tmp_path / "spans").glob("dt=*/*.parquet")) == files
    assert len(compact_lake(tmp_path)) == 2


def test_a_run_holds_the_lake_against_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tracehouse run` holds the lock for its whole run: a compaction tried mid-run (here from
    inside the run's steps) is refused, and the run itself waits for a compaction to finish."""
    from tracehouse import pipeline
    from tracehouse.runlock import LakeBusyError, lake_files_lock

    lake, warehouse = tmp_path / "lake", tmp_path / "wh"
    _land(lake, 2)
    seen: list[str] = []

    def steps(*args: object, **kwargs: object) -> None:
        with pytest.raises(LakeBusyError):
            compact_lake(lake)
        seen.append("refused")

    monkeypatch.setattr(pipeline, "_run_steps", steps)
    pipeline.run(lake, warehouse, progress=False, echo=lambda *a, **k: None)
    assert seen == ["refused"]
    assert len(compact_lake(lake)) == 2  # the run is over: the lock is free again

    monkeypatch.setattr(pipeline, "LAKE_WAIT_S", 0.3)
    with lake_files_lock(lake, rewrite=True, what="a compaction"), \
            pytest.raises(LakeBusyError, match="rewriting it"):
        pipeline.run(lake, warehouse, progress=False, echo=lambda *a, **k: None)
