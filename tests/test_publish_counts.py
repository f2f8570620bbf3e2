"""How a publication counts the days of ``fct_spans`` without evaluating the view over every span.

A day of ``fct_spans`` is linked when no stamped span touched it and its row count in the base
span table is the one the previous manifest recorded (``source_rows``); the days written are
counted in the mart itself, by range, and reconciled with their files. A small warehouse made by
hand (no dbt): base tables with ``_loaded_at`` stamps and a ``fct_spans`` view that drops some
base rows, so a base count and a mart count differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from tracehouse.publication import MANIFEST, mart_path, mart_rows
from tracehouse.publish import (
    DAY_COUNTED_BY,
    counts_of_days,
    day_counts,
    day_runs,
    publish,
)
from tracehouse.warehouse import warehouse_db

D1, D2, D3 = "2026-01-01", "2026-01-02", "2026-01-03"


def test_day_runs_group_consecutive_days_and_leave_out_undated() -> None:
    days = {"2026-01-01", "2026-01-02", "2026-01-04", "2026-01-31", "2026-02-01", "_undated"}
    assert day_runs(days) == [["2026-01-01", "2026-01-02"], ["2026-01-04"],
                              ["2026-01-31", "2026-02-01"]]
    assert day_runs(set()) == []


@pytest.mark.parametrize("kind", ["TIMESTAMPTZ", "TIMESTAMP", "DATE"])
def test_counts_of_some_days_are_the_full_counts_of_those_days(kind: str) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE TABLE t AS SELECT (TIMESTAMP '2026-01-01' + i * INTERVAL 5 HOUR)::{kind} AS d "
        "FROM range(40) AS r(i) UNION ALL SELECT NULL")
    full = day_counts(con, "t", "d")
    assert full["_undated"] == 1 and len(full) > 5
    some = {"2026-01-01", "2026-01-02", "2026-01-05", "2026-01-07", "_undated", "2026-03-01"}
    expected = {d: full.get(d, 0) for d in some}
    assert counts_of_days(con, "t", "d", some) == expected
    assert expected["2026-03-01"] == 0  # a day with no rows counts 0
    assert counts_of_days(con, "t", "d", set(full)) == full


def _warehouse(tmp_path: Path) -> Path:
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    con = duckdb.connect(str(warehouse_db(warehouse)))
    con.execute("SET TimeZone = 'UTC'")
    for schema in ("staging", "marts"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute("""
        CREATE TABLE staging.base_lake__spans AS SELECT * FROM (VALUES
            ('t1', 's1', 'llm', TIMESTAMPTZ '2026-01-01 10:00:00+00'),
            ('t1', 's2', 'llm', TIMESTAMPTZ '2026-01-01 10:00:01+00'),
            ('t1', 's3', 'noise', TIMESTAMPTZ '2026-01-01 10:00:02+00'),
            ('t2', 's4', 'llm', TIMESTAMPTZ '2026-01-02 08:00:00+00'),
            ('t3', 's5', 'llm', TIMESTAMPTZ '2026-01-03 08:00:00+00'))
            AS v(trace_id, span_id, span_type, event_time),
            (SELECT TIMESTAMPTZ '2026-01-04 00:00:00+00' AS _loaded_at)""")
    for table in ("feedback", "annotations"):
        con.execute(f"CREATE TABLE staging.base_lake__{table} AS SELECT 't1' AS trace_id, "
                    "TIMESTAMPTZ '2026-01-04 00:00:00+00' AS _loaded_at")
    # The mart drops a span type: its day counts are not the base table's.
    con.execute("CREATE VIEW marts.fct_spans AS SELECT * FROM staging.base_lake__spans "
                "WHERE span_type <> 'noise'")
    con.execute("CREATE TABLE marts.fct_requests AS SELECT trace_id, "
                "min(event_time)::DATE AS trace_date FROM staging.base_lake__spans GROUP BY 1")
    con.close()
    return warehouse


def _sql(warehouse: Path, *statements: str) -> None:
    con = duckdb.connect(str(warehouse_db(warehouse)))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


def _inodes(warehouse: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in mart_path(warehouse, "fct_spans").glob("*.parquet")}


def _entry(warehouse: Path) -> dict[str, object]:
    manifest = json.loads((mart_path(warehouse, "fct_spans").parent / MANIFEST).read_text())
    entry: dict[str, object] = manifest["tables"]["fct_spans.parquet"]
    return entry


def test_span_days_are_linked_or_written_by_base_counts_and_stamps(tmp_path: Path) -> None:
    assert DAY_COUNTED_BY["fct_spans"] == "staging.base_lake__spans"
    warehouse = _warehouse(tmp_path)
    first = publish(warehouse, "a", build="same")
    assert set(first.days_written["fct_spans"]) == {D1, D2, D3}
    days = _entry(warehouse)["days"]
    assert isinstance(days, dict)
    # rows: the mart's (published); source_rows: the base table's (what the next run compares)
    assert {d: (v["rows"], v["source_rows"]) for d, v in days.items()} == {
        D1: (2, 3), D2: (1, 1), D3: (1, 1)}
    assert pq.read_table(mart_path(warehouse, "fct_spans") / f"{D1}.parquet").num_rows == 2

    # Nothing new: every day linked.
    before = _inodes(warehouse)
    assert publish(warehouse, "b", build="same").days_written["fct_spans"] == []
    assert _inodes(warehouse) == before

    # A base row deleted with no stamp moving (as `lake expire` does): its day is rewritten.
    _sql(warehouse, "DELETE FROM staging.base_lake__spans WHERE span_id = 's2'")
    third = publish(warehouse, "c", build="same")
    assert third.days_written["fct_spans"] == [D1]
    after = _inodes(warehouse)
    assert after[f"{D1}.parquet"] != before[f"{D1}.parquet"]
    assert after[f"{D2}.parquet"] == before[f"{D2}.parquet"]
    assert pq.read_table(mart_path(warehouse, "fct_spans") / f"{D1}.parquet").num_rows == 1

    # A new stamped span of trace t2: its day is rewritten, the others are linked.
    _sql(warehouse, "INSERT INTO staging.base_lake__spans VALUES ('t2', 's6', 'llm', "
                    "TIMESTAMPTZ '2026-01-02 09:00:00+00', TIMESTAMPTZ '2026-01-05 00:00:00+00')")
    fourth = publish(warehouse, "d", build="same")
    assert fourth.days_written["fct_spans"] == [D2]
    assert mart_rows(mart_path(warehouse, "fct_spans")) == 4  # 1 + 2 + 1, the noise span left out


def test_a_manifest_without_base_counts_rewrites_every_span_day(tmp_path: Path) -> None:
    """A publication made before the base counts were recorded: nothing to compare with."""
    warehouse = _warehouse(tmp_path)
    publish(warehouse, "a", build="same")
    manifest_path = mart_path(warehouse, "fct_spans").parent / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for day in manifest["tables"]["fct_spans.parquet"]["days"].values():
        del day["source_rows"]
    manifest_path.write_text(json.dumps(manifest))
    again = publish(warehouse, "b", build="same")
    assert set(again.days_written["fct_spans"]) == {D1, D2, D3}
    assert again.days_written["fct_requests"] == []  # counted in the mart, as before


def test_a_mart_row_count_that_disagrees_with_its_file_stops_the_publication(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The written days are reconciled with a count of the mart, not of the base table."""
    import tracehouse.publish as publish_module

    warehouse = _warehouse(tmp_path)
    monkeypatch.setattr(publish_module, "counts_of_days",
                        lambda con, relation, day, days: dict.fromkeys(days, 99))
    with pytest.raises(publish_module.PublishError, match="rows published"):
        publish(warehouse, "a", build="same")
    assert not (warehouse / "marts").exists()  # nothing published


