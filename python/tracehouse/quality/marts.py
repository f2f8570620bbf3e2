"""Mart expectations (policy: fail the run before anything is published).

Suites, each a GX validation of a frame that DuckDB prepares from the warehouse's ``marts``
schema (row-level where the table is small enough to matter row by row, per-day aggregates
otherwise, so the checks stay in seconds on a month of traffic):

- ``marts.fct_requests``: one row per trace (``trace_id`` unique, not null), every trace dated,
  costs >= 0.
- ``marts.calendar``: every day between the first and the last request has requests in
  ``fct_requests`` and a ``request_count`` in ``metric_daily``, and the two counts agree.
- ``marts.metric_daily``: rates (``*_rate``, ``model_share``) within [0, 1], amounts (costs,
  latencies, counts) >= 0, ``n`` >= 0, contract segment keys, grain ``day``.
- ``marts.change_points``: direction ``up``/``down``, a change time, a metric and segment.
- ``marts.<every other mart>``: not empty; per day, every rate-like column (``*_rate``,
  ``*_share``) within [0, 1] and every amount-like column (``*_usd``, ``*_count``, ``*_tokens``,
  ``*_ms``) >= 0.
"""

from __future__ import annotations

import re

import duckdb

from tracehouse.quality.engine import FAIL, WARN, Check, GxSession, SuiteResult
from tracehouse.quality.results import RESULTS_TABLE
from tracehouse.warehouse import MARTS_SCHEMA

CORE_MARTS = ("fct_requests", "metric_daily")
SKIP_MARTS = (RESULTS_TABLE,)  # our own output
ROW_LEVEL_LIMIT = 500_000  # above this many rows a mart is checked on per-day aggregates only

RATE_COLUMN = re.compile(r"(^|_)(rate|share|ratio|fraction)$")
AMOUNT_COLUMN = re.compile(r"(_usd|_count|_tokens|_ms|^n)$")
NOT_AMOUNT = re.compile(r"(offset|delta|change|diff)")
NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "INTEGER", "BIGINT", "SMALLINT",
                 "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")
DAY_COLUMNS = ("trace_date", "period_start", "change_at", "event_time", "label_time",
               "detected_at", "created_at")
SEGMENT_KEY_PATTERN = r"^(?:all|[a-z_]+=[^|]+(?:\|[a-z_]+=[^|]+)*)$"
# Marts that may legitimately be empty (no change detected, nothing to alert, no candidates).
MAY_BE_EMPTY = ("alerts", "change_points", "fct_eval_candidates",
                # no candidate eval run imported yet (`tracehouse eval import`)
                "fct_eval_comparison", "agg_eval_comparison",
                # no tier-2 content read yet (the audit of `tracehouse trace --content`)
                "fct_content_access")


def _between(column: str, lo: float | None, hi: float | None, why: str) -> Check:
    kwargs: dict[str, object] = {"column": column}
    if lo is not None:
        kwargs["min_value"] = lo
    if hi is not None:
        kwargs["max_value"] = hi
    return Check("ExpectColumnValuesToBeBetween", kwargs, why)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [MARTS_SCHEMA, table],
    ).fetchall()
    return dict(rows)


def _is_numeric(dtype: str) -> bool:
    return dtype.upper().split("(")[0] in NUMERIC_TYPES


def rate_columns(columns: dict[str, str]) -> list[str]:
    """Numeric columns whose name says they are a share of something: they must be in [0, 1]."""
    return [c for c, t in columns.items() if _is_numeric(t) and RATE_COLUMN.search(c)]


def amount_columns(columns: dict[str, str]) -> list[str]:
    """Numeric columns whose name says they are a cost, count, token count or duration: >= 0."""
    return [
        c for c, t in columns.items()
        if _is_numeric(t) and AMOUNT_COLUMN.search(c) and not NOT_AMOUNT.search(c)
    ]


