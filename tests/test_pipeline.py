"""`tracehouse run` end to end on a small generated lake: publish, republish, failure safety."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tracehouse.pipeline import PipelineError, run
from tracehouse.publication import mart_rows
from tracehouse.publish import PUBLISH_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tracehouse.generator import generate

    path = tmp_path_factory.mktemp("pipeline") / "lake"
    generate(path, start=date(2026, 1, 1), days=3, traces_per_day=150, seed=21, progress=False)
    return path


@pytest.fixture(scope="module")
def published(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    warehouse = tmp_path_factory.mktemp("pipeline") / "warehouse"
    run(lake, warehouse, progress=False, echo=lambda _line: None)
    return warehouse


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every Parquet file of a publication, the day files of fct_spans/fct_requests included."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*.parquet")) if p.is_file()}


def test_run_publishes_every_mart_behind_one_link(published: Path) -> None:
    link = published / "marts"
    assert link.is_symlink()
    assert link.resolve().parent == (published / PUBLISH_DIR).resolve()
    names = {p.stem for p in link.glob("*.parquet")}
    assert {"fct_requests", "fct_spans", "metric_daily"} <= names
    con = duckdb.connect(str(published / "tracehouse.duckdb"), read_only=True)
    try:
        in_db = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts'"
            ).fetchall()
        }
        requests = con.execute("SELECT count(*) FROM marts.fct_requests").fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    assert names == in_db | {"runs"}  # the runs record is published with the marts
    assert mart_rows(link / "fct_requests.parquet") == requests > 0
    assert (link / "fct_requests.parquet").is_dir()  # one file per day


def test_a_failed_build_leaves_the_previous_marts_untouched(lake: Path, published: Path) -> None:
    before_target = (published / "marts").resolve()
    before = snapshot(published / "marts")
    # Another process holds the warehouse open for writing (say, a BI tool): dbt cannot build.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(120)",
            str(published / "tracehouse.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        lines: list[str] = []
        with pytest.raises(PipelineError, match="build"):  # (a forced rebuild: not a no-op)
            run(lake, published, lookback_days=3, progress=False, echo=lines.append)
        assert any("FAILED" in line for line in lines)
    finally:
        holder.kill()
        holder.wait()
    assert (published / "marts").resolve() == before_target
    assert snapshot(published / "marts") == before


def test_a_second_run_publishes_a_new_folder_and_keeps_the_last_two(
    lake: Path, published: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracehouse.publication

    monkeypatch.setattr(tracehouse.publication, "GRACE_SECONDS", 0.0)
    first = (published / "marts").resolve()
    # Nothing new: the run skips and the publication stays.
    assert run(lake, published, progress=False, echo=lambda _line: None).skipped
    assert (published / "marts").resolve() == first
    run(lake, published, lookback_days=3, progress=False, echo=lambda _line: None)
    second = (published / "marts").resolve()
    assert second != first
    run(lake, published, lookback_days=3, progress=False, echo=lambda _line: None)
    kept = sorted(p for p in (published / PUBLISH_DIR).iterdir() if p.is_dir())
    assert len(kept) == 2 and second in kept and first not in kept
    # Nothing changed in the lake, so the marts are the same.
    a = pq.read_table(second / "fct_requests.parquet").sort_by("trace_id")
    b = pq.read_table(published / "marts" / "fct_requests.parquet").sort_by("trace_id")
    assert a.equals(b)


def test_run_adopts_a_producers_bad_file_before_building(
    lake: Path, tmp_path: Path
) -> None:
    import shutil

    import pyarrow as pa

    own = tmp_path / "lake"
    shutil.copytree(lake, own)
    source = next((own / "feedback").glob("dt=*/*.parquet"))
    table = pq.read_table(source).slice(0, 5)
    table = table.set_column(
        table.schema.get_field_index("feedback_type"),
        "feedback_type",
        pa.array(["thumbs_down", "nope", "thumbs_up", "copy", "nah"]),
    )
    dropped = own / "feedback" / source.parent.name / "producer-x.parquet"
    pq.write_table(table, dropped)
    lines: list[str] = []
    run(own, tmp_path / "warehouse", progress=False, echo=lines.append)
    assert any("validated 1 new batch file(s): 3 rows accepted, 2 quarantined" in line
               for line in lines)
    quarantined = pq.read_table(
        own / "_quarantine" / "feedback" / source.parent.name / "producer-x.parquet"
    )
    assert quarantined.column("reject_reason").to_pylist() == ["feedback_type not in enum"] * 2


def test_dbt_docs_generate_documents_the_built_marts(lake: Path, published: Path) -> None:
    import json

    from tracehouse.warehouse import dbt_invoke

    result = dbt_invoke(["docs", "generate"], lake=lake, warehouse=published)
    assert result.success, result.failures
    target = published / "_dbt" / "target"
    assert (target / "index.html").is_file()
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    fct = catalog["nodes"]["model.tracehouse.fct_requests"]
    assert {"trace_id", "is_successful_task", "cost_usd"} <= set(fct["columns"])
    documented = manifest["nodes"]["model.tracehouse.fct_requests"]
    assert documented["description"]
    assert documented["columns"]["is_successful_task"]["description"]


def test_the_bench_answers_dashboard_questions_from_the_aggregates_as_the_request_fact_does(
    published: Path,
) -> None:
    """`make bench` times its questions on the aggregate marts: they give the answers the
    published request fact gives (a NULL version is the aggregates' '(none)')."""
    from tracehouse.bench.run_bench import mart_questions
    from tracehouse.publication import mart_glob

    marts = published / "marts"
    requests = mart_glob(marts / "fct_requests.parquet")
    from_fact = {
        "cost_per_successful_task_by_model_week": f"""
            select coalesce(model_name, '(none)'), date_trunc('week', trace_date),
                   sum(cost_usd) / nullif(count(*) filter (where is_successful_task), 0)
            from read_parquet('{requests}') group by all""",
        "retrieval_hit_rate_by_retriever_version": f"""
            select coalesce(retriever_version, '(none)'), avg(is_retrieval_hit::int), count(*)
            from read_parquet('{requests}') where is_retrieval_judged group by all""",
    }
    con = duckdb.connect()
    try:
        questions = mart_questions(marts)
        assert con.execute(questions["p95_latency_by_stage_day"]).fetchall()
        for name, sql in from_fact.items():
            expected = sorted(con.execute(sql).fetchall(), key=str)
            answered = sorted(con.execute(questions[name]).fetchall(), key=str)
            assert expected, name
            assert len(answered) == len(expected), name
            for got, want in zip(answered, expected, strict=True):
                for value, wanted in zip(got, want, strict=True):
                    if isinstance(wanted, float):
                        assert value == pytest.approx(wanted, rel=1e-9), (name, got, want)
                    else:
                        assert value == wanted, (name, got, want)
    finally:
        con.close()
