"""Operating tracehouse: readers during runs, the run lock, kill -9, the runs record, no-op runs.

One small lake and one warehouse per module; the heavy scenarios are few tests that each walk
through several runs (every real run costs a dbt build).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tracehouse import pipeline, publication
from tracehouse import runs as runs_log
from tracehouse.pipeline import PipelineError, run
from tracehouse.publication import PUBLISH_DIR, mart_rows
from tracehouse.runlock import EXIT_LOCKED

pytestmark = pytest.mark.slow

QUIET = {"progress": False, "echo": lambda _line: None}

READER = r"""
import json, os, sys, time
import duckdb
db, mode, stop, out = sys.argv[1:5]
rows, errors = [], []
held = duckdb.connect(db, read_only=True) if mode == "hold" else None
print("ready", flush=True)
while not os.path.exists(stop):
    try:
        con = held or duckdb.connect(db, read_only=True)
        row = con.execute(
            "SELECT (SELECT max(run_id) FROM runs WHERE status = 'published'), "
            "(SELECT max(run_id) FROM dq_results), (SELECT count(*) FROM fct_requests), "
            "(SELECT count(*) FROM metric_daily)"
        ).fetchone()
        if held is None:
            con.close()
        rows.append(list(row))
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.02)
seen = sorted({tuple(r) for r in rows})
with open(out, "w") as f:
    json.dump({"queries": len(rows), "errors": errors[:5], "n_errors": len(errors),
               "seen": [list(s) for s in seen], "last": rows[-1] if rows else None}, f)