def test_days_written_at_once_equal_days_written_one_by_one(tmp_path: Path) -> None:
    """Concurrent day writes (one cursor each) give the same files, row for row and in order."""
    from tracehouse.publish import _export_days, write_workers

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 3")
    assert write_workers(con) == 3
    con.execute(
        "CREATE TABLE t AS SELECT i, (TIMESTAMPTZ '2026-01-01 00:00:00+00' + i * INTERVAL 7 MINUTE)"
        " AS event_time, repeat('x', i % 50) AS s FROM range(5000) AS r(i)")
    days = set(day_counts(con, "t", "event_time"))
    assert len(days) > 5
    tables = {}
    for workers in (1, 3):
        target = tmp_path / f"w{workers}"
        target.mkdir()
        _export_days(con, "t", "event_time", target, days=days, workers=workers)
        tables[workers] = {p.name: pq.read_table(p) for p in sorted(target.glob("*.parquet"))}
    assert set(tables[1]) == {f"{d}.parquet" for d in days}
    assert tables[1].keys() == tables[3].keys()
    for name, table in tables[1].items():
        assert table.equals(tables[3][name]), name
    assert sum(t.num_rows for t in tables[3].values()) == 5000


Rows = list[tuple[object, ...]]


def _day_rows(warehouse: Path, day: str) -> tuple[Rows, Rows]:
    """(the published file's rows, the mart's rows) of one fct_spans day, sorted."""
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        path = mart_path(warehouse, "fct_spans") / f"{day}.parquet"
        published = con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY ALL").fetchall()
        mart = con.execute("SELECT * FROM marts.fct_spans WHERE event_time::DATE = ?::DATE "
                           "ORDER BY ALL", [day]).fetchall()
        return published, mart
    finally:
        con.close()


