"""Build the warehouse: `dbt build` via dbt's Python API into ``<warehouse>/tracehouse.duckdb``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracehouse import prewarm as prewarming
from tracehouse.errors import TracehouseError

WAREHOUSE_DB = "tracehouse.duckdb"
MARTS_SCHEMA = "marts"
# The base tables every build stamps with `_loaded_at` (macros/incremental/loaded.sql), by lake
# dataset: what the mart checks and the publication compare with to find what a build touched.
BASE_TABLES = {
    "spans": "staging.base_lake__spans",
    "feedback": "staging.base_lake__feedback",
    "annotations": "staging.base_lake__annotations",
}


# DuckDB's messages when a query ran out of its memory limit or of disk to spill to: a failure of
# the machine's headroom, not of the data or the SQL (see build()).
RESOURCE_ERRORS = (
    "Out of Memory Error",
    "No space left on device",
    "max_temp_directory_size",
)


class WarehouseError(TracehouseError, RuntimeError):
    """dbt could not build the warehouse; the message says which nodes failed and why."""


@dataclass
class BuildResult:
    """The outcome of one dbt invocation."""

    success: bool
    counts: dict[str, int] = field(default_factory=dict)  # status -> nodes
    failures: list[str] = field(default_factory=list)  # "<node>: <message>"
    elapsed_s: float = 0.0
    models_built: int = 0  # model nodes that ran successfully
    tests_failed: int = 0  # data and unit tests that failed or errored
    results: list[Any] = field(default_factory=list)  # dbt's own node results
    # nodes that failed on DuckDB's memory or temp-disk limit and were re-run with one thread
    retried: list[str] = field(default_factory=list)


def resource_failure(result: BuildResult) -> bool:
    """Whether every failure of ``result`` is DuckDB running out of memory or temp disk."""
    return bool(result.failures) and all(
        any(marker in failure for marker in RESOURCE_ERRORS) for failure in result.failures
    )


def _retry_one_thread(
    first: BuildResult,
    *,
    lake: Path | str,
    warehouse: Path | str,
    dbt_vars: dict[str, object] | None,
    progress: bool,
    extra_env: dict[str, str] | None,
) -> BuildResult:
    """``dbt retry`` of the failed and skipped nodes of ``first``, one node at a time.

    All dbt threads share one DuckDB database, so one memory limit and one temp directory: two
    heavy nodes side by side (a full build of a big lake) can each get too little memory and
    fail, or spill until the disk is full, where either alone fits. The retry runs in a fresh
    DuckDB instance with one dbt thread, picking up from dbt's run_results.json (the same
    command, selection and flags); nodes that passed are not run again. The result merges both
    invocations node by node and lists the retried nodes in ``retried``.
    """
    failed = [r.node.unique_id for r in first.results
              if str(r.status) in ("error", "runtime error")]
    retry = dbt_invoke(
        ["retry", "--threads", "1"], lake=lake, warehouse=warehouse, dbt_vars=dbt_vars,
        progress=progress, extra_env={**(extra_env or {}), "TRACEHOUSE_DBT_THREADS": "1"},
    )
    by_node = {r.node.unique_id: r for r in first.results}
    by_node.update({r.node.unique_id: r for r in retry.results})
    merged = _summarize(list(by_node.values()), Path(warehouse), "duckdb")
    merged.success = retry.success
    merged.elapsed_s = first.elapsed_s + retry.elapsed_s
    merged.retried = failed
    if not retry.success and not merged.failures:
        merged.failures = retry.failures or first.failures
    return merged


def project_dir() -> Path:
    """The dbt project folder: $TRACEHOUSE_DBT_PROJECT_DIR, else the checkout this package is in."""
    env = os.environ.get("TRACEHOUSE_DBT_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "dbt_project.yml").is_file():
            return parent
    raise WarehouseError(
        "cannot find the dbt project (dbt_project.yml); set TRACEHOUSE_DBT_PROJECT_DIR"
    )


def warehouse_db(warehouse: Path | str) -> Path:
    """Path of the DuckDB file inside a warehouse folder."""
    return Path(warehouse) / WAREHOUSE_DB


_ENV_LOCK = threading.Lock()

# dbt's log file (<warehouse>/_dbt/logs/dbt.log) level. At `debug` dbt writes every SQL statement
# and timing line (~12 MB per hourly build at 10M spans), which costs a measurable share of its
# per-node overhead (perf); `info` keeps each node's start, result and errors.
# TRACEHOUSE_DBT_LOG_LEVEL=debug brings the statements back (profiling, docs/warehouse.md).
DBT_LOG_LEVEL_ENV = "TRACEHOUSE_DBT_LOG_LEVEL"
DBT_LOG_LEVELS = ("debug", "info", "warn", "error", "none")


def dbt_log_level() -> str:
    """The level of dbt's log file: $TRACEHOUSE_DBT_LOG_LEVEL, else ``info``."""
    level = os.environ.get(DBT_LOG_LEVEL_ENV, "").strip().lower() or "info"
    if level not in DBT_LOG_LEVELS:
        raise WarehouseError(
            f"{DBT_LOG_LEVEL_ENV}={level!r}: expected one of {', '.join(DBT_LOG_LEVELS)}"
        )
    return level


