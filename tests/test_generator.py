"""The synthetic generator: determinism, appending, contract validity, trace structure, lateness,
duplicates, and every injected incident visible in the raw lake (and absent from a control)."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tracehouse.contract.schemas import SPAN_TYPES
from tracehouse.generator import GeneratorError, generate
from tracehouse.generator.seeds import (
    MODEL_PRICES_FILE,
    TOOL_REQUIREMENTS_FILE,
    SeedError,
    read_model_prices,
    read_tool_requirements,
)
from tracehouse.generator.world import (
    MODEL_PRICES,
    TOOL_REQUIREMENTS,
)
from tracehouse.lake import lake_status

ROOT = Path(__file__).resolve().parents[1]
START = date(2026, 1, 1)


def _files(lake: Path) -> dict[str, str]:
    return {
        str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*"))
        if p.is_file()
    }


def _con(lake: Path) -> duckdb.DuckDBPyConnection:
    """Views over the lake, one row per id (the latest delivery)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for ds, key in (("spans", "span_id"), ("feedback", "feedback_id"),
                    ("annotations", "annotation_id")):
        con.execute(
            f"CREATE VIEW {ds}_raw AS SELECT * FROM read_parquet('{lake}/{ds}/dt=*/*.parquet')"
        )
        con.execute(
            f"CREATE VIEW {ds} AS SELECT * FROM {ds}_raw "
            f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY ingest_time DESC) = 1"
        )
    return con


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("small") / "lake"
    generate(lake, start=START, days=6, traces_per_day=300, seed=7, progress=False)
    return lake


# ------------------------------------------------------------------------------ determinism


def test_same_arguments_give_a_byte_identical_lake(small: Path, tmp_path: Path) -> None:
    again = tmp_path / "lake"
    generate(again, start=START, days=6, traces_per_day=300, seed=7, progress=False)
    assert _files(again) == _files(small)