def _day_expr(columns: dict[str, str]) -> str:
    for name in DAY_COLUMNS:
        if name in columns:
            return f'strftime(CAST("{name}" AS DATE), \'%Y-%m-%d\')'
    return "'all'"


def _day_filter(columns: dict[str, str], days: list[str] | None) -> str:
    """A WHERE clause keeping the rows of ``days`` (None: every row; a table without a day
    column is always checked whole)."""
    if days is None:
        return ""
    for name in DAY_COLUMNS:
        if name in columns:
            listed = ", ".join(f"DATE '{d}'" for d in days) or "NULL"
            return f'WHERE CAST("{name}" AS DATE) IN ({listed})'
    return ""


def _generic(
    con: duckdb.DuckDBPyConnection, table: str, session: GxSession,
    days: list[str] | None = None,
) -> SuiteResult:
    """Per-day minimum and maximum of the mart's rate and amount columns, validated (on the
    given days only, plus one whole-table row that keeps the not-empty check)."""
    columns = _columns(con, table)
    rates, amounts = rate_columns(columns), amount_columns(columns)
    selects = [f"{_day_expr(columns)} AS day", "count(*)::BIGINT AS rows"]
    checks = [] if table in MAY_BE_EMPTY else [
        _between("rows", 1, None,
                 "A published mart is never empty: an empty one means an upstream join lost rows."),
    ]
    for c in rates:
        selects += [f'min("{c}")::DOUBLE AS "min_{c}"', f'max("{c}")::DOUBLE AS "max_{c}"']
        checks += [
            _between(f"min_{c}", 0, None, f"{c} is a share: never below 0."),
            _between(f"max_{c}", None, 1, f"{c} is a share: never above 1."),
        ]
    for c in amounts:
        if c in rates:
            continue
        selects.append(f'min("{c}")::DOUBLE AS "min_{c}"')
        checks.append(_between(f"min_{c}", 0, None, f"{c} is a cost, count or duration: >= 0."))
    relation = f'"{MARTS_SCHEMA}"."{table}"'
    total = ", ".join(["'(table)' AS day", "count(*)::BIGINT AS rows",
                       *[f"NULL::DOUBLE AS {sel.rsplit(' AS ', 1)[1]}" for sel in selects[2:]]])
    frame = con.execute(
        f"SELECT * FROM (SELECT {', '.join(selects)} FROM {relation} "
        f"{_day_filter(columns, days)} GROUP BY ALL) "
        f"UNION ALL SELECT {total} FROM {relation} ORDER BY 1"
    ).df()
    return session.validate(f"marts.{table}", frame, checks, stage="mart", target=table,
                            severity=FAIL, index_column="day")


def _fct_requests_table(con: duckdb.DuckDBPyConnection, session: GxSession) -> SuiteResult:
    """Whole-table invariants of fct_requests, cheap at any size: rows, one row per trace."""
    frame = con.execute(
        f"""
        SELECT 'fct_requests' AS mart, count(*)::BIGINT AS rows,
               (count(*) - count(DISTINCT trace_id))::BIGINT AS duplicate_trace_ids,
               count(*) FILTER (WHERE trace_id IS NULL)::BIGINT AS null_trace_ids,
               count(*) FILTER (WHERE trace_date IS NULL)::BIGINT AS undated_traces
        FROM "{MARTS_SCHEMA}".fct_requests
        """
    ).df()
    checks = [
        _between("rows", 1, None, "The warehouse has requests."),
        _between("duplicate_trace_ids", 0, 0,
                 "One row per trace: a duplicate double-counts every metric."),
        _between("null_trace_ids", 0, 0, "Every request is a trace."),
        _between("undated_traces", 0, 0,
                 "Every trace belongs to a day (its root span's event time)."),
    ]
    return session.validate("marts.fct_requests.table", frame, checks, stage="mart",
                            target="fct_requests", severity=FAIL, index_column="mart")