def test_a_touched_span_day_keeps_its_untouched_traces_rows_and_takes_the_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tracehouse.publish as publish_module

    merged: list[set[str]] = []
    real = publish_module._merge_days

    def spy(*args: Any, **kwargs: Any) -> None:
        merged.append(set(kwargs["days"]))
        real(*args, **kwargs)

    monkeypatch.setattr(publish_module, "_merge_days", spy)
    warehouse = _warehouse(tmp_path)
    _sql(warehouse, "INSERT INTO staging.base_lake__spans VALUES ('t4', 's7', 'llm', "
                    "TIMESTAMPTZ '2026-01-02 11:00:00+00', TIMESTAMPTZ '2026-01-04 00:00:00+00')")
    publish(warehouse, "a", build="same")
    fresh_schema = pq.read_schema(mart_path(warehouse, "fct_spans") / f"{D2}.parquet")

    # A late span of t2 (day 2): the day is its old file's t4 row plus t2's rows from the mart.
    _sql(warehouse, "INSERT INTO staging.base_lake__spans VALUES ('t2', 's6', 'llm', "
                    "TIMESTAMPTZ '2026-01-02 09:00:00+00', TIMESTAMPTZ '2026-01-05 00:00:00+00')")
    second = publish(warehouse, "b", build="same")
    assert second.days_written["fct_spans"] == [D2]
    assert merged[-1] == {D2}
    published, mart = _day_rows(warehouse, D2)
    assert published == mart and len(mart) == 3
    assert pq.read_schema(mart_path(warehouse, "fct_spans") / f"{D2}.parquet").equals(
        fresh_schema)

    # t4's row deleted with no stamp (an expiry) while a new span of t2 touches the day: the
    # merged file would keep t4, its count disagrees with the mart, the day is written whole.
    _sql(warehouse, "DELETE FROM staging.base_lake__spans WHERE trace_id = 't4'",
         "INSERT INTO staging.base_lake__spans VALUES ('t2', 's8', 'llm', "
         "TIMESTAMPTZ '2026-01-02 09:30:00+00', TIMESTAMPTZ '2026-01-06 00:00:00+00')")
    third = publish(warehouse, "c", build="same")
    assert third.days_written["fct_spans"] == [D2]
    assert merged[-1] == {D2}
    published, mart = _day_rows(warehouse, D2)
    assert published == mart and len(mart) == 3
    assert all(row[0] == "t2" for row in published)