def _import_dbt() -> None:
    try:
        import dbt.adapters.duckdb
        import dbt.cli.main  # noqa: F401
    except Exception:  # the build's own import raises it again, in context
        pass


def prewarm() -> threading.Thread:
    """Import dbt (about 1.2 s) in a daemon thread, once per process; return the thread.

    `tracehouse run` starts it before landing so the import overlaps the batch checks instead of
    opening the build step. Python's import lock makes this safe: the build's own import waits
    for a module another thread is initialising, and an import error surfaces there as usual.
    """
    return prewarming.start("dbt", _import_dbt)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in-process after an invocation.

    Without this the file stays open with dbt's configuration, and the next reader in the same
    process (publishing, checks, a notebook) cannot open it read-only.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    env = DuckDBConnectionManager._ENV
    if env is not None:
        env.close()
    DuckDBConnectionManager.close_all_connections()


def column_check_failures(warehouse: Path | str, node: Any, *, query: bool = True) -> str:
    """The offending columns of a failed ``column_checks`` test (macros/tests/column_checks.sql).

    dbt's own message only counts failing rows ("Got 2 results"); one test checks many columns,
    so the message must say which. Re-runs the test's compiled SQL on the warehouse (it returns
    one row per offending column and check) and returns e.g. ``"status: 3 rows not_null;
    span_type: 1 row accepted_values"``. Where that cannot run (another engine, SQL that no longer
    compiles against the file; ``query=False``) it names the columns the test checks.
    """
    import duckdb

    kwargs = (getattr(node, "test_metadata", None) and node.test_metadata.kwargs) or {}
    checked = [*kwargs.get("not_null", []), *kwargs.get("accepted_values", {})]
    fallback = "columns checked: " + ", ".join(dict.fromkeys(str(c) for c in checked))
    sql = getattr(node, "compiled_code", None)
    db = warehouse_db(warehouse)
    if not query or not sql or not db.exists():
        return fallback
    try:
        con = duckdb.connect(str(db), read_only=True)
        try:
            rows = con.execute(
                f"select column_name, check_name, failing_rows from ({sql}) order by 1, 2"
            ).fetchall()
        finally:
            con.close()
    except duckdb.Error:
        return fallback
    if not rows:
        return fallback
    return "; ".join(f"{c}: {n} row{'s' if n != 1 else ''} {check}" for c, check, n in rows)


