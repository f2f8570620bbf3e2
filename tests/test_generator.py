"""The synthetic generator: determinism, appending, contract validity, trace structure, lateness,
duplicates, and every injected incident visible in the raw lake (and absent from a control)."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tracehouse.contract.schemas import SPAN_TYPES
from tracehouse.generator import GeneratorError, generate
from tracehouse.generator.world import (
    MODEL_PRICES,
    TOOL_REQUIREMENTS,
    model_prices_csv,
    tool_requirements_csv,
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


def test_seed_csvs_equal_the_python_tables() -> None:
    assert (ROOT / "seeds" / "model_prices.csv").read_text() == model_prices_csv()
    assert (ROOT / "seeds" / "tool_requirements.csv").read_text() == tool_requirements_csv()
    assert len({p.model_name for p in MODEL_PRICES}) < len(MODEL_PRICES)  # a price change
    assert {r.task_type for r in TOOL_REQUIREMENTS} <= {"support", "billing", "qa",
                                                        "summarization", "extraction"}


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
               r.attributes->>'final_status' AS final_status
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


def _measure(con: duckdb.DuckDBPyConnection, metric: str, segment: str, lo: datetime,
             hi: datetime) -> tuple[float, int]:
    """(value, n) of a contract metric over raw rows of traces starting in [lo, hi)."""
    dim, _, val = segment.partition("=")
    seg = "TRUE" if segment == "all" else f"t.{dim} = '{val}'"
    if dim in ("model_name", "tool_name", "span_type"):
        seg = "TRUE"
    win = f"t.t >= TIMESTAMPTZ '{lo.isoformat()}' AND t.t < TIMESTAMPTZ '{hi.isoformat()}'"
    trace_rate = {
        "thumbs_down_rate": "EXISTS (SELECT 1 FROM feedback f WHERE f.trace_id = t.trace_id "
                            "AND f.feedback_type = 'thumbs_down')",
        "context_truncation_rate": "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = "
                                   "t.trace_id AND s.span_type = 'context_assembly' AND "
                                   "(s.attributes->>'truncated')::BOOL)",
        "guardrail_block_rate": "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id "
                                "AND s.span_type = 'postprocess' AND s.status = 'blocked')",
        "tool_call_rate": "(SELECT has_call FROM tools x WHERE x.trace_id = t.trace_id)",
        "task_success_rate": "t.final_status = 'success' AND NOT EXISTS (SELECT 1 FROM "
                             "feedback f WHERE f.trace_id = t.trace_id AND f.feedback_type IN "
                             "('thumbs_down', 'escalation', 'task_abandoned'))",
    }
    if metric in trace_rate:
        sql = (f"SELECT avg(({trace_rate[metric]})::INT), count(*) FROM traces t "
               f"WHERE {seg} AND {win}")
    elif metric == "model_share":
        sql = (f"SELECT avg((EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND "
               f"s.span_type = 'llm' AND s.model_name = '{val}'))::INT), count(*) FROM traces t "
               f"WHERE {win}")
    elif metric == "required_tool_missing_rate":
        sql = (f"SELECT avg(x.missing::INT), count(*) FROM traces t JOIN tools x USING "
               f"(trace_id) WHERE x.needs AND {seg} AND {win}")
    elif metric == "cost_per_request_usd":
        sql = (f"SELECT avg(c.usd), count(*) FROM traces t JOIN cost c USING (trace_id) "
               f"WHERE {seg} AND {win}")
    elif metric in ("tool_timeout_rate", "tool_error_rate"):
        cond = "s.status = 'timeout'" if metric == "tool_timeout_rate" else "s.status <> 'ok'"
        sql = (f"SELECT avg(({cond})::INT), count(*) FROM spans s JOIN traces t USING "
               f"(trace_id) WHERE s.span_type = 'tool_call' AND s.tool_name = '{val}' AND {win}")
    elif metric == "latency_p95_ms":
        sql = (f"SELECT quantile_cont(s.duration_ms, 0.95), count(*) FROM spans s JOIN traces t "
               f"USING (trace_id) WHERE s.span_type = '{val}' AND {win}")
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
    if metric in ("cost_per_request_usd", "latency_p95_ms"):
        return sign * math.log(a / b) / math.log(1.2)  # >= 1 means at least 20% in the direction
    p = (b * nb + a * na) / (nb + na)
    se = math.sqrt(max(p * (1 - p), 1e-4) * (1 / nb + 1 / na))
    return sign * (a - b) / se / 4  # >= 1 means 4 standard errors in the direction


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
    lake, control, truth = incident_lakes
    results = []
    for path, expect in ((lake, True), (control, False)):
        con = _con(path)
        _traces_sql(con)
        for t in truth:
            start = datetime.fromisoformat(t["start_time"])
            end = datetime.fromisoformat(t["end_time"]) if t["end_time"] else None
            hi = start + timedelta(days=_WINDOW_DAYS)
            if end is not None:
                hi = min(hi, end)
            for metric, direction in t["direction"].items():
                before = _measure(con, metric, t["segment"], start - timedelta(days=_WINDOW_DAYS),
                                  start)
                after = _measure(con, metric, t["segment"], start, hi)
                if metric == "retrieval_hit_rate" and min(before[1], after[1]) < 30:
                    continue  # too few labels yet for a rate test
                score = _moved(metric, direction, before, after)
                results.append((expect, t["name"], metric, before, after, score))
    failures = [r for r in results if (r[0] and r[5] < 1) or (not r[0] and abs(r[5]) >= 1)]
    assert not failures, "\n".join(map(str, failures))
    assert sum(1 for r in results if r[0]) >= 10