def _fct_requests(
    con: duckdb.DuckDBPyConnection, session: GxSession, days: list[str] | None = None,
    traces: str | None = None,
) -> SuiteResult:
    """Row-level checks of fct_requests: on every row, or on the ``days`` given; with
    ``traces`` (a table of trace ids: the traces the build rewrote) on those rows only (every
    other row of those days is as a passed check saw it; uniqueness across the whole table is
    the table suite's)."""
    columns = _columns(con, "fct_requests")
    rates, amounts = rate_columns(columns), amount_columns(columns)
    wanted = ["trace_id", "trace_date", *[c for c in (*rates, *amounts) if c not in
                                          ("trace_id", "trace_date")]]
    wanted = list(dict.fromkeys(c for c in wanted if c in columns))
    where = _day_filter(columns, days)
    n = con.execute(f'SELECT count(*) FROM "{MARTS_SCHEMA}".fct_requests {where}').fetchone()[0]  # type: ignore[index]
    if n > ROW_LEVEL_LIMIT:
        return _generic(con, "fct_requests", session, days)
    if days is not None and traces is not None and where:
        where += f" AND trace_id IN (SELECT trace_id FROM {traces})"
    frame = con.execute(
        f'SELECT {", ".join(chr(34) + c + chr(34) for c in wanted)} '
        f'FROM "{MARTS_SCHEMA}".fct_requests {where}'
    ).df()
    if "trace_date" in frame:
        frame["trace_date"] = frame["trace_date"].astype("string")
    checks = [] if days is not None else [
        Check("ExpectTableRowCountToBeBetween", {"min_value": 1},
              "The warehouse has requests."),
    ]
    checks += [
        Check("ExpectColumnValuesToNotBeNull", {"column": "trace_id"},
              "Every request is a trace."),
        Check("ExpectColumnValuesToBeUnique", {"column": "trace_id"},
              "One row per trace: a duplicate double-counts every metric."),
        Check("ExpectColumnValuesToNotBeNull", {"column": "trace_date"},
              "Every trace belongs to a day (its root span's event time)."),
    ]
    checks += [_between(c, 0, 1, f"{c} is a share: within [0, 1].") for c in rates]
    checks += [_between(c, 0, None, f"{c} is a cost, count or duration: >= 0.")
               for c in amounts if c not in rates]
    return session.validate("marts.fct_requests", frame, checks, stage="mart",
                            target="fct_requests", severity=FAIL, index_column="trace_id")


def _calendar(con: duckdb.DuckDBPyConnection, session: GxSession) -> SuiteResult:
    frame = con.execute(
        f"""
        WITH requests AS (
            SELECT CAST(trace_date AS DATE) AS day, count(*) AS requests
            FROM "{MARTS_SCHEMA}".fct_requests WHERE trace_date IS NOT NULL GROUP BY 1
        ),
        metric AS (
            SELECT CAST(period_start AS DATE) AS day, sum(value) AS metric_request_count
            FROM "{MARTS_SCHEMA}".metric_daily
            WHERE metric = 'request_count' AND segment_key = 'all' AND grain = 'day'
            GROUP BY 1
        ),
        days AS (
            SELECT CAST(d AS DATE) AS day
            FROM (SELECT min(day) AS lo, max(day) AS hi FROM requests),
                 generate_series(lo, hi, INTERVAL 1 DAY) AS g(d)
        )
        SELECT strftime(day, '%Y-%m-%d') AS day,
               coalesce(requests, 0)::DOUBLE AS requests,
               metric_request_count::DOUBLE AS metric_request_count
        FROM days LEFT JOIN requests USING (day) LEFT JOIN metric USING (day)
        ORDER BY day
        """
    ).df()
    checks = [
        _between("requests", 1, None,
                 "Every day between the first and the last request has requests in fct_requests."),
        Check("ExpectColumnValuesToNotBeNull", {"column": "metric_request_count"},
              "Every day has a request_count in metric_daily."),
        Check("ExpectColumnPairValuesToBeEqual",
              {"column_A": "requests", "column_B": "metric_request_count"},
              "metric_daily's request_count (segment all) equals the rows of fct_requests."),
    ]
    return session.validate("marts.calendar", frame, checks, stage="mart",
                            target="fct_requests+metric_daily", severity=FAIL, index_column="day")


