"""Span-grain reads of an incremental run carry the days of the spans they need, and stay exact.

A run reads the spans of the traces new spans touched (and the base dedup the stored copies of
the landed span ids) only on the UTC days those traces' spans lie on (macros/incremental/
span_days.sql): the days of the new spans, and the traces' `span_dates` in int_traces_stamped.
Built on one small lake, incrementally through three awkward batches, then compared row for row
with a full refresh of the same lake:

- a late span for a trace whose other spans are two days earlier (the rollups must still read
  the early spans: the day comes from int_traces_stamped);
- a redelivered, older copy of a stored span that says it started two days earlier (the base
  dedup must still find the stored copy, which wins, on its own day);
- a newer copy of a stored span dated a day earlier (the delete of the stored copy must look on
  the stored copy's day);
- then two runs with int_traces_stamped left out, so that it lags the other models (they must
  fall back to reading every day), the second with a late span for a trace whose span of the
  first is not in the lagging span_dates.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.warehouse_tables import assert_built
from tracehouse.lake import write_batch
from tracehouse.warehouse import dbt_invoke, warehouse_db

from .warehouse_tables import assert_same_rows, warehouse_table

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS, TRACES_PER_DAY, SEED = 4, 15, 5
SELECT = "+fct_requests +fct_spans"
QUICK = ["--resource-type", "model", "--resource-type", "seed"]
COMPARED = [
    "staging.base_lake__spans",
    "intermediate.int_spans_priced",
    "intermediate.int_traces_enveloped",
    "intermediate.int_traces_stamped",
    "intermediate.int_traces_stage_timed",
    "intermediate.int_traces_retrieval_summarized",
    "intermediate.int_traces_llm_summarized",
    "intermediate.int_traces_tools_summarized",
    "intermediate.int_traces_validated",
    "marts.fct_requests",
    "marts.fct_spans",
]
DAYS_NOTE = "the days of the spans of the traces touched"
LAG_NOTE = "int_traces_stamped lags this model"


def _spans(lake: Path) -> pa.Table:
    return pa.concat_tables(
        [pq.read_table(p) for p in sorted((lake / "spans").glob("dt=*/*.parquet"))],
        promote_options="default",
    )


def _trace_on_day(spans: pa.Table, day: date, skip: set[str]) -> str:
    """A trace all of whose spans started on ``day``."""
    days = pc.cast(spans.column("event_time"), pa.date32())
    con = duckdb.connect()
    try:
        con.register("s", pa.table({"trace_id": spans.column("trace_id"), "day": days}))
        rows = con.execute(
            "select trace_id from s group by trace_id having min(day) = ? and max(day) = ? "
            "order by trace_id", [day, day]).fetchall()
    finally:
        con.close()
    return next(r[0] for r in rows if r[0] not in skip)


def _late_span(spans: pa.Table, trace_id: str, event_time: datetime, span_id: str) -> pa.Table:
    """A new leaf span of ``trace_id`` (a copy of one of its spans) starting at ``event_time``."""
    of_trace = spans.filter(pc.and_(pc.equal(spans.column("trace_id"), trace_id),
                                    pc.is_valid(spans.column("parent_span_id"))))
    row = of_trace.slice(0, 1).to_pylist()[0]
    duration = row["end_time"] - row["event_time"] if row["end_time"] is not None else None
    row.update(span_id=span_id, event_time=event_time,
               end_time=event_time + duration if duration is not None else None,
               ingest_time=event_time + timedelta(hours=1))
    return pa.Table.from_pylist([row], schema=spans.schema)


def _compiled(warehouse: Path, model: str, kind: str = "compiled") -> str:
    paths = list((warehouse / "_dbt" / "target" / kind).rglob(f"{model}.sql"))
    assert paths, f"no compiled {model}"
    return paths[0].read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    from tracehouse.generator import generate

    patch = pytest.MonkeyPatch()
    patch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    root = tmp_path_factory.mktemp("span_days")
    lake, inc, full = root / "lake", root / "inc", root / "full"
    generate(lake, start=START, days=DAYS, traces_per_day=TRACES_PER_DAY, seed=SEED,
             progress=False)

    def build(warehouse: Path, *extra: str) -> None:
        assert_built(dbt_invoke(["build", "--select", SELECT, *QUICK, *extra], lake=lake,
                                warehouse=warehouse))

    spans = _spans(lake)
    day1, day4 = START, START + timedelta(days=3)
    early = _trace_on_day(spans, day1, set())
    lagged = _trace_on_day(spans, day1, {early})
    moved = _trace_on_day(spans, day4, {early, lagged})
    bumped = _trace_on_day(spans, START + timedelta(days=2), {early, lagged, moved})
    out: dict[str, object] = {"early": early, "lagged": lagged, "moved": moved}
    build(inc)

    # 1. a late span of `early` on day 2; an older copy of a span of `moved` (day 4) dated day 1
    late = _late_span(spans, early, datetime(2026, 1, 2, 12, tzinfo=UTC), "a" * 16)
    stored = spans.filter(pc.equal(spans.column("trace_id"), moved)).slice(0, 1).to_pylist()[0]
    older = dict(stored, event_time=stored["event_time"] - timedelta(days=3),
                 end_time=(stored["end_time"] - timedelta(days=3)
                           if stored["end_time"] is not None else None),
                 ingest_time=stored["ingest_time"] - timedelta(days=3, seconds=1))
    out["moved_span"] = stored["span_id"]
    batch = pa.concat_tables([late, pa.Table.from_pylist([older], schema=spans.schema)])
    write_batch(lake, "spans", batch, source="test", batch_id="late-one",
                ingest_time=datetime(2026, 1, 5, tzinfo=UTC))
    build(inc)
    out["enveloped_1"] = _compiled(inc, "int_traces_enveloped")
    out["base_1"] = _compiled(inc, "base_lake__spans")

    # 2. a newer copy of a span of `bumped` (day 3) dated day 2: the delete of the stored copy
    # must look on day 3 too
    of_bumped = spans.filter(pc.and_(pc.equal(spans.column("trace_id"), bumped),
                                     pc.is_valid(spans.column("parent_span_id"))))
    first = of_bumped.slice(0, 1).to_pylist()[0]
    newer = dict(first, event_time=first["event_time"] - timedelta(days=1),
                 end_time=(first["end_time"] - timedelta(days=1)
                           if first["end_time"] is not None else None),
                 ingest_time=datetime(2026, 1, 5, 0, 30, tzinfo=UTC),
                 duration_ms=(first["duration_ms"] or 0) + 1)
    out["bumped_span"] = first["span_id"]
    write_batch(lake, "spans", pa.Table.from_pylist([newer], schema=spans.schema),
                source="test", batch_id="bump", ingest_time=datetime(2026, 1, 5, 0, 30, tzinfo=UTC))
    build(inc)
    out["base_delete_2"] = _compiled(inc, "base_lake__spans", "run")

    # 3. int_traces_stamped left out twice: a span of `lagged` on day 2, then one on day 3
    write_batch(lake, "spans", _late_span(spans, lagged, datetime(2026, 1, 2, 6, tzinfo=UTC),
                                          "b" * 16),
                source="test", batch_id="late-two", ingest_time=datetime(2026, 1, 5, 1, tzinfo=UTC))
    build(inc, "--exclude", "int_traces_stamped")
    write_batch(lake, "spans", _late_span(spans, lagged, datetime(2026, 1, 3, 6, tzinfo=UTC),
                                          "c" * 16),
                source="test", batch_id="late-three",
                ingest_time=datetime(2026, 1, 5, 2, tzinfo=UTC))
    build(inc, "--exclude", "int_traces_stamped")
    out["enveloped_3"] = _compiled(inc, "int_traces_enveloped")
    build(inc)
    build(full, "--full-refresh")
    patch.undo()
    yield {"inc": inc, "full": full, **out}


def _starts(sql: str) -> list[str]:
    """The days the compiled day ranges start on."""
    marker = "event_time >= cast('"
    return sorted({part[:10] for part in sql.split(marker)[1:]})


def test_runs_read_only_the_days_of_the_traces_touched(runs: dict[str, object]) -> None:
    """The first late batch compiled day ranges (int_traces_stamped in sync). The rollups read
    days 1-2: day 1 holds `early`'s other spans, known only from int_traces_stamped. The base
    dedup reads day 4 as well: the stored copy of `moved`'s span, whose older copy says day 1."""
    enveloped, base = runs["enveloped_1"], runs["base_1"]
    assert isinstance(enveloped, str) and isinstance(base, str)
    assert DAYS_NOTE in enveloped and "the days of the landed spans" in base
    # int_traces_stamped was built first (a ref): only its rows stamped since were looked up
    assert "(rows stamped since)" in enveloped
    assert _starts(enveloped) == ["2026-01-01"]
    assert "event_time < cast('2026-01-03 00:00:00+00'" in enveloped
    assert _starts(base) == ["2026-01-01", "2026-01-04"]