"""


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tracehouse.generator import generate

    path = tmp_path_factory.mktemp("ops") / "lake"
    generate(path, start=date(2026, 1, 1), days=2, traces_per_day=80, seed=5, progress=False)
    return path


@pytest.fixture(scope="module")
def warehouse(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ops") / "warehouse"
    run(lake, path, **QUIET)  # type: ignore[arg-type]
    return path


class Reader:
    """A reader process on W/marts.duckdb: holds one connection, or reconnects every query."""

    def __init__(self, warehouse: Path, mode: str, tmp: Path) -> None:
        self.stop, self.out = tmp / f"stop-{mode}", tmp / f"out-{mode}.json"
        self.stop.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(warehouse / "marts.duckdb"), mode,
             str(self.stop), str(self.out)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def finish(self) -> dict[str, object]:
        time.sleep(0.5)  # a few queries after the last swap
        self.stop.touch()
        self.proc.wait(timeout=60)
        data: dict[str, object] = json.loads(self.out.read_text())
        return data


def _published_run(warehouse: Path) -> str:
    return (warehouse / "marts").resolve().name


def _add_producer_file(lake: Path, name: str) -> int:
    source = next((lake / "feedback").glob("dt=*/*.parquet"))
    table = pq.read_table(source).slice(0, 4)
    ids = [f"{name}-{i}" for i in range(table.num_rows)]
    table = table.set_column(table.schema.get_field_index("feedback_id"), "feedback_id",
                             pa.array(ids))
    pq.write_table(table, lake / "feedback" / source.parent.name / f"{name}.parquet")
    return table.num_rows


def test_readers_see_whole_publications_during_a_run_and_a_failed_run(
    lake: Path, warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _published_run(warehouse)
    first_folder = (warehouse / "marts").resolve()
    # Old folders go as soon as nobody holds them: the held one must survive anyway.
    monkeypatch.setattr(publication, "KEEP_PUBLICATIONS", 1)
    monkeypatch.setattr(publication, "GRACE_SECONDS", 0.0)
    hold, fresh = Reader(warehouse, "hold", tmp_path), Reader(warehouse, "fresh", tmp_path)
    try:
        result = run(lake, warehouse, lookback_days=3, **QUIET)  # type: ignore[arg-type]
        assert result.published is not None
        second = result.run_id
        # A failed run: the mart checks fail after a build; nothing is published.
        monkeypatch.setattr(pipeline, "step_build", lambda *a, **k: "build skipped (test)")

        def failing(_quality: object) -> str:
            raise RuntimeError("planted mart failure")

        monkeypatch.setattr(pipeline, "step_check_marts", failing)
        with pytest.raises(PipelineError, match="planted mart failure"):
            run(lake, warehouse, lookback_days=3, **QUIET)  # type: ignore[arg-type]
    finally:
        held, fresh_seen = hold.finish(), fresh.finish()
    for seen in (held, fresh_seen):
        assert seen["n_errors"] == 0, seen["errors"]
        assert int(seen["queries"]) > 10  # type: ignore[call-overload]
        for runs_id, dq_id, requests, series in seen["seen"]:  # type: ignore[attr-defined]
            assert runs_id == dq_id and requests > 0 and series > 0  # one run across marts
    assert {s[0] for s in held["seen"]} == {first}  # type: ignore[attr-defined]
    assert {s[0] for s in fresh_seen["seen"]} == {first, second}  # type: ignore[attr-defined]
    assert fresh_seen["last"][0] == second  # type: ignore[index]
    assert _published_run(warehouse) == second
    # The folder the holder had open was kept while held, and goes once it is released.
    assert first_folder.is_dir()
    assert first_folder in publication.collect_garbage(warehouse, keep=1, grace_s=0)
    statuses = [r.status for r in runs_log.history(warehouse)]
    assert statuses[-3:] == ["published", "published", "failed"]
    assert "planted mart failure" in (runs_log.history(warehouse)[-1].error or "")


def test_bi_tools_connect_with_sqlalchemy(warehouse: Path) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"duckdb:///{warehouse / 'marts.duckdb'}",
                              connect_args={"read_only": True})
    with engine.connect() as con:
        views = set(sa.inspect(con).get_view_names())
        assert {"fct_requests", "metric_daily", "runs", "change_points"} <= views
        n = con.execute(sa.text("SELECT count(*) FROM marts.fct_requests")).scalar()
        m = con.execute(sa.text("SELECT count(*) FROM fct_requests")).scalar()
    engine.dispose()
    assert n == m == mart_rows(warehouse / "marts" / "fct_requests.parquet") > 0


def test_a_second_run_exits_at_once_with_its_own_code(warehouse: Path, lake: Path) -> None:
    from typer.testing import CliRunner

    from tracehouse.cli import app

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from tracehouse.runlock import run_lock\n"
         "with run_lock(Path(sys.argv[1]), 'holder-run', 'now'):\n"
         "    print('locked', flush=True); time.sleep(120)", str(warehouse)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = len(runs_log.history(warehouse))
        started = time.perf_counter()
        res = CliRunner().invoke(app, ["run", "--lake", str(lake), "--warehouse",
                                       str(warehouse), "--no-progress"])
        assert time.perf_counter() - started < 10
        assert res.exit_code == EXIT_LOCKED
        assert "run holder-run (pid" in res.output and "already running" in res.output
        assert len(runs_log.history(warehouse)) == before  # nothing done, nothing recorded
    finally:
        holder.kill()
        holder.wait()


def test_a_users_own_marts_folder_is_never_touched(lake: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "w"
    (warehouse / "marts").mkdir(parents=True)
    mine = warehouse / "marts" / "mine.parquet"
    mine.write_bytes(b"my own file")
    with pytest.raises(PipelineError, match="real folder"):
        run(lake, warehouse, **QUIET)  # type: ignore[arg-type]
    assert mine.read_bytes() == b"my own file"
    assert runs_log.history(warehouse)[-1].status == "failed"
    assert not (warehouse / "tracehouse.duckdb").exists()  # refused before building


def test_two_runs_sharing_a_lake_adopt_each_producer_file_once(lake: Path,
                                                                tmp_path: Path) -> None:
    own = tmp_path / "lake"
    shutil.copytree(lake, own)
    rows = sum(_add_producer_file(own, f"producer-{i}") for i in range(6))
    script = ("import sys; from pathlib import Path; from tracehouse.pipeline import step_land\n"
              "print(step_land(Path(sys.argv[1])))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(own)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    ledger = pq.read_table(own / "_ledger" / "feedback").to_pylist()
    adopted = [r for r in ledger if r["batch_id"].startswith("producer-")]
    assert len(adopted) == 6 and sum(r["received"] for r in adopted) == rows
    assert sorted(o[0].strip().split(":")[0] for o in outs) == [
        "no new unregistered batches", "validated 6 new batch file(s)"]


def _run_process(lake: Path, warehouse: Path, kill_at: str) -> subprocess.Popen[str]:
    """A `tracehouse run` in a subprocess; ``kill_at`` plants a kill -9 inside publish."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import tracehouse.publish as p, tracehouse.publication as pub\n"
        "from tracehouse.pipeline import run\n"
        "kill_at = sys.argv[3]\n"
        "if kill_at != 'build':  # the build database is intact: save the time of a build\n"
        "    import tracehouse.pipeline as pl\n"
        "    pl.step_build = lambda *a, **k: 'build skipped (test)'\n"
        "if kill_at == 'export':\n"
        "    orig, n = p._export, [0]\n"
        "    def export(*a, **k):\n"
        "        n[0] += 1\n"
        "        if n[0] == 4: os.kill(os.getpid(), signal.SIGKILL)\n"
        "        return orig(*a, **k)\n"
        "    p._export = export\n"
        "if kill_at == 'swap':\n"
        "    def swap(warehouse, folder):\n"
        "        rel = Path(pub.PUBLISH_DIR) / folder.name\n"
        "        tmp = warehouse / f'.{pub.MARTS_DB}.{folder.name}.tmp'\n"
        "        tmp.symlink_to(rel / pub.MARTS_DB)\n"
        "        tmp.replace(warehouse / pub.MARTS_DB)\n"
        "        (warehouse / f'.{pub.MARTS_LINK}.{folder.name}.tmp').symlink_to(rel)\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    p.swap_links = swap\n"
        "run(Path(sys.argv[1]), Path(sys.argv[2]), lookback_days=3, progress=False)\n"
    )
    return subprocess.Popen([sys.executable, "-c", script, str(lake), str(warehouse), kill_at],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _snapshot(warehouse: Path) -> tuple[str, dict[str, bytes]]:
    folder = (warehouse / "marts").resolve()
    return folder.name, {str(p.relative_to(folder)): p.read_bytes()
                         for p in sorted(folder.rglob("*.parquet")) if p.is_file()}


def test_kill_9_mid_build_and_mid_publish_then_the_next_run_recovers(
    lake: Path, warehouse: Path
) -> None:
    own = lake
    before = _snapshot(warehouse)
    # 1. kill -9 in the middle of the dbt build.
    proc = _run_process(own, warehouse, kill_at="build")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        records = runs_log.history(warehouse)
        if records and records[-1].status == "running" and records[-1].steps and \
                records[-1].steps[-1]["step"] == "batches":
            break
        time.sleep(0.2)
    time.sleep(3)  # dbt is building now
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_build = runs_log.history(warehouse)[-1]
    assert killed_build.status == "running"
    assert _snapshot(warehouse) == before  # the publication is the last good run's
    # 2. kill -9 while writing the marts, then 3. between the two link swaps.
    for kill_at in ("export", "swap"):
        proc = _run_process(own, warehouse, kill_at=kill_at)
        out = proc.communicate(timeout=900)[0]
        assert proc.returncode == -signal.SIGKILL, out[-2000:]
        if kill_at == "export":  # a partial folder is left (the next run removes it)
            assert list((warehouse / PUBLISH_DIR).glob(".*.partial"))
            assert _snapshot(warehouse) == before
    # Readers see a whole publication: marts.duckdb moved on, the marts link did not yet.
    con = publication.connect(warehouse)
    try:
        ids = con.execute("SELECT (SELECT max(run_id) FROM runs WHERE status = 'published'), "
                          "(SELECT max(run_id) FROM dq_results)").fetchone()
    finally:
        con.close()
    assert ids is not None and ids[0] == ids[1] != before[0]
    assert _snapshot(warehouse) == before
    assert not list((warehouse / PUBLISH_DIR).glob(".*.partial"))  # cleaned by the swap run
    assert list(warehouse.glob(".marts.*.tmp"))  # the link the swap run did not get to rename
    # 4. The next run recovers by itself: cleans up, records the takeover, publishes.
    added = _add_producer_file(own, "after-the-kill")
    lines: list[str] = []
    result = run(own, warehouse, progress=False, echo=lines.append)
    assert result.published is not None and not result.skipped
    assert not list((warehouse / PUBLISH_DIR).glob(".*.partial"))
    assert not list(warehouse.glob(".marts*.tmp"))
    assert any(line.startswith("recover") and "took over the run lock" in line
               for line in lines)
    by_id = {r.run_id: r for r in runs_log.history(warehouse)}
    assert by_id[killed_build.run_id].status == "killed"
    assert "taken over by run" in (by_id[killed_build.run_id].note or "")
    mine = by_id[result.run_id]
    assert mine.status == "published" and "took over" in (mine.note or "")
    feedback = next(d for d in mine.datasets if d["dataset"] == "feedback")
    assert feedback["landed"] == added
    assert {s["step"] for s in mine.steps} >= {"land", "build", "freshness", "detect",
                                               "marts", "publish"}
    assert mine.models_built and mine.models_built > 10
    # The runs mart shows every run, the killed ones too.
    published_runs = pq.read_table(warehouse / "marts" / "runs.parquet").to_pylist()
    assert {r["run_id"]: r["status"] for r in published_runs}[killed_build.run_id] == "killed"

    # 5. Nothing new: the next run skips everything and says so; the publication stays.
    current = _snapshot(warehouse)[0]
    lines = []
    started = time.perf_counter()
    skipped = run(own, warehouse, progress=False, echo=lines.append)
    assert skipped.skipped and skipped.published is None
    assert time.perf_counter() - started < 10  # well under: no dbt, no checks, no publish
    assert any("nothing new since run" in line and "skipped" in line for line in lines)
    assert _snapshot(warehouse)[0] == current
    assert runs_log.history(warehouse)[-1].status == "skipped"


def test_unchanged_marts_are_hard_linked_from_the_previous_publication(
    lake: Path, warehouse: Path
) -> None:
    before = (warehouse / "marts").resolve()
    result = run(lake, warehouse, lookback_days=3, **QUIET)  # type: ignore[arg-type]
    assert result.published is not None
    after = (warehouse / "marts").resolve()
    assert after != before
    linked = set(result.published.linked)
    assert {"fct_requests", "metric_daily", "dim_versions"} <= linked  # same lake, same marts
    assert "dq_results" in result.published.written  # new check results every run
    for name in linked - {"stg_lake__feedback", "stg_lake__annotations"}:
        old, new = before / f"{name}.parquet", after / f"{name}.parquet"
        if old.is_dir():  # one file per day: every day file is a hard link
            assert result.published.days_written[name] == []
            days = sorted(p.name for p in old.glob("*.parquet"))
            assert days and days == sorted(p.name for p in new.glob("*.parquet"))
            assert all((old / d).samefile(new / d) for d in days)
        elif old.exists():
            assert old.samefile(new)
    assert not (before / "dq_results.parquet").samefile(after / "dq_results.parquet")
    record = runs_log.load(warehouse, result.run_id)
    assert record is not None and record.status == "published"
    assert record.marts_linked == len(linked) and record.marts_written


def test_the_change_check_knows_the_contracts_datasets_and_producer_files(
    tmp_path: Path,
) -> None:
    from tracehouse import changes
    from tracehouse.contract import DATASETS
    from tracehouse.lake import unregistered_files, write_batch

    assert set(changes.DATASET_NAMES) == set(DATASETS)
    lake = tmp_path / "lake"
    schema = DATASETS["feedback"].schema
    (lake / "feedback" / "dt=2026-01-01").mkdir(parents=True)
    before = changes.ledger_fingerprint(lake)
    empty = pa.Table.from_pylist([], schema=schema)
    write_batch(lake, "feedback", empty, source="test", batch_id="b1")
    assert changes.ledger_fingerprint(lake) != before  # a registered batch is news
    pq.write_table(empty, lake / "feedback" / "dt=2026-01-01" / "producer-1.parquet")
    assert changes.producer_files(lake) == len(unregistered_files(lake)) == 1


def test_a_killed_writers_temporary_files_are_removed_when_stale(tmp_path: Path) -> None:
    from tracehouse.pipeline import clean_lake_temporaries

    day = tmp_path / "lake" / "spans" / "dt=2026-01-01"
    day.mkdir(parents=True)
    old, new = day / ".b1.parquet.abc.tmp", day / ".b2.parquet.def.tmp"
    old.write_bytes(b"half a file")
    new.write_bytes(b"being written")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert clean_lake_temporaries(tmp_path / "lake") == 1
    assert not old.exists() and new.exists()  # a live writer's file stays


def test_runs_command_lists_the_record(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tracehouse.cli import app

    warehouse = tmp_path / "w"
    ok = runs_log.RunRecord("20260101T000000000Z-aaaaaa", "2026-01-01T00:00:00+00:00",
                            status="published", seconds=12.5, models_built=40, checks_failed=0,
                            change_points=2, alerts=1,
                            steps=[{"step": "build", "seconds": 10.0, "ok": True,
                                    "summary": "dbt build"}],
                            datasets=[{"dataset": "spans", "landed": 1200, "accepted": 1190,
                                       "quarantined": 10}])
    bad = runs_log.RunRecord("20260101T010000000Z-bbbbbb", "2026-01-01T01:00:00+00:00",
                             status="failed", error="step 'build' failed: boom")
    runs_log.save(warehouse, bad)
    runs_log.save(warehouse, ok)
    res = CliRunner().invoke(app, ["runs", "--warehouse", str(warehouse)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(ok.run_id) and "published" in lines[0] and "build 10.0s" in lines[0]
    assert "spans +1,200 (10 q)" in lines[1] and "change points 2, alerts 1" in lines[1]
    assert any(line.startswith(bad.run_id) and "failed" in line for line in lines)
    assert "boom" in res.output
    as_json = CliRunner().invoke(app, ["runs", "--warehouse", str(warehouse), "--json"])
    assert [json.loads(x)["status"] for x in as_json.output.splitlines()] == ["published",
                                                                                "failed"]
    table = runs_log.as_table(runs_log.history(warehouse))
    assert table.column("status").to_pylist() == ["published", "failed"]