def _metric_series(con: duckdb.DuckDBPyConnection, table: str, grain: str,
                   session: GxSession, days: list[str] | None = None) -> SuiteResult:
    where = _day_filter({"period_start": "TIMESTAMP WITH TIME ZONE"}, days)
    n = con.execute(f'SELECT count(*) FROM "{MARTS_SCHEMA}"."{table}" {where}').fetchone()[0]  # type: ignore[index]
    rate = "(metric LIKE '%\\_rate' ESCAPE '\\' OR metric LIKE '%\\_share' ESCAPE '\\')"
    derived = f"""
        CASE WHEN {rate} THEN value END AS rate_value,
        CASE WHEN NOT {rate} THEN value END AS amount_value
    """
    if n <= ROW_LEVEL_LIMIT:
        frame = con.execute(
            f"""
            SELECT metric || ' | ' || segment_key || ' | ' ||
                       strftime(period_start, '%Y-%m-%dT%H:%M') AS key,
                   metric, grain, segment_key, period_start IS NULL AS no_period,
                   value, n::DOUBLE AS n, {derived}
            FROM "{MARTS_SCHEMA}"."{table}" {where}
            """
        ).df()
        checks = [] if days is not None else [
            Check("ExpectTableRowCountToBeBetween", {"min_value": 1}, "The series exist."),
        ]
        checks += [
            Check("ExpectColumnValuesToNotBeNull", {"column": "metric"},
                  "Every row names its metric."),
            Check("ExpectColumnValuesToBeInSet", {"column": "grain", "value_set": [grain]},
                  f"{table} holds {grain} periods only."),
            Check("ExpectColumnValuesToBeInSet", {"column": "no_period", "value_set": [False]},
                  "Every row has a period."),
            Check("ExpectColumnValuesToMatchRegex",
                  {"column": "segment_key", "regex": SEGMENT_KEY_PATTERN},
                  "segment_key is 'all' or dim=value pairs joined by '|'."),
            _between("rate_value", 0, 1, "Rates and shares lie within [0, 1]."),
            _between("amount_value", 0, None, "Counts, costs, latencies and scores are >= 0."),
            _between("n", 0, None, "The denominator count is >= 0."),
        ]
        return session.validate(f"marts.{table}", frame, checks, stage="mart", target=table,
                                severity=FAIL, index_column="key")
    frame = con.execute(
        f"""
        SELECT metric, count(*)::BIGINT AS rows, min(rate_value) AS min_rate_value,
               max(rate_value) AS max_rate_value, min(amount_value) AS min_amount_value,
               min(n)::DOUBLE AS min_n, count(*) FILTER (WHERE grain <> '{grain}') AS wrong_grain
        FROM (SELECT metric, grain, n, {derived} FROM "{MARTS_SCHEMA}"."{table}" {where})
        GROUP BY metric ORDER BY metric
        """
    ).df()
    checks = [] if days is not None else [
        Check("ExpectTableRowCountToBeBetween", {"min_value": 1}, "The series exist."),
    ]
    checks += [
        _between("min_rate_value", 0, None, "Rates and shares are >= 0."),
        _between("max_rate_value", None, 1, "Rates and shares are <= 1."),
        _between("min_amount_value", 0, None, "Counts, costs, latencies and scores are >= 0."),
        _between("min_n", 0, None, "The denominator count is >= 0."),
        _between("wrong_grain", 0, 0, f"{table} holds {grain} periods only."),
    ]
    return session.validate(f"marts.{table}", frame, checks, stage="mart", target=table,
                            severity=FAIL, index_column="metric")


