"""The review -> eval loop: label and promote a trace, export the eval set, import a candidate
run, and compare it with production stage by stage, all through the lake writer and marts."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.test_contract import good_span
from tests.test_quality import _copy, small_warehouse
from tracehouse.cli import app
from tracehouse.contract.schemas import SPANS
from tracehouse.evals.results import ResultsError, result_rows
from tracehouse.lake import lake_status, write_batch
from tracehouse.pipeline import run
from tracehouse.redaction import Redactor
from tracehouse.review.labels import label_trace, promote_trace
from tracehouse.review.lookup import TraceNotFoundError
from tracehouse.review.taxonomy import UnknownCategoryError, load_taxonomy
from tracehouse.review.trace_section import annotation_extras, annotation_head

KEY = "0123456789abcdef0123456789abcdef"
TRACE = "ab" * 16


def _lake_with_one_trace(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    row = good_span(trace_id=TRACE)
    table = pa.Table.from_pylist([row], schema=pa.schema([SPANS.schema.field(n) for n in row]))
    write_batch(lake, "spans", table, source="test")
    return lake


def _annotations(lake: Path) -> list[dict[str, object]]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{lake}/annotations/dt=*/*.parquet') "
                      "ORDER BY annotation_kind").to_arrow_table().to_pylist()


# --- fast: the library, no warehouse ------------------------------------------------------


def test_taxonomy_is_the_seed_and_unknown_codes_list_the_valid_ones(tmp_path: Path) -> None:
    taxonomy = load_taxonomy()
    assert "retrieval_miss" in taxonomy and len(taxonomy) == 13
    lake = _lake_with_one_trace(tmp_path)
    with pytest.raises(UnknownCategoryError) as err:
        label_trace(lake, TRACE, "bad_vibes", Redactor(KEY.encode()), annotator="alice")
    assert "bad_vibes" in str(err.value) and "context_truncation" in str(err.value)
    assert not (lake / "annotations").exists()  # nothing landed


def test_label_and_promote_land_redacted_annotations_for_a_trace_in_the_lake(
    tmp_path: Path,
) -> None:
    lake = _lake_with_one_trace(tmp_path)
    red = Redactor(KEY.encode())
    label = label_trace(lake, TRACE.upper(), "retrieval_miss", red, annotator="alice",
                        note="customer jane@example.com got the old policy")
    promo = promote_trace(lake, TRACE, "refund regression", red, annotator="alice",
                          eval_dataset_id="eval-refunds")
    assert label.found_in == "lake" and label.report.accepted == 1
    assert promo.report.accepted == 1
    labelled, promotion = _annotations(lake)  # ordered by kind: label, promotion
    assert (labelled["annotation_kind"], labelled["failure_category"]) == (
        "label", "retrieval_miss")
    assert labelled["trace_id"] == TRACE
    assert "jane@example.com" not in labelled["note_redacted"]
    assert labelled["annotator_id_hash"] == red.hash_id("alice")
    assert (promotion["annotation_kind"], promotion["eval_dataset_id"],
            promotion["note_redacted"]) == ("promotion", "eval-refunds", "refund regression")
    assert all(r["reconciled"] for r in lake_status(lake).to_pylist())
    # the trace view reads them as what they are
    assert annotation_head(promotion) == "promoted to eval set eval-refunds"
    assert "reason: refund regression" in annotation_extras(promotion)
    assert annotation_head(labelled) == "retrieval_miss"


def test_unknown_or_malformed_traces_are_clear_errors(tmp_path: Path) -> None:
    lake = _lake_with_one_trace(tmp_path)
    red = Redactor(KEY.encode())
    with pytest.raises(TraceNotFoundError, match="no trace"):
        label_trace(lake, "cd" * 16, "retrieval_miss", red, annotator="a")
    with pytest.raises(TraceNotFoundError, match="32 lowercase hex"):
        promote_trace(lake, "nope", "why", red, annotator="a")
    with pytest.raises(ValueError, match="reason"):
        promote_trace(lake, TRACE, "  ", red, annotator="a")


def test_results_map_aliases_and_need_a_run_id() -> None:
    rows, ignored = result_rows(
        [{"example_id": "th-" + TRACE, "scores": {"qa": 0.9, "vibes": 1},
          "stages": {"tool_use": {"pass": False}, "cost": 0.01, "latency": 900,
                     "retrieval": True}, "candidate_versions": {"prompt_version": "v2"}}],
        eval_run_id="B", candidate_versions=["model_name=m2"])
    row = rows[0]
    assert (row["trace_id"], row["eval_run_id"], row["annotation_kind"]) == (
        TRACE, "B", "eval_result")
    assert (row["correctness"], row["tool_use_correct"], row["cost_usd"], row["latency_ms"],
            row["retrieval_hit"]) == (0.9, False, 0.01, 900, True)
    assert row["candidate_versions"] == ["model_name=m2", "prompt_version=v2"]
    assert ignored == ["vibes"]
    with pytest.raises(ResultsError, match="eval_run_id"):
        result_rows([{"trace_id": TRACE, "correctness": 1.0}])


def test_label_command_errors_without_landing(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake_with_one_trace(tmp_path)
    monkeypatch.setenv("TRACEHOUSE_HASH_KEY", KEY)
    monkeypatch.setenv("TRACEHOUSE_ANNOTATOR", "alice")
    runner = CliRunner()
    result = runner.invoke(app, ["label", TRACE, "--category", "nope", "--lake", str(lake)])
    assert result.exit_code == 1 and "valid codes" in result.output
    result = runner.invoke(app, ["label", "cd" * 16, "--category", "wrong_tool",
                                 "--lake", str(lake)])
    assert result.exit_code == 1 and "no trace" in result.output
    assert not (lake / "annotations").exists()


# --- slow: the whole loop on a small warehouse ----------------------------------------------


def _query(warehouse: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(warehouse / "tracehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_review_to_eval_loop_end_to_end(tmp_path_factory: pytest.TempPathFactory,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    lake_src, warehouse_src, _ = small_warehouse(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("review")
    lake, warehouse = _copy(lake_src, tmp / "lake"), _copy(warehouse_src, tmp / "warehouse")
    monkeypatch.setenv("TRACEHOUSE_HASH_KEY", KEY)
    monkeypatch.setenv("TRACEHOUSE_ANNOTATOR", "alice")
    runner = CliRunner()
    trace = _query(warehouse, "SELECT trace_id FROM marts.fct_requests WHERE NOT is_annotated "
                              "AND NOT is_error ORDER BY trace_id LIMIT 1")[0][0]

    # label and promote a trace that nobody had labelled
    result = runner.invoke(app, ["label", trace, "--category", "hallucination_with_context",
                                 "--note", "invented a refund window", "--lake", str(lake),
                                 "--warehouse", str(warehouse)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["promote", trace, "--reason", "refund hallucination",
                                 "--eval-dataset", "eval-refunds", "--lake", str(lake),
                                 "--warehouse", str(warehouse)])
    assert result.exit_code == 0, result.output

    # export the candidates of the published marts; a candidate run B scores them
    out = tmp / "evalset"
    result = runner.invoke(app, ["eval", "export", "--warehouse", str(warehouse),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    examples = [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]
    items = [json.loads(x) for x in
             (out / "langfuse_dataset_items.jsonl").read_text().splitlines()]
    n = len(examples)
    assert n > 10 and len(items) == n
    assert {"input", "expected", "replay_versions", "tools", "production", "feedback",
            "labels", "selection"} <= set(examples[0])
    assert items[0]["sourceTraceId"] == examples[0]["trace_id"]
    assert set(items[0]) == {"id", "datasetName", "input", "expectedOutput", "metadata",
                             "sourceTraceId"}
    results = [
        {"trace_id": e["trace_id"],
         "scores": {"correctness": 1.0},
         "stages": {"tool_use_correct": False, "retrieval_hit": True,
                    "cost_usd": e["production"]["cost_usd"] / 2,
                    "latency_ms": e["production"]["duration_ms"] * 1.5}}
        for e in examples
    ]
    results.append({"trace_id": examples[0]["trace_id"] + "x", "correctness": 0.5})
    results.append({"trace_id": examples[1]["trace_id"], "eval_run_id": "C",
                    "correctness": 1.7})
    results_file = tmp / "results.jsonl"
    results_file.write_text("".join(json.dumps(r) + "\n" for r in results))
    result = runner.invoke(app, ["eval", "import", str(results_file), "--run-id", "B",
                                 "--candidate-version", "prompt_version=support-v99",
                                 "--lake", str(lake)])
    assert result.exit_code == 0, result.output
    assert f"received {n + 2}, accepted {n}, quarantined 2" in result.output
    assert "malformed trace_id" in result.output and "correctness" in result.output
    assert all(r["reconciled"] for r in lake_status(lake).to_pylist())

    run(lake, warehouse, progress=False, echo=lambda _: None)

    # the label and the promotion reached the marts
    assert _query(warehouse, f"SELECT failure_category, eval_dataset_id FROM marts.fct_requests"
                             f" WHERE trace_id = '{trace}'") == [
        ("hallucination_with_context", "eval-refunds")]
    row = _query(warehouse, "SELECT candidate_reasons, promotion_reason, label_note FROM "
                            f"marts.fct_eval_candidates WHERE trace_id = '{trace}'")[0]
    assert row[0][:2] == ["promoted", "failure"]
    assert row[1:] == ("refund hallucination", "invented a refund window")
    human = _query(warehouse, "SELECT sum(trace_count) FROM marts.agg_failure_taxonomy WHERE "
                              "label_source = 'human' AND failure_category = "
                              "'hallucination_with_context'")[0][0]
    assert human >= 1
    shown = runner.invoke(app, ["trace", trace, "--warehouse", str(warehouse), "--width", "160"])
    assert "promoted to eval set eval-refunds; reason: refund hallucination" in shown.output
    assert "hallucination_with_context; note: invented a refund window" in shown.output
    # eval results are not labels: the production quality of the traces is unchanged
    before = _query(warehouse_src, "SELECT count(*) FROM marts.fct_requests "
                                   "WHERE correctness = 1.0")[0][0]
    after = _query(warehouse, "SELECT count(*) FROM marts.fct_requests "
                              "WHERE correctness = 1.0")[0][0]
    assert after == before

    # one query: B halved cost, was slower, and worsened tool use
    verdicts = dict(_query(warehouse, """
        SELECT stage, CASE WHEN sum(improved_count) > sum(worsened_count) THEN 'improved'
                           WHEN sum(improved_count) < sum(worsened_count) THEN 'worsened'
                           ELSE 'unchanged' END
        FROM marts.agg_eval_comparison WHERE eval_run_id = 'B' GROUP BY stage"""))
    assert verdicts["cost"] == "improved" and verdicts["latency"] == "worsened"
    assert verdicts["tool_use"] == "worsened"
    per_example = _query(warehouse, "SELECT count(DISTINCT trace_id), count(*), "
                                    "bool_and(is_known_trace) FROM marts.fct_eval_comparison "
                                    "WHERE eval_run_id = 'B'")[0]
    assert per_example == (n, 7 * n, True)
    versions = _query(warehouse, "SELECT DISTINCT candidate_versions FROM "
                                 "marts.fct_eval_comparison WHERE eval_run_id = 'B'")
    assert versions == [(["prompt_version=support-v99"],)]
    published = pq.read_table(warehouse / "marts" / "agg_eval_comparison.parquet")
    assert published.num_rows > 0

    # a new export has the promotion, with its reason
    out2 = tmp / "evalset2"
    runner.invoke(app, ["eval", "export", "--warehouse", str(warehouse), "--out", str(out2),
                        "--only-dataset", "eval-refunds"])
    promoted = [json.loads(x) for x in (out2 / "examples.jsonl").read_text().splitlines()]
    assert [e["trace_id"] for e in promoted] == [trace]
    assert promoted[0]["selection"]["promotion_reason"] == "refund hallucination"
    assert promoted[0]["labels"]["failure_category"] == "hallucination_with_context"


def test_eval_import_of_a_file_that_is_not_json_lands_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEHOUSE_HASH_KEY", KEY)
    bad = tmp_path / "results.jsonl"
    bad.write_text('{"trace_id": "' + TRACE + '", "correctness": 1}\nnot json\n')
    lake = tmp_path / "lake"
    result = CliRunner().invoke(app, ["eval", "import", str(bad), "--run-id", "B",
                                      "--lake", str(lake)])
    assert result.exit_code == 1 and "not JSON" in result.output
    assert not lake.exists()


def test_eval_export_needs_a_published_warehouse(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "export", "--warehouse", str(tmp_path),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "run `tracehouse run` first" in result.output