def test_appending_equals_generating_in_one_go(small: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    generate(lake, start=START, days=3, traces_per_day=300, seed=7, progress=False)
    generate(lake, start=START + timedelta(days=3), days=3, traces_per_day=300, seed=7,
             progress=False)
    assert _files(lake) == _files(small)


def test_other_seeds_give_other_lakes_and_incident_times(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", start=START, days=1, traces_per_day=50, seed=1, progress=False)
    b = generate(tmp_path / "b", start=START, days=1, traces_per_day=50, seed=2, progress=False)
    assert _files(tmp_path / "a") != _files(tmp_path / "b")
    from tracehouse.generator.world import build_world

    wa, wb = (build_world(s, START, START + timedelta(days=30)) for s in (1, 2))
    assert [i.start_us for i in wa.incidents] != [i.start_us for i in wb.incidents]
    assert a.epoch == b.epoch == START


def test_append_rejects_other_seed_flag_or_range(small: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    generate(lake, start=START, days=1, traces_per_day=50, seed=7, progress=False)
    with pytest.raises(GeneratorError, match="seed"):
        generate(lake, start=START + timedelta(days=1), days=1, traces_per_day=50, seed=8,
                 progress=False)
    with pytest.raises(GeneratorError, match="incidents"):
        generate(lake, start=START + timedelta(days=1), days=1, traces_per_day=50, seed=7,
                 incidents=False, progress=False)
    with pytest.raises(GeneratorError, match="append with --start 2026-01-02"):
        generate(lake, start=START, days=1, traces_per_day=50, seed=7, progress=False)
    state = json.loads((lake / "_generator.json").read_text())
    assert state["seed"] == 7 and state["epoch"] == "2026-01-01" and state["incidents"] is True


# ------------------------------------------------------------------------------ contract


def test_no_rejects_without_bad_rows(small: Path) -> None:
    status = lake_status(small).to_pylist()
    assert status and all(r["reconciled"] for r in status)
    assert sum(r["quarantined"] for r in status) == 0
    assert not (small / "_quarantine").exists()


def test_bad_rows_reach_the_quarantine_with_every_reason(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    report = generate(lake, start=START, days=7, traces_per_day=150, seed=3, bad_rows=0.02,
                      progress=False)
    assert report.quarantined["spans"] > 0 and report.quarantined["feedback"] > 0
    status = lake_status(lake).to_pylist()
    assert all(r["reconciled"] for r in status)
    assert sum(r["received"] for r in status) == sum(report.received.values())
    con = duckdb.connect()
    reasons = set()
    for ds in ("spans", "feedback", "annotations"):
        rows = con.execute(
            f"SELECT DISTINCT unnest(string_split(reject_reason, '; ')) FROM read_parquet("
            f"'{lake}/_quarantine/{ds}/dt=*/*.parquet', union_by_name = true)"
        ).fetchall()
        reasons |= {r[0].split(":")[0] for r in rows}
    expected = {
        "missing required column", "missing required value", "span_type not in enum",
        "status not in enum", "cache_status not in enum", "feedback_type not in enum",
        "source not in enum", "failure_category not in enum", "groundedness outside [0, 1]",
        "unknown schema_version", "malformed trace_id", "malformed span_id",
        "malformed parent_span_id", "end before start", "negative duration",
        "attributes not a JSON object",
    }
    assert expected <= reasons
    assert any(r.startswith("uncastable") for r in reasons)


def test_the_generator_reads_the_dbt_seeds(tmp_path: Path) -> None:
    assert read_model_prices(ROOT / "seeds") == MODEL_PRICES
    assert read_tool_requirements(ROOT / "seeds") == TOOL_REQUIREMENTS
    assert len({p.model_name for p in MODEL_PRICES}) < len(MODEL_PRICES)  # a price change
    assert {r.task_type for r in TOOL_REQUIREMENTS} <= {"support", "billing", "qa",
                                                        "summarization", "extraction"}
    # another seed folder is read as it is: a price changed there is the generator's price
    for name in (MODEL_PRICES_FILE, TOOL_REQUIREMENTS_FILE):
        (tmp_path / name).write_text((ROOT / "seeds" / name).read_text())
    prices = tmp_path / MODEL_PRICES_FILE
    prices.write_text(prices.read_text() + "atlas-small,atlas-ai,2026-06-01,0.5,2,0.05\n")
    cut = [p for p in read_model_prices(tmp_path) if p.effective_from == date(2026, 6, 1)]
    assert [(p.model_name, p.input_usd_per_1m) for p in cut] == [("atlas-small", 0.5)]
    prices.write_text(prices.read_text() + "atlas-small,atlas-ai,not-a-date,1,1,1\n")
    with pytest.raises(SeedError, match="line 8"):
        read_model_prices(tmp_path)
    with pytest.raises(SeedError, match="not found"):
        read_tool_requirements(tmp_path / "missing")


# ------------------------------------------------------------------------------ structure


def test_trace_structure(small: Path) -> None:
    con = _con(small)
    roots = con.execute(
        "SELECT count(*), count(DISTINCT trace_id) FROM spans WHERE parent_span_id IS NULL"
    ).fetchone()
    traces = con.execute("SELECT count(DISTINCT trace_id) FROM spans").fetchone()
    assert roots is not None and traces is not None
    assert roots[0] == roots[1] == traces[0]
    assert con.execute(
        "SELECT count(*) FROM spans WHERE parent_span_id IS NULL AND span_type <> 'request'"
    ).fetchone() == (0,)
    orphans = con.execute(
        "SELECT count(*) FROM spans c LEFT JOIN spans p ON c.parent_span_id = p.span_id "
        "AND c.trace_id = p.trace_id WHERE c.parent_span_id IS NOT NULL AND p.span_id IS NULL"
    ).fetchone()
    # a trace whose root landed after the range end may miss its parent: allow none here
    assert orphans == (0,)
    outside = con.execute(
        "SELECT count(*) FROM spans c JOIN spans r ON c.trace_id = r.trace_id "
        "AND r.parent_span_id IS NULL WHERE c.event_time < r.event_time "
        "OR c.end_time > r.end_time"
    ).fetchone()
    assert outside == (0,)
    types = {r[0] for r in con.execute("SELECT DISTINCT span_type FROM spans").fetchall()}
    assert types == set(SPAN_TYPES)
    ids = con.execute(
        "SELECT bool_and(regexp_full_match(trace_id, '[0-9a-f]{32}') AND "
        "regexp_full_match(span_id, '[0-9a-f]{16}')) FROM spans"
    ).fetchone()
    assert ids == (True,)
    straddle = con.execute(
        "SELECT count(*) FROM spans WHERE span_type = 'request' "
        "AND CAST(event_time AS DATE) <> CAST(end_time AS DATE)"
    ).fetchone()
    assert straddle is not None and straddle[0] >= 1
    # the root's envelope is authoritative; a few children leave it out, as real SDKs do
    share = con.execute(
        "SELECT avg((task_type IS NULL)::INT) FROM spans WHERE parent_span_id IS NOT NULL"
    ).fetchone()
    assert share is not None and 0.005 < share[0] < 0.06


def test_attributes_follow_the_contract(small: Path) -> None:
    from tracehouse.contract.schemas import ATTRIBUTE_KEYS

    con = _con(small)
    for span_type, keys in ATTRIBUTE_KEYS.items():
        row = con.execute(
            "SELECT attributes FROM spans WHERE span_type = ? LIMIT 1", [span_type]
        ).fetchone()
        assert row is not None
        assert list(json.loads(row[0])) == list(keys), span_type
    excluded = con.execute(
        "SELECT attributes->'excluded_chunks'->0 FROM spans WHERE span_type = "
        "'context_assembly' AND json_array_length(attributes->'excluded_chunks') > 0 LIMIT 1"
    ).fetchone()
    assert excluded is not None and set(json.loads(excluded[0])) == {"chunk_id", "reason"}
    costs = con.execute(
        "SELECT count(*) FILTER (WHERE cost_usd_estimate IS NULL), "
        "count(*) FILTER (WHERE cost_usd_estimate IS NOT NULL) FROM spans "
        "WHERE span_type = 'llm'"
    ).fetchone()
    assert costs is not None and costs[0] > 0 and costs[1] > 0
    final = {r[0] for r in con.execute(
        "SELECT DISTINCT attributes->>'final_status' FROM spans WHERE span_type = 'request'"
    ).fetchall()}
    assert {"success", "degraded"} <= final


def test_feedback_and_annotations_arrive_late(small: Path) -> None:
    con = _con(small)
    fb = con.execute(
        "SELECT min(epoch(f.event_time) - epoch(r.end_time)), "
        "max(epoch(f.event_time) - epoch(r.end_time)), "
        "avg((epoch(f.event_time) - epoch(r.end_time) > 86400)::INT) "
        "FROM feedback f JOIN spans r ON f.trace_id = r.trace_id AND r.parent_span_id IS NULL"
    ).fetchone()
    assert fb is not None
    assert fb[0] > 0 and fb[1] <= 7 * 86400 + 60 and fb[2] > 0
    ann = con.execute(
        "SELECT min(epoch(a.label_time) - epoch(r.end_time)) / 86400, "
        "max(epoch(a.label_time) - epoch(r.end_time)) / 86400, count(*) "
        "FROM annotations a JOIN spans r ON a.trace_id = r.trace_id "
        "AND r.parent_span_id IS NULL"
    ).fetchone()
    assert ann is not None and ann[2] > 0 and ann[0] >= 1 and ann[1] <= 14.01
    orphan_fb = con.execute(
        "SELECT count(*) FROM feedback f ANTI JOIN spans r ON f.trace_id = r.trace_id"
    ).fetchone()
    assert orphan_fb == (0,)


def test_about_one_percent_of_rows_are_delivered_twice(small: Path) -> None:
    con = _con(small)
    for ds, key in (("spans", "span_id"), ("feedback", "feedback_id")):
        row = con.execute(
            f"SELECT count(*), count(DISTINCT {key}), "
            f"count(DISTINCT ingest_time::DATE) FROM {ds}_raw"
        ).fetchone()
        assert row is not None
        share = (row[0] - row[1]) / row[1]
        assert 0.004 < share < 0.02, (ds, share)
    later = con.execute(
        "SELECT bool_and(n_ingest = 2) FROM (SELECT span_id, count(DISTINCT ingest_time) AS "
        "n_ingest FROM spans_raw GROUP BY span_id HAVING count(*) > 1)"
    ).fetchone()
    assert later == (True,)


def test_annotations_agree_with_the_trace(small: Path) -> None:
    con = _con(small)
    rows = con.execute(
        """
        WITH ctx AS (
            SELECT trace_id, CAST(attributes->'included_chunk_ids' AS VARCHAR[]) AS inc
            FROM spans WHERE span_type = 'context_assembly'
        ),
        calls AS (
            SELECT trace_id, list(DISTINCT tool_name) AS called FROM spans
            WHERE span_type = 'tool_call' GROUP BY trace_id
        )
        SELECT a.failure_category,
               list_has_any(coalesce(c.inc, []), a.relevant_chunk_ids) AS hit,
               len(list_filter(a.required_tools,
                   lambda t: NOT list_contains(coalesce(k.called, []), t))) > 0 AS missing
        FROM annotations a JOIN ctx c USING (trace_id) LEFT JOIN calls k USING (trace_id)
        WHERE a.relevant_chunk_ids IS NOT NULL
        """
    ).fetchall()
    assert rows
    for category, hit, missing in rows:
        if category in ("retrieval_miss", "context_truncation"):
            assert not hit
        if category is None:  # a good answer had its relevant chunk and its tools
            assert hit and not missing
        if category == "missing_tool_call":
            assert missing


# ------------------------------------------------------------------------------ incidents

_WINDOW_DAYS = 3


def _traces_sql(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TEMP TABLE traces AS
        SELECT r.trace_id, r.event_time AS t, r.task_type, r.route_name,
               r.duration_ms AS dur, r.attributes->>'final_status' AS final_status
        FROM spans r WHERE r.parent_span_id IS NULL
        """
    )
    prices = ", ".join(
        f"('{p.model_name}', TIMESTAMPTZ '{p.effective_from}', {p.input_usd_per_1m}, "
        f"{p.output_usd_per_1m}, {p.cached_input_usd_per_1m})" for p in MODEL_PRICES
    )
    con.execute(
        f"""
        CREATE TEMP TABLE cost AS
        WITH p AS (SELECT * FROM (VALUES {prices}) v(model_name, f, i, o, c)),
        priced AS (
            SELECT s.trace_id, coalesce(s.cost_usd_estimate, (
                SELECT ((s.input_tokens - coalesce((s.attributes->>'cached_tokens')::BIGINT, 0))
                        * p.i + coalesce((s.attributes->>'cached_tokens')::BIGINT, 0) * p.c
                        + s.output_tokens * p.o) / 1e6
                FROM p WHERE p.model_name = s.model_name AND p.f <= s.event_time
                ORDER BY p.f DESC LIMIT 1), 0) AS usd
            FROM spans s
        )
        SELECT trace_id, sum(usd) AS usd FROM priced GROUP BY trace_id
        """
    )
    reqs = ", ".join(f"('{r.task_type}', '{r.intent}', '{r.tool_name}')" for r in TOOL_REQUIREMENTS)
    con.execute(
        f"""
        CREATE TEMP TABLE tools AS
        WITH rules AS (SELECT * FROM (VALUES {reqs}) v(task_type, intent, tool_name)),
        intent AS (SELECT trace_id, attributes->'labels'->>0 AS intent FROM spans
                   WHERE span_type = 'classify'),
        need AS (
            SELECT t.trace_id, list(DISTINCT r.tool_name) AS needed FROM traces t
            JOIN intent i USING (trace_id)
            JOIN rules r ON r.task_type = t.task_type AND r.intent IN ('', i.intent)
            GROUP BY t.trace_id
        ),
        called AS (SELECT trace_id, list(DISTINCT tool_name) AS called FROM spans
                   WHERE span_type = 'tool_call' GROUP BY trace_id)
        SELECT t.trace_id, n.needed IS NOT NULL AS needs,
               c.called IS NOT NULL AS has_call,
               n.needed IS NOT NULL AND len(list_filter(n.needed,
                   lambda x: NOT list_contains(coalesce(c.called, []), x))) > 0 AS missing
        FROM traces t LEFT JOIN need n USING (trace_id) LEFT JOIN called c USING (trace_id)
        """
    )


def _feedback(kind: str) -> str:
    return (f"EXISTS (SELECT 1 FROM feedback f WHERE f.trace_id = t.trace_id "
            f"AND f.feedback_type = '{kind}')")


_SUCCESS = ("t.final_status = 'success' AND NOT EXISTS (SELECT 1 FROM feedback f WHERE "
            "f.trace_id = t.trace_id AND f.feedback_type IN ('thumbs_down', 'escalation', "
            "'task_abandoned'))")
#: Shares of traces, per trace (a boolean SQL expression over the trace `t`).
_TRACE_RATES = {
    "thumbs_down_rate": _feedback("thumbs_down"),
    "thumbs_up_rate": _feedback("thumbs_up"),
    "escalation_rate": _feedback("escalation"),
    "regenerate_rate": _feedback("regenerate"),
    "context_truncation_rate": "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = "
                               "t.trace_id AND s.span_type = 'context_assembly' AND "
                               "(s.attributes->>'truncated')::BOOL)",
    "guardrail_block_rate": "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id "
                            "AND s.span_type = 'postprocess' AND s.status = 'blocked')",
    "tool_call_rate": "(SELECT has_call FROM tools x WHERE x.trace_id = t.trace_id)",
    "task_success_rate": _SUCCESS,
}
#: Measured as a ratio (at least 20% in the direction), not as a share.
_RATIO_METRICS = ("cost_per_request_usd", "cost_usd_total", "cost_per_successful_task_usd",
                  "latency_p50_ms", "latency_p95_ms", "request_count")


def _measure(con: duckdb.DuckDBPyConnection, metric: str, segment: str, lo: datetime,
             hi: datetime) -> tuple[float, int]:
    """(value, n) of a metric over raw rows of traces starting in [lo, hi).

    ``cost_usd_total`` is measured per trace (no incident changes the traffic, so the total
    moves with the cost per request, without the weekly traffic pattern) and ``request_count``
    per day.
    """
    dim, _, val = segment.partition("=")
    seg = "TRUE" if segment == "all" else f"t.{dim} = '{val}'"
    if dim in ("model_name", "tool_name", "span_type"):
        seg = "TRUE"
    win = f"t.t >= TIMESTAMPTZ '{lo.isoformat()}' AND t.t < TIMESTAMPTZ '{hi.isoformat()}'"
    uses_model = (f"EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND "
                  f"s.span_type = 'llm' AND s.model_name = '{val}')")
    if metric in _TRACE_RATES:
        sql = (f"SELECT avg(({_TRACE_RATES[metric]})::INT), count(*) FROM traces t "
               f"WHERE {seg} AND {win}")
    elif metric == "model_share":
        sql = f"SELECT avg(({uses_model})::INT), count(*) FROM traces t WHERE {win}"
    elif metric == "request_count":
        days = (hi - lo).total_seconds() / 86400
        sql = (f"SELECT count(*) / {days}, count(*) FROM traces t WHERE {win} AND "
               + (uses_model if dim == "model_name" else seg))
    elif metric == "required_tool_missing_rate":
        sql = (f"SELECT avg(x.missing::INT), count(*) FROM traces t JOIN tools x USING "
               f"(trace_id) WHERE x.needs AND {seg} AND {win}")
    elif metric in ("cost_per_request_usd", "cost_usd_total"):
        sql = (f"SELECT avg(c.usd), count(*) FROM traces t JOIN cost c USING (trace_id) "
               f"WHERE {seg} AND {win}")
    elif metric == "cost_per_successful_task_usd":
        sql = (f"SELECT sum(c.usd) / sum(({_SUCCESS})::INT), count(*) FROM traces t "
               f"JOIN cost c USING (trace_id) WHERE {seg} AND {win}")
    elif metric in ("tool_timeout_rate", "tool_error_rate"):
        cond = "s.status = 'timeout'" if metric == "tool_timeout_rate" else "s.status <> 'ok'"
        sql = (f"SELECT avg(({cond})::INT), count(*) FROM spans s JOIN traces t USING "
               f"(trace_id) WHERE s.span_type = 'tool_call' AND s.tool_name = '{val}' AND {win}")
    elif metric in ("latency_p50_ms", "latency_p95_ms"):
        q = 0.5 if metric == "latency_p50_ms" else 0.95
        if dim in ("span_type", "tool_name"):
            which = (f"s.span_type = '{val}'" if dim == "span_type"
                     else f"s.span_type = 'tool_call' AND s.tool_name = '{val}'")
            sql = (f"SELECT quantile_cont(s.duration_ms, {q}), count(*) FROM spans s JOIN "
                   f"traces t USING (trace_id) WHERE {which} AND {win}")
        else:  # the root span's duration
            sql = (f"SELECT quantile_cont(t.dur, {q}), count(*) FROM traces t "
                   f"WHERE {seg} AND {win}")
    elif metric == "citation_mismatch_rate":
        sql = (f"SELECT avg(((s.attributes->>'citations_valid')::INT < "
               f"(s.attributes->>'citations_total')::INT)::INT), count(*) FROM spans s JOIN "
               f"traces t USING (trace_id) WHERE s.span_type = 'postprocess' AND "
               f"s.attributes->>'validator_name' = 'citation_check' AND {seg} AND {win}")
    elif metric == "retrieval_hit_rate":
        sql = (f"SELECT avg(list_has_any(CAST(s.attributes->'included_chunk_ids' AS VARCHAR[]), "
               f"a.relevant_chunk_ids)::INT), count(*) FROM annotations a JOIN traces t USING "
               f"(trace_id) JOIN spans s ON s.trace_id = t.trace_id AND s.span_type = "
               f"'context_assembly' WHERE a.relevant_chunk_ids IS NOT NULL AND {seg} AND {win}")
    else:  # pragma: no cover
        raise KeyError(metric)
    row = con.execute(sql).fetchone()
    assert row is not None
    return (float(row[0]) if row[0] is not None else math.nan), int(row[1])


def _moved(metric: str, direction: str, before: tuple[float, int],
           after: tuple[float, int]) -> float:
    """How clearly the metric moved in ``direction``: a z-score for rates, a ratio test else."""
    (b, nb), (a, na) = before, after
    sign = 1 if direction == "up" else -1
    if metric in _RATIO_METRICS:
        # >= 1 means at least 20% in the direction (+1: a count may start from nothing)
        return sign * math.log((a + 1e-9 + (metric == "request_count")) /
                               (b + 1e-9 + (metric == "request_count"))) / math.log(1.2)
    p = (b * nb + a * na) / (nb + na)
    se = math.sqrt(max(p * (1 - p), 1e-4) * (1 / nb + 1 / na))
    return sign * (a - b) / se / 4  # >= 1 means 4 standard errors in the direction


def truth_movements(truth: list[dict]) -> list[tuple[dict, str, str, str, bool]]:
    """(truth row, segment, metric, direction, is a side effect) of every listed movement."""
    out = []
    for t in truth:
        out += [(t, t["segment"], m, d, False) for m, d in t["direction"].items()]
        out += [(t, x["segment"], x["metric"], x["direction"], True)
                for x in t.get("side_effects", [])]
    return out


def _overlap(a: str, b: str) -> bool:
    da, _, va = a.partition("=")
    db, _, vb = b.partition("=")
    return "all" in (a, b) or da != db or va == vb


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _windows(truth: list[dict], row: dict, segment: str, metric: str,
             lake_end: datetime) -> tuple[datetime, datetime, datetime, bool]:
    """(lo, start, hi, concurrent): up to 3 days either side of the incident's start, cut at the
    start or end of any other incident that lists the same metric in an overlapping segment
    (and at the incident's own end), so that the comparison sees this incident begin and no
    other one begin or end; ``concurrent`` if such an incident is active throughout (it may
    mask this one: a trace already served badly cannot be served worse)."""
    start = _time(row["start_time"])
    assert start is not None
    lo, hi = start - timedelta(days=_WINDOW_DAYS), start + timedelta(days=_WINDOW_DAYS)
    hi = min(hi, _time(row["end_time"]) or lake_end, lake_end)
    name = row["name"].split(".")[0]
    others = [t for t, seg, m, _, _ in truth_movements(truth)
              if t["name"].split(".")[0] != name and m == metric and _overlap(seg, segment)]
    for t in others:
        for b in (_time(t["start_time"]), _time(t["end_time"])):
            if b is None:
                continue
            if start < b < hi:
                hi = b
            if lo < b <= start:
                lo = b
    concurrent = any(_time(t["start_time"]) <= start  # type: ignore[operator]
                     and (_time(t["end_time"]) or lake_end) > start for t in others)
    return lo, start, hi, concurrent


def _effect(metric: str, direction: str, lake: tuple[tuple[float, int], tuple[float, int]],
            control: tuple[tuple[float, int], tuple[float, int]]) -> float:
    """How clearly the incident moved the metric in ``direction``: the change before -> after in
    the lake minus the change in the control lake (the same traces without incidents), in
    units where >= 1 is a clear move (10% for ratio metrics, 3 standard errors for shares).

    The two lakes hold the very same traces (same ids, same draws; only the incidents'
    effects differ), so the control's terms carry almost no independent noise: the standard
    error is that of the lake's before/after difference alone."""
    (lb, la), (cb, ca) = lake, control
    sign = 1 if direction == "up" else -1
    if metric in _RATIO_METRICS:
        def log(x: tuple[float, int]) -> float:
            return math.log(x[0] + 1e-9 + (metric == "request_count"))
        return sign * ((log(la) - log(ca)) - (log(lb) - log(cb))) / math.log(1.1)
    p = (lb[0] * lb[1] + la[0] * la[1]) / (lb[1] + la[1])
    se = math.sqrt(max(p * (1 - p), 1e-4) * (1 / lb[1] + 1 / la[1]))
    return sign * ((la[0] - ca[0]) - (lb[0] - cb[0])) / se / 3


MIN_WINDOW = timedelta(hours=18)


def check_movements(lake: Path, control: Path, truth: list[dict],
                    lake_end: datetime) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Measure every truth-listed movement (primary and side effect) in the raw lakes.

    Returns (results, failures, unjudged). A movement fails if the incident lake's change from
    before to after the start, net of the control lake's (the same traces without incidents),
    is not clearly in the listed direction, or if the control lake itself moves clearly.
    Unjudged: another incident moving the metric in an overlapping segment is active across the
    start, windows under 18 h on either side once cut at other incidents' boundaries, or a
    retrieval hit rate with fewer than 30 labels.
    """
    cons = []
    for path in (lake, control):
        con = _con(path)
        _traces_sql(con)
        cons.append(con)
    results, failures, unjudged = [], [], []
    for t, segment, metric, direction, side in truth_movements(truth):
        lo, start, hi, concurrent = _windows(truth, t, segment, metric, lake_end)
        key = (t["name"], segment, metric, "side" if side else "primary")
        if concurrent or hi - start < MIN_WINDOW or start - lo < MIN_WINDOW:
            unjudged.append(key)
            continue
        (lb, la), (cb, ca) = [(_measure(c, metric, segment, lo, start),
                               _measure(c, metric, segment, start, hi)) for c in cons]
        if metric == "retrieval_hit_rate" and min(lb[1], la[1]) < 30:
            unjudged.append(key)
            continue
        effect = _effect(metric, direction, (lb, la), (cb, ca))
        # the control must not move (a count has its weekly pattern, which the difference
        # against the control removes from `effect`)
        still = 0.0 if metric == "request_count" else _moved(metric, direction, cb, ca)
        row = (*key, lb[0], la[0], cb[0], ca[0], round(effect, 2), round(still, 2))
        results.append(row)
        if not effect >= 1 or abs(still) >= 1:
            failures.append(row)
    return results, failures, unjudged


@pytest.fixture(scope="module")
def incident_lakes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    root = tmp_path_factory.mktemp("incidents")
    truth = root / "truth.json"
    kw = {"start": START, "days": 28, "traces_per_day": 700, "seed": 11, "progress": False}
    generate(root / "lake", truth_path=truth, **kw)  # type: ignore[arg-type]
    control = generate(root / "control", incidents=False, **kw)  # type: ignore[arg-type]
    assert control.incidents == []
    return root / "lake", root / "control", json.loads(truth.read_text())


def test_truth_file_lists_every_incident_kind(incident_lakes: tuple[Path, Path, list]) -> None:
    _, _, truth = incident_lakes
    kinds = {t["kind"] for t in truth}
    assert len(kinds) == 7
    for t in truth:
        assert set(t) >= {"name", "start_time", "end_time", "segment", "cause", "metrics",
                          "direction"}
        start = datetime.fromisoformat(t["start_time"])
        assert start.date() >= START + timedelta(days=4)
        assert (t["cause"] is None) == (t["kind"] == "tool_slowdown")
        assert set(t["metrics"]) == set(t["direction"])


def test_each_incident_is_visible_in_raw_data(incident_lakes: tuple[Path, Path, list]) -> None:
    """Every metric and segment the truth lists, side effects included, moves in the raw lake
    in its direction when the incident starts (net of the control lake), and the control lake
    does not move."""
    lake, control, truth = incident_lakes
    lake_end = datetime.combine(START + timedelta(days=28), datetime.min.time(), tzinfo=UTC)
    results, failures, _ = check_movements(lake, control, truth, lake_end)
    assert not failures, "\n".join(map(str, failures))
    assert sum(1 for r in results if r[3] == "primary") >= 8
    assert sum(1 for r in results if r[3] == "side") >= 15
    # every kind has movements judged on their own
    assert {r[0].rsplit("-", 1)[0] for r in results} == {t["kind"] for t in truth}
