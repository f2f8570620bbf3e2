"""A build whose nodes ran out of DuckDB's memory or temp disk is retried one node at a time
(tracehouse.warehouse.build, _retry_one_thread).

dbt's threads share one DuckDB database and so one memory limit: on a big lake two heavy nodes
side by side can each get too little and fail where either alone fits (measured on the 30M bench
lake: `int_traces_retrieval_summarized` failed out of memory in one full build and passed alone).
The retry is `dbt retry --threads 1` in a fresh DuckDB instance.

- With a real out-of-memory failure (a memory limit no node fits in) the build runs dbt's retry of
  exactly the failed and skipped nodes, and since the limit is the same the retry fails too: the
  error says out of memory and which nodes, nothing is hidden.
- The merge of the two invocations (counts, failures, the step line) is checked with dbt's
  invocations replaced, so that the retry's success can be made to happen.
- A failure that is not a resource (a failing data test) is not retried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.test_incremental_loads import SEED
from tracehouse import pipeline, warehouse
from tracehouse import runs as runs_log
from tracehouse.warehouse import BuildResult, build, resource_failure

OOM = "Out of Memory Error: could not allocate block of size 256.0 KiB (4.7 GiB/4.7 GiB used)"


@dataclass
class _Node:
    unique_id: str
    resource_type: str = "model"
    test_metadata: Any = None


@dataclass
class _Result:
    node: _Node
    status: str
    message: str = ""


def _result(statuses: dict[str, str], success: bool, message: str = OOM) -> BuildResult:
    results = [_Result(_Node(uid), status, message if status == "error" else "")
               for uid, status in statuses.items()]
    res = warehouse._summarize(results, Path(), "duckdb")
    res.success = success
    return res


def test_resource_failure_recognises_duckdb_memory_and_disk_errors() -> None:
    assert resource_failure(_result({"model.t.a": "error"}, False))
    disk = "IO Error: Could not write file \"x.tmp\": No space left on device"
    assert resource_failure(_result({"model.t.a": "error"}, False, disk))
    assert not resource_failure(_result({"model.t.a": "error"}, False, "Binder Error: no column"))
    mixed = _result({"model.t.a": "error"}, False)
    mixed.failures.append("test.t.b: Got 3 results, configured to fail if != 0")
    assert not resource_failure(mixed)
    assert not resource_failure(BuildResult(success=False))


def test_retry_merges_both_invocations_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []
    first = _result({"model.t.a": "success", "model.t.big": "error", "test.t.big_ok": "skipped"},
                    False)
    second = _result({"model.t.big": "success", "test.t.big_ok": "pass"}, True)

    def fake_invoke(args: list[str], **kwargs: Any) -> BuildResult:
        calls.append((list(args), dict(kwargs.get("extra_env") or {})))
        return first if len(calls) == 1 else second

    monkeypatch.setattr(warehouse, "dbt_invoke", fake_invoke)
    record = runs_log.RunRecord("r1", "2026-12-01T00:00:00+00:00", full_refresh=True)
    line = pipeline.step_build(tmp_path / "lake", tmp_path / "wh", True, False, record)

    assert [c[0] for c in calls] == [["build", "--full-refresh"], ["retry", "--threads", "1"]]
    assert calls[1][1]["TRACEHOUSE_DBT_THREADS"] == "1"
    assert "1 pass, 2 success" in line  # a, big (retried) and big_ok (retried), none lost
    assert "passed when retried one at a time: big" in line
    assert record.models_built == 2


def test_retry_that_fails_again_reports_the_resource_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    results = iter([_result({"model.t.big": "error"}, False), _result({"model.t.big": "error"},
                                                                      False)])
    monkeypatch.setattr(warehouse, "dbt_invoke", lambda args, **kw: next(results))
    record = runs_log.RunRecord("r1", "2026-12-01T00:00:00+00:00", full_refresh=True)
    with pytest.raises(pipeline.PipelineError, match="Out of Memory Error"):
        pipeline.step_build(tmp_path / "lake", tmp_path / "wh", True, False, record)


def test_other_failures_are_not_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_invoke(args: list[str], **kwargs: Any) -> BuildResult:
        calls.append(list(args))
        return _result({"model.t.a": "error"}, False, "Binder Error: column x not found")

    monkeypatch.setattr(warehouse, "dbt_invoke", fake_invoke)
    res = build(tmp_path / "lake", tmp_path / "wh")
    assert not res.success and not res.retried
    assert calls == [["build"]]


@pytest.mark.slow
def test_real_out_of_memory_runs_dbt_retry_of_the_failed_nodes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tracehouse.generator import generate

    lake, wh = tmp_path / "lake", tmp_path / "wh"
    generate(lake, start=date(2026, 1, 1), days=1, traces_per_day=40, seed=SEED, progress=False)
    monkeypatch.setenv("TRACEHOUSE_DUCKDB_MEMORY_LIMIT", "1MB")
    res = build(lake, wh, select="+stg_lake__feedback", exclude="test_type:unit")

    assert not res.success
    assert res.retried, res.failures
    assert all("Out of Memory Error" in f for f in res.failures), res.failures
    # the last invocation was dbt's retry (it records the retried command's arguments, with its
    # own --threads 1) of the nodes the first one failed or skipped, and only those
    run_results = json.loads((wh / "_dbt" / "target" / "run_results.json").read_text())
    assert run_results["args"]["which"] == "build"
    assert run_results["args"]["threads"] == 1
    assert run_results["args"]["select"] == ["+stg_lake__feedback"]
    rerun = {r["unique_id"]: r["status"] for r in run_results["results"]
             if not r["unique_id"].startswith("operation.")}
    assert set(res.retried) <= set(rerun)
    assert set(rerun.values()) <= {"error", "skipped"}