def test_the_delete_of_a_replaced_copy_looks_on_its_day(runs: dict[str, object]) -> None:
    """The newer copy (day 2) replaces the stored one (day 3): the base table's delete reads
    day 2 (the copy written) and day 3 (its trace's span_dates), nothing else; one copy left."""
    sql = runs["base_delete_2"]
    assert isinstance(sql, str) and "delete from" in sql
    assert _starts(sql) == ["2026-01-02"]
    assert "event_time < cast('2026-01-04 00:00:00+00'" in sql
    con = duckdb.connect(str(warehouse_db(runs["inc"])), read_only=True)  # type: ignore[arg-type]
    try:
        ((count, day),) = con.execute(
            "select count(*), min(cast(event_time as date)) from staging.base_lake__spans "
            "where span_id = ?", [runs["bumped_span"]]).fetchall()
    finally:
        con.close()
    assert count == 1 and day == START + timedelta(days=1)


def test_a_lagging_int_traces_stamped_means_no_day_predicate(runs: dict[str, object]) -> None:
    sql = runs["enveloped_3"]
    assert isinstance(sql, str)
    assert LAG_NOTE in sql and DAYS_NOTE not in sql


def test_late_spans_are_rolled_up_with_every_earlier_span(runs: dict[str, object]) -> None:
    con = duckdb.connect(str(warehouse_db(runs["inc"])), read_only=True)  # type: ignore[arg-type]
    try:
        for trace, added in ((runs["early"], 1), (runs["lagged"], 2)):
            (spans,) = con.execute(
                "select count(*) from staging.base_lake__spans where trace_id = ?",
                [trace]).fetchall()[0]
            (days,) = con.execute(
                "select span_dates from intermediate.int_traces_stamped where trace_id = ?",
                [trace]).fetchall()[0]
            assert len(days) == 1 + added and spans > added
            (priced,) = con.execute(
                "select count(*) from intermediate.int_spans_priced where trace_id = ?",
                [trace]).fetchall()[0]
            assert priced == spans
        # the older copy of `moved`'s span lost to the stored one: still on its own day
        ((count, day),) = con.execute(
            "select count(*), min(cast(event_time as date)) from staging.base_lake__spans "
            "where span_id = ?", [runs["moved_span"]]).fetchall()
        assert count == 1 and day == START + timedelta(days=3)
    finally:
        con.close()


def test_incremental_equals_full_refresh_row_for_row(runs: dict[str, object]) -> None:
    for table in COMPARED:
        assert_same_rows(warehouse_table(runs["inc"], table),  # type: ignore[arg-type]
                         warehouse_table(runs["full"], table), table)  # type: ignore[arg-type]