def _change_points(con: duckdb.DuckDBPyConnection, session: GxSession) -> SuiteResult:
    frame = con.execute(
        f"""
        SELECT metric || ' | ' || segment_key || ' | ' || coalesce(CAST(change_at AS VARCHAR), '?')
                   AS key,
               metric, segment_key, change_at IS NULL AS no_change_at, direction
        FROM "{MARTS_SCHEMA}".change_points
        """
    ).df()
    checks = [
        Check("ExpectColumnValuesToNotBeNull", {"column": "metric"}, "A change names its metric."),
        Check("ExpectColumnValuesToNotBeNull", {"column": "segment_key"},
              "A change names its segment."),
        Check("ExpectColumnValuesToBeInSet", {"column": "no_change_at", "value_set": [False]},
              "A change says when the new regime starts."),
        Check("ExpectColumnValuesToBeInSet", {"column": "direction", "value_set": ["up", "down"]},
              "direction is up or down."),
    ]
    return session.validate("marts.change_points", frame, checks, stage="mart",
                            target="change_points", severity=FAIL, index_column="key")


def mart_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables of the ``marts`` schema that have suites (all but our own results)."""
    return [
        r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name",
            [MARTS_SCHEMA],
        ).fetchall()
        if r[0] not in SKIP_MARTS
    ]


def _not_rechecked(suite: str, target: str, run_id: str) -> SuiteResult:
    return SuiteResult(suite, "mart", target, FAIL, rows=0,
                       note=f"unchanged since the passed check of run {run_id}: not re-checked")


def check_marts(
    con: duckdb.DuckDBPyConnection, session: GxSession, days: list[str] | None = None,
    unchanged: dict[str, str] | None = None, traces: str | None = None,
) -> list[SuiteResult]:
    """Validate every table of the ``marts`` schema; one suite result per suite.

    ``days`` (YYYY-MM-DD; from :func:`tracehouse.quality.touched.touched_days`) narrows the
    row-level and per-day checks to the days the build rewrote; whole-table invariants (not
    empty, one row per trace, the calendar of fct_requests against metric_daily) always run.
    None checks every day. ``traces`` (a table of the trace ids the build rewrote, see
    :func:`tracehouse.quality.touched.touched_days`) narrows the row-level checks of
    ``fct_requests`` further, to those traces.

    A core mart (``fct_requests``, ``metric_daily``) that does not exist yields a warning-level
    result with a note, not a failure: dbt fails the build when a model cannot be built.

    ``unchanged`` (mart -> run id; :func:`tracehouse.quality.touched.unchanged_marts`) names the
    marts whose content a passed check already saw: their suites are not run again and their
    results carry a note saying so (the calendar suite when both of its marts are unchanged).
    """
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    tables = mart_tables(con)
    unchanged = unchanged or {}
    results: list[SuiteResult] = []
    for core in CORE_MARTS:
        if core not in tables:
            results.append(SuiteResult(f"marts.{core}", "mart", core, WARN, rows=0,
                                       note=f"mart {core} is not built: not checked"))
    for table in tables:
        if table in unchanged:
            suites = (["marts.fct_requests", "marts.fct_requests.table"]
                      if table == "fct_requests" else [f"marts.{table}"])
            results += [_not_rechecked(suite, table, unchanged[table]) for suite in suites]
        elif table == "fct_requests":
            results.append(_fct_requests(con, session, days, traces))
            results.append(_fct_requests_table(con, session))
        elif table == "metric_daily":
            results.append(_metric_series(con, table, "day", session, days))
        elif table == "metric_hourly":
            results.append(_metric_series(con, table, "hour", session, days))
        elif table == "change_points":
            results.append(_change_points(con, session))
        else:
            results.append(_generic(con, table, session, days))
    if "fct_requests" in tables and "metric_daily" in tables:
        if {"fct_requests", "metric_daily"} <= unchanged.keys():
            results.append(_not_rechecked("marts.calendar", "fct_requests+metric_daily",
                                          unchanged["fct_requests"]))
        else:
            results.append(_calendar(con, session))
    return results

