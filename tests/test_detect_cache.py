"""The detection cache: a series the last run saw as it is takes that run's change points."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from tests.detect_synthetic import Shift, metric_daily
from tracehouse.detect.changepoint import detect
from tracehouse.detect.job import (
    DetectConfig,
    detect_panel,
    eligible,
    panel_from_table,
    run_detection,
)
from tracehouse.detect.series_cache import SeriesCache, series_key

SHIFTS = (Shift("required_tool_missing_rate", 20, 27, 0.2, route="standard"),
          Shift("citation_mismatch_rate", 12, 42, 0.08))


def _panel(table: pa.Table | None = None):  # type: ignore[no-untyped-def]
    table = table if table is not None else metric_daily(days=42, traffic=2000.0, seed=21,
                                                         shifts=SHIFTS)
    panel = panel_from_table(table, "day")
    return panel, eligible(panel, DetectConfig())


def _rows(changes: list) -> list[tuple]:  # type: ignore[type-arg]
    return [(c.metric, c.segment_key, c.change_at, c.value_before, c.value_after, c.score)
            for c in changes]


def test_a_cache_hit_is_the_cold_result_and_a_changed_series_is_detected_again() -> None:
    panel, mask = _panel()
    cold = detect_panel(panel, mask)
    assert cold  # the shifts are found
    cache = SeriesCache()
    first = detect_panel(panel, mask, series_cache=cache)
    judged = int(mask.sum())
    # series with the same input (in this synthetic data a route and its only model) are
    # detected once
    assert cache.misses == len(cache.used) and cache.misses + cache.hits == judged
    warm = SeriesCache(known=cache.used)
    again = detect_panel(panel, mask, series_cache=warm)
    assert (warm.misses, warm.hits) == (0, judged)
    assert _rows(first) == _rows(again) == _rows(cold)

    # one series changes (a late correction of one day): it alone is detected again
    row = panel.index_of()[("citation_mismatch_rate", "all")]
    panel.value[row, 5] += 0.01
    changed = SeriesCache(known=cache.used)
    out = detect_panel(panel, mask, series_cache=changed)
    assert (changed.misses, changed.hits) == (1, judged - 1)
    assert _rows(out) == _rows(detect_panel(panel, mask))


def test_trailing_missing_points_do_not_change_change_points_or_key() -> None:
    rng = np.random.default_rng(4)
    y = np.concatenate([rng.normal(0.1, 0.01, 30), rng.normal(0.2, 0.01, 30)])
    w = np.full(60, 500.0)
    grown_y = np.concatenate([y, [np.nan, np.nan]])
    grown_w = np.concatenate([w, [0.0, 0.0]])
    assert detect(y, w, 7, penalty=12.0) == detect(grown_y, grown_w, 7, penalty=12.0)
    assert series_key(y, w, 7, 12.0, 0.0) == series_key(grown_y, grown_w, 7, 12.0, 0.0)
    assert series_key(y, w, 7, 12.0, 0.0) != series_key(y, w, 7, 12.5, 0.0)  # other penalty
    assert series_key(y, w, 7, 12.0, 0.0) != series_key(y, w * 2, 7, 12.0, 0.0)


def _warehouse(tmp_path: Path, table: pa.Table) -> Path:
    wh = tmp_path / "warehouse"
    wh.mkdir()
    con = duckdb.connect(str(wh / "tracehouse.duckdb"))
    con.execute("create schema marts")
    con.register("md", table)
    con.execute("create table marts.metric_daily as select * from md")
    con.close()
    return wh


def test_the_job_reuses_the_last_runs_series_and_writes_the_same_tables(tmp_path: Path) -> None:
    table = metric_daily(days=42, traffic=2000.0, seed=21, shifts=SHIFTS)
    wh = _warehouse(tmp_path, table)
    cold = run_detection(wh, "run-1", cached=False)
    first = run_detection(wh, "run-1")
    warm = run_detection(wh, "run-1")
    assert first.cache and not first.cache.startswith("0 series detected")
    assert warm.cache == (f"0 series detected, {warm.series_checked} reused "
                          "(input as already detected)")
    assert warm.cache in warm.summary()
    for result in (first, warm):
        assert result.change_points.equals(cold.change_points)
        assert result.alerts.equals(cold.alerts)
    # a day more of data: the grown series are detected again, the result is a cold run's
    more = metric_daily(days=43, traffic=2000.0, seed=21, shifts=SHIFTS)
    con = duckdb.connect(str(wh / "tracehouse.duckdb"))
    con.register("md", more)
    con.execute("create or replace table marts.metric_daily as select * from md")
    con.close()
    grown = run_detection(wh, "run-2")
    assert grown.cache and not grown.cache.startswith("0 series detected")
    assert grown.change_points.equals(run_detection(wh, "run-2", cached=False).change_points)


def test_evidence_is_read_again_only_when_a_day_of_its_window_changed() -> None:
    from datetime import UTC, datetime, timedelta

    from tracehouse.detect.series_cache import load_evidence

    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.fct_requests as select "
                "timestamptz '2026-01-01 00:00:00+00' + i * interval 1 hour as event_time, "
                "i % 7 as v from range(24 * 30) t(i)")
    window = (timedelta(days=3), timedelta(days=3))
    at = datetime(2026, 1, 10, 12, tzinfo=UTC)
    reads: list[int] = []

    def rank() -> list[str]:
        reads.append(1)
        return ["release_sha=abc first seen 2026-01-10T11:00Z | explains 90%"]

    first = load_evidence(con, window)
    key = first.key("error_rate", "all", at, [[], [], 6])
    causes = first.causes(key, rank)
    warm = load_evidence(con, window)
    warm.known = first.used
    assert warm.causes(warm.key("error_rate", "all", at, [[], [], 6]), rank) == causes
    assert len(reads) == 1 and (warm.hits, warm.misses) == (1, 0)
    # another candidate list or a change outside the window's days: other / same key
    assert warm.key("error_rate", "all", at, [["x"], [], 6]) != key
    con.execute("update marts.fct_requests set v = 99 "
                "where event_time >= timestamptz '2026-01-25 00:00:00+00'")
    assert load_evidence(con, window).key("error_rate", "all", at, [[], [], 6]) == key
    # a late correction inside the window: read again
    con.execute("update marts.fct_requests set v = 98 "
                "where event_time = timestamptz '2026-01-12 05:00:00+00'")
    changed = load_evidence(con, window)
    changed.known = first.used
    changed.causes(changed.key("error_rate", "all", at, [[], [], 6]), rank)
    assert len(reads) == 2 and changed.misses == 1


def _requests(con: duckdb.DuckDBPyConnection, days: int = 42) -> None:
    """A `marts.fct_requests` of a trace every 15 minutes: citation mismatches jump on day 12, when
    release `r2` replaces `r1`; a label column that late annotations rewrite."""
    con.execute("create schema if not exists marts")
    con.execute(
        "create or replace table marts.fct_requests as select "
        "'t' || i as trace_id, "
        "timestamptz '2026-01-01 00:00:00+00' + i * interval 15 minute as event_time, "
        "'qa' as task_type, 'standard' as route_name, "
        "case when i // 96 >= 12 then 'r2' else 'r1' end as release_sha, "
        "(hash(i) % 100 < case when i // 96 >= 12 then 20 else 5 end) as is_citation_mismatch, "
        "true as has_citation_check, (hash(i, 'ok') % 10 < 7) as is_successful_task "
        f"from range({days} * 96) t(i)")


def _versions(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create or replace table marts.dim_versions as select * from (values "
        "('release_sha', 'r1', 'all', timestamptz '2026-01-01 00:00:00+00'), "
        "('release_sha', 'r2', 'all', timestamptz '2026-01-13 00:00:00+00')) "
        "t(version_dimension, version_value, scope_key, first_seen_at)")


def test_evidence_keys_read_the_columns_of_the_window_query_only() -> None:
    from datetime import UTC, datetime

    from tracehouse.detect.attribution import Version
    from tracehouse.detect.evidence import WINDOW_AFTER, WINDOW_BEFORE, window_sql
    from tracehouse.detect.series_cache import load_evidence

    con = duckdb.connect()
    _requests(con)
    at = datetime(2026, 1, 13, tzinfo=UTC)
    r2 = Version("release_sha", "r2", "all", at)
    sql = window_sql("citation_mismatch_rate", "all", at, candidates=[r2],
                     releases={"release_sha": ["r1", "r2"]})

    def key() -> str:
        cache = load_evidence(con, (WINDOW_BEFORE, WINDOW_AFTER))
        columns = cache.columns_of(sql)
        assert columns is not None and "is_successful_task" not in columns
        assert {"event_time", "release_sha", "is_citation_mismatch"} <= set(columns)
        cache.prepare([(at, columns)])
        return cache.key("citation_mismatch_rate", "all", at, [["r2"]], columns=columns)

    first = key()
    # a late label inside the window: a column the query does not read
    con.execute("update marts.fct_requests set is_successful_task = not is_successful_task "
                "where event_time < timestamptz '2026-01-14 00:00:00+00'")
    assert key() == first
    # two traces of one day swap their values: the same column sums, other rows
    (a, b), (c, d) = con.execute(
        "select * from (select trace_id, is_citation_mismatch from marts.fct_requests "
        "where event_time >= timestamptz '2026-01-13 00:00:00+00' "
        "and event_time < timestamptz '2026-01-14 00:00:00+00' order by trace_id) "
        "qualify row_number() over (partition by is_citation_mismatch) = 1").fetchall()
    assert b != d
    con.execute("update marts.fct_requests set is_citation_mismatch = not is_citation_mismatch "
                "where trace_id in (?, ?)", [a, c])
    swapped = key()
    assert swapped != first
    # a trace id twice on a day of the window: the key matches no other key, ever
    con.execute("insert into marts.fct_requests select * from marts.fct_requests "
                "where trace_id = ?", [a])
    assert key() != key()


def test_a_warm_detection_after_an_hour_more_equals_a_cold_one(tmp_path: Path) -> None:
    wh = tmp_path / "warehouse"
    wh.mkdir()
    con = duckdb.connect(str(wh / "tracehouse.duckdb"))
    con.execute("create schema marts")
    con.register("md", metric_daily(days=42, traffic=2000.0, seed=21, shifts=SHIFTS))
    con.execute("create table marts.metric_daily as select * from md")
    _requests(con)
    _versions(con)
    con.close()
    first = run_detection(wh, "run-1")
    assert first.change_points.num_rows and any(
        "release_sha=r2" in c for cs in first.change_points["suspected_causes"].to_pylist()
        for c in cs)
    # the next hour: new traces, late labels on old days, metric_daily's last day grown
    con = duckdb.connect(str(wh / "tracehouse.duckdb"))
    con.execute("update marts.fct_requests set is_successful_task = not is_successful_task "
                "where event_time < timestamptz '2026-01-20 00:00:00+00'")
    con.execute("insert into marts.fct_requests select 'n' || i, "
                "timestamptz '2026-02-12 00:00:00+00' + i * interval 1 minute, 'qa', "
                "'standard', 'r2', false, true, true from range(60) t(i)")
    con.register("more", metric_daily(days=43, traffic=2000.0, seed=21, shifts=SHIFTS))
    con.execute("create or replace table marts.metric_daily as select * from more")
    con.close()
    warm = run_detection(wh, "run-2")
    assert warm.cache and "reused" in warm.cache
    assert not warm.cache.endswith("causes of 0 change(s) read, 0 reused")
    reused = int(warm.cache.split("read, ")[1].split()[0])
    assert reused > 0  # the late labels do not touch what the citation evidence reads
    cold = run_detection(wh, "run-2", cached=False, write=False)
    assert warm.change_points.equals(cold.change_points)
    assert warm.alerts.equals(cold.alerts)
