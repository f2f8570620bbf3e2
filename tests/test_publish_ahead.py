"""The day files of the big marts exported ahead (:class:`tracehouse.publish.DaysAhead`).

``tracehouse run`` starts the export of the day-partitioned marts when the build is done and
lets detection and the mart checks run meanwhile (they write other tables of the same database).
What it publishes must be what a publication done in one go publishes; a run that stops before
publishing leaves nothing behind. The hand-made warehouse of ``test_publish_counts`` (no dbt).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tracehouse.publication import MANIFEST, current_folder, mart_path
from tracehouse.publish import DAY_PARTITIONED, DaysAhead, PublishError, publish

from .test_publish_counts import D2, _sql, _warehouse

LATE_SPAN = ("INSERT INTO staging.base_lake__spans VALUES ('t2', 's6', 'llm', "
             "TIMESTAMPTZ '2026-01-02 09:00:00+00', TIMESTAMPTZ '2026-01-05 00:00:00+00')")


def _rows(warehouse: Path, mart: str) -> dict[str, list[tuple[object, ...]]]:
    """Day file -> its rows, sorted (the content a reader sees, whatever the write order)."""
    out = {}
    where = mart_path(warehouse, mart)
    for path in sorted(where.glob("*.parquet")) if where.is_dir() else [where]:
        con = duckdb.connect()
        try:
            out[path.name] = sorted(con.execute(
                f"SELECT * FROM read_parquet('{path}')").fetchall(), key=repr)
        finally:
            con.close()
    return out


def _days(warehouse: Path) -> dict[str, object]:
    manifest = json.loads((current_folder(warehouse) / MANIFEST).read_text())  # type: ignore[operator]
    return {f: {k: v for k, v in manifest["tables"][f].items() if k != "linked"}
            for f in (f"{m}.parquet" for m in DAY_PARTITIONED)}


def test_days_exported_ahead_publish_what_one_publication_does(tmp_path: Path) -> None:
    (tmp_path / "alone").mkdir()
    (tmp_path / "ahead").mkdir()
    alone = _warehouse(tmp_path / "alone")
    ahead_wh = _warehouse(tmp_path / "ahead")
    for warehouse in (alone, ahead_wh):
        _sql(warehouse, "CREATE TABLE marts.alerts AS SELECT 'old' AS alert",
             "CREATE TABLE marts.dim_versions AS SELECT 'v1' AS version")
        publish(warehouse, "a", build="same")
        _sql(warehouse, LATE_SPAN)
    meanwhile = ("CREATE OR REPLACE TABLE marts.alerts AS SELECT 'new' AS alert",
                 "CREATE TABLE marts.change_points AS SELECT 'latency' AS metric")
    _sql(alone, *meanwhile)
    one = publish(alone, "b", build="same")

    ahead = DaysAhead(ahead_wh, "b", build="same")
    ahead.wait()  # exported before the run's other steps wrote their marts
    # Meanwhile the run detects and checks: other tables of the database are written.
    _sql(ahead_wh, *meanwhile)
    two = publish(ahead_wh, "b", build="same", ahead=ahead)

    assert two.days_ahead_seconds is not None and one.days_ahead_seconds is None
    assert two.days_written == one.days_written == {"fct_requests": [D2], "fct_spans": [D2]}
    assert two.days_linked == one.days_linked
    assert _days(ahead_wh) == _days(alone)
    for mart in DAY_PARTITIONED:
        assert _rows(ahead_wh, mart) == _rows(alone, mart)
    assert "change_points" in two.tables  # written meanwhile, published with the rest
    # exported ahead: alerts (changed meanwhile: written again), dim_versions (kept, linked)
    assert sorted(two.ahead) == ["alerts", "dim_versions"]
    assert "dim_versions" in two.linked and "alerts" in two.written
    for mart in ("alerts", "change_points", "dim_versions"):
        assert _rows(ahead_wh, mart) == _rows(alone, mart)


def test_a_discarded_export_leaves_the_publication_as_it_was(tmp_path: Path) -> None:
    warehouse = _warehouse(tmp_path)
    publish(warehouse, "a", build="same")
    before = current_folder(warehouse)
    _sql(warehouse, LATE_SPAN)
    ahead = DaysAhead(warehouse, "b", build="same")
    ahead.discard()
    assert current_folder(warehouse) == before
    assert sorted(p.name for p in (warehouse / "_publish").iterdir()) == ["a"]


def test_an_export_that_failed_fails_the_publication(tmp_path: Path) -> None:
    warehouse = _warehouse(tmp_path)
    publish(warehouse, "a", build="same")
    ahead = DaysAhead(warehouse, "a", build="same")  # "a" is published already
    with pytest.raises(PublishError, match="exists already"):
        publish(warehouse, "a", build="same", ahead=ahead)
    other = DaysAhead(warehouse, "c", build="same")
    with pytest.raises(PublishError, match="another run"):
        publish(warehouse, "d", build="same", ahead=other)
    other.discard()
    assert not any(p.name.endswith(".partial") for p in (warehouse / "_publish").iterdir())


def test_what_must_finish_before_the_swap_can_stop_it(tmp_path: Path) -> None:
    warehouse = _warehouse(tmp_path)
    publish(warehouse, "a", build="same")
    before = current_folder(warehouse)

    def docs_failed() -> None:
        raise RuntimeError("data docs failed")

    with pytest.raises(RuntimeError, match="data docs failed"):
        publish(warehouse, "b", build="same", before_swap=docs_failed)
    assert current_folder(warehouse) == before
    assert sorted(p.name for p in (warehouse / "_publish").iterdir()) == ["a"]
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_run_exports_ahead_only_when_asked() -> None:
    from tracehouse.pipeline import PUBLISH_AHEAD_ENV, publish_ahead

    assert not publish_ahead("duckdb", {})
    assert not publish_ahead("duckdb", {PUBLISH_AHEAD_ENV: "0"})
    assert publish_ahead("duckdb", {PUBLISH_AHEAD_ENV: "1"})
    assert not publish_ahead("spark", {PUBLISH_AHEAD_ENV: "1"})