def dbt_invoke(
    args: Sequence[str],
    *,
    lake: Path | str,
    warehouse: Path | str,
    dbt_vars: dict[str, object] | None = None,
    quiet: bool = True,
    progress: bool = False,
    engine: str = "duckdb",
    extra_env: dict[str, str] | None = None,
) -> BuildResult:
    """Run one dbt command (e.g. ``["build"]``) on the project with lake and warehouse paths set.

    Paths reach dbt through the environment (``TRACEHOUSE_LAKE``, ``TRACEHOUSE_WAREHOUSE``), the
    same variables a user sets to run ``dbt build`` by hand. ``engine`` picks the profile target
    (see :mod:`tracehouse.engines`).
    """
    import json
    import time

    from dbt.cli.main import dbtRunner

    from tracehouse import engines
    from tracehouse.resources import duckdb_env

    engines.check_engine(engine)
    lake, warehouse = Path(lake).resolve(), Path(warehouse).resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    project = project_dir()
    target_path = warehouse / "_dbt" / "target"
    env = {
        "TRACEHOUSE_LAKE": str(lake),
        "TRACEHOUSE_WAREHOUSE": str(warehouse),
        "DBT_TARGET_PATH": str(target_path),
        "DBT_LOG_PATH": str(warehouse / "_dbt" / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # DuckDB memory limit and threads from the machine (perf), temp files capped by the disk
        **duckdb_env(warehouse=warehouse),
        # off unless the caller turns them on (tracehouse.pipeline.step_build)
        "TRACEHOUSE_TEST_SLICES": "",
        **(extra_env or {}),
    }
    cli_args = [
        *args,
        "--log-level-file",
        dbt_log_level(),
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
    ]
    if engine != "duckdb":
        cli_args += ["--target", engines.dbt_target(engine)]
        dbt_vars = {**engines.dbt_vars(engine, lake, warehouse), **(dbt_vars or {})}
    if dbt_vars:
        cli_args += ["--vars", json.dumps(dbt_vars)]
    if quiet and args and args[0] != "ls":
        # no console logger at all: --quiet alone still formats every event for the console
        cli_args += ["--quiet", "--no-print", "--log-level", "none"]
    started = time.perf_counter()
    callbacks: list[Any] = []  # dbt calls each with an EventMsg
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"dbt {args[0]}", unit=" nodes", leave=False, disable=None)

        def on_event(event: object) -> None:
            if event.info.name == "NodeFinished":  # type: ignore[attr-defined]
                bar.update(1)

        callbacks.append(on_event)
    with _environment(env):
        try:
            res = dbtRunner(callbacks=callbacks).invoke(cli_args)
        finally:
            if engine == "duckdb":
                _release_duckdb()
            if bar is not None:
                bar.close()
    result = _summarize(getattr(res.result, "results", None) or [], warehouse, engine)
    result.success = bool(res.success)
    result.elapsed_s = time.perf_counter() - started
    if res.exception is not None:
        result.failures.insert(0, f"dbt: {res.exception}")
    return result


def _summarize(node_results: Sequence[Any], warehouse: Path, engine: str) -> BuildResult:
    """Counts, failures and built models of dbt's node results (success is the caller's)."""
    result = BuildResult(success=False)
    result.results = list(node_results)
    for r in node_results:
        status = str(r.status)
        result.counts[status] = result.counts.get(status, 0) + 1
        kind = str(getattr(getattr(r, "node", None), "resource_type", ""))
        if kind.endswith("model") and status == "success":
            result.models_built += 1
        if kind.endswith(("test", "unit_test")) and status in ("error", "fail"):
            result.tests_failed += 1
        if status in ("error", "fail", "runtime error"):
            name = getattr(r.node, "unique_id", "?")
            message = (r.message or "").strip()
            metadata = getattr(r.node, "test_metadata", None)
            if status == "fail" and getattr(metadata, "name", None) == "column_checks":
                detail = column_check_failures(warehouse, r.node, query=engine == "duckdb")
                message += f" ({detail})"
            result.failures.append(f"{name}: {message}")
    return result


def build(
    lake: Path | str,
    warehouse: Path | str,
    *,
    full_refresh: bool = False,
    select: str | None = None,
    dbt_vars: dict[str, object] | None = None,
    progress: bool = False,
    engine: str = "duckdb",
    exclude: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> BuildResult:
    """``dbt build`` (seeds, models, tests, unit tests) of the lake into the warehouse.

    ``exclude`` is a dbt node selection to leave out (e.g. ``test_type:unit``); ``extra_env``
    extra environment variables for this invocation (e.g. ``TRACEHOUSE_TEST_SLICES``).

    With ``engine="spark"`` the marts are then loaded into the warehouse's DuckDB file
    (:func:`tracehouse.engines.import_marts`), where checks, detection and publish read them.
    """
    from tracehouse import engines

    args = ["build"]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    engines.prepare(engine, warehouse)
    result = dbt_invoke(
        args, lake=lake, warehouse=warehouse, dbt_vars=dbt_vars, progress=progress, engine=engine,
        extra_env=extra_env,
    )
    if not result.success and engine == "duckdb" and resource_failure(result):
        result = _retry_one_thread(result, lake=lake, warehouse=warehouse, dbt_vars=dbt_vars,
                                   progress=progress, extra_env=extra_env)
    if result.success and engine != "duckdb":
        engines.import_marts(warehouse)
    return result
