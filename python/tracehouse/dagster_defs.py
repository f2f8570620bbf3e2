"""A Dagster code location for tracehouse: the pipeline's steps as assets, on an hourly schedule.

Install the extra and start Dagster on it (paths from the usual environment variables)::

    pip install 'tracehouse[dagster]'
    export TRACEHOUSE_LAKE=/data/lake TRACEHOUSE_WAREHOUSE=/data/warehouse
    dagster dev -m tracehouse.dagster_defs

The asset graph is the graph of `tracehouse run`, and each asset calls the same library
function as the step of the same name in :mod:`tracehouse.pipeline` (this module chains
nothing of its own: Dagster orders the assets by their dependencies):

* `lake/spans`, `lake/feedback`, `lake/annotations`: the landing step (validate and register
  producer files), with a freshness asset check per dataset from the lake's ledger: it warns
  when no batch of the dataset landed within `TRACEHOUSE_FRESHNESS_HOURS` (default 24);
* `audit/content_access`: the tier-3 content-access audit log (source of fct_content_access);
* the dbt project, one asset per model and seed, its tests as asset checks (dagster-dbt);
* `change_points` and `alerts`: detection and the alert state;
* `publication`: the mart checks, then the atomic publish; nothing is published when a check
  fails;
* `alert_notifications`: new and escalated alerts to the configured webhooks;
* `regression_report`: the regression notebook as HTML (`W/report.html`).

The schedule `tracehouse_hourly` materializes all of them at minute 0 of every hour; every op
is in the concurrency pool `tracehouse` and every scheduled run carries the tag
`tracehouse=pipeline`, so a deployment caps it at one run at a time (`tag_concurrency_limits:
[{key: tracehouse, limit: 1}]` in the instance's run queue). Every op that writes the lake or the
warehouse also holds the warehouse's run lock (`W/.run.lock`, the one `tracehouse run` takes)
while it works, so an op and a `tracehouse run` from cron never write at once: the op waits up to
`TRACEHOUSE_DAGSTER_LOCK_WAIT_S` seconds (default 600) for a run to finish, then fails with
RunLockedError, and a `tracehouse run` started while an op holds it exits 75. Run one by hand with
`dagster asset materialize -m tracehouse.dagster_defs --select '*'`.
"""


import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets, get_asset_key_for_model

from tracehouse.lake import LEDGER_DIR
from tracehouse.runlock import RunLockedError, run_lock
from tracehouse.warehouse import project_dir

DATASETS = ("spans", "feedback", "annotations")
FRESHNESS_ENV = "TRACEHOUSE_FRESHNESS_HOURS"
#: Every op of the graph shares one concurrency pool: two runs never write the warehouse at once.
CONCURRENCY = {"dagster/concurrency_key": "tracehouse"}
#: Run tag for the instance's run queue (`tag_concurrency_limits: [{key: tracehouse, limit: 1}]`).
RUN_TAGS = {"tracehouse": "pipeline"}
LOCK_WAIT_ENV = "TRACEHOUSE_DAGSTER_LOCK_WAIT_S"


class TracehouseResource(dg.ConfigurableResource):
    """Where the lake and the warehouse are (defaults: TRACEHOUSE_LAKE, TRACEHOUSE_WAREHOUSE)."""

    lake: str
    warehouse: str

    @property
    def lake_path(self) -> Path:
        """The lake folder, absolute."""
        return Path(self.lake).resolve()

    @property
    def warehouse_path(self) -> Path:
        """The warehouse folder, absolute."""
        return Path(self.warehouse).resolve()


def _run_id(context: AssetExecutionContext) -> str:
    return f"dagster-{context.run.run_id[:8]}"


@contextmanager
def warehouse_lock(warehouse: Path, run_id: str, wait_s: float | None = None) -> Iterator[None]:
    """Hold the warehouse's run lock (the one `tracehouse run` takes) for the duration of an op.

    Waits up to ``wait_s`` seconds (default: $TRACEHOUSE_DAGSTER_LOCK_WAIT_S, else 600) for a
    `tracehouse run` that holds it, then raises :class:`RunLockedError`.
    """
    wait = float(os.environ.get(LOCK_WAIT_ENV, "600")) if wait_s is None else wait_s
    deadline = time.monotonic() + wait
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(run_lock(warehouse, run_id, datetime.now(UTC).isoformat()))
                break
            except RunLockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(2.0, max(0.05, deadline - time.monotonic())))
        yield


def _locked(context: AssetExecutionContext, tracehouse: TracehouseResource) -> Any:
    return warehouse_lock(tracehouse.warehouse_path, _run_id(context))


def _dbt_executable() -> str:
    """The `dbt` beside this Python (a venv need not be on PATH), else `dbt` on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.is_file() else "dbt"


def _prepared_project() -> DbtProject:
    """The dbt project with a current `target/manifest.json` (parsed here when missing)."""
    project = DbtProject(project_dir=project_dir(), profiles_dir=project_dir())
    if not project.manifest_path.is_file():
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        env.pop("DBT_TARGET_PATH", None)
        env.setdefault("TRACEHOUSE_WAREHOUSE", str(Path(env.get("TMPDIR", "/tmp"))))
        subprocess.run([_dbt_executable(), "parse", "--quiet"],
                       cwd=project.project_dir, env=env, check=True)
    return project


PROJECT = _prepared_project()


@dg.multi_asset(
    specs=[dg.AssetSpec(["lake", ds], group_name="landing",
                        description=f"The lake's `{ds}` dataset: landed, validated batches.")
           for ds in DATASETS],
    check_specs=[dg.AssetCheckSpec("freshness", asset=["lake", ds],
                                   description="A batch landed within the freshness window.")
                 for ds in DATASETS],
    op_tags=CONCURRENCY,
)
def lake(context: AssetExecutionContext, tracehouse: TracehouseResource) -> Iterator[Any]:
    """Validate and register the batches producers wrote into the lake since the last run."""
    from tracehouse.pipeline import step_land

    with _locked(context, tracehouse):
        summary = step_land(tracehouse.lake_path)
    context.log.info(summary)
    landed = last_landed(tracehouse.lake_path)
    hours = float(os.environ.get(FRESHNESS_ENV, "24"))
    now = datetime.now(UTC)
    for ds in DATASETS:
        yield dg.MaterializeResult(asset_key=["lake", ds], metadata={"land": summary})
        at = landed.get(ds)
        fresh = at is not None and now - at <= timedelta(hours=hours)
        yield dg.AssetCheckResult(
            asset_key=["lake", ds], check_name="freshness", passed=fresh,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"last_landed_at": at.isoformat() if at else "never",
                      "window_hours": hours},
        )


def last_landed(lake_folder: Path) -> dict[str, datetime]:
    """Return when a batch of each dataset last landed (the ledger's newest `written_at`)."""
    import duckdb

    out: dict[str, datetime] = {}
    # Its own connection: a result left on DuckDB's process-wide default connection would
    # break the next `duckdb.sql` anywhere in the process.
    con = duckdb.connect()
    try:
        for ds in DATASETS:
            folder = lake_folder / LEDGER_DIR / ds
            if not any(folder.glob("*.parquet")):
                continue
            rows = con.execute(
                "select max(written_at) from read_parquet(?)", [str(folder / "*.parquet")]
            ).fetchall()
            if rows and rows[0][0] is not None:
                out[ds] = rows[0][0].astimezone(UTC)
    finally:
        con.close()
    return out


@dbt_assets(manifest=PROJECT.manifest_path, project=PROJECT, op_tags=CONCURRENCY)
def tracehouse_dbt_assets(
    context: AssetExecutionContext, dbt: DbtCliResource, tracehouse: TracehouseResource
) -> Iterator[Any]:
    """`dbt build` of the selected models, seeds and tests on the lake into the warehouse."""
    os.environ["TRACEHOUSE_LAKE"] = str(tracehouse.lake_path)
    os.environ["TRACEHOUSE_WAREHOUSE"] = str(tracehouse.warehouse_path)
    tracehouse.warehouse_path.mkdir(parents=True, exist_ok=True)
    with _locked(context, tracehouse):
        yield from dbt.cli(["build"], context=context).stream()


def _model(name: str) -> dg.AssetKey:
    return get_asset_key_for_model([tracehouse_dbt_assets], name)


@dg.multi_asset(
    specs=[
        dg.AssetSpec("change_points", group_name="detection",
                      deps=[_model("metric_daily"), _model("dim_versions")],
                      description="Change points in every metric x segment series."),
        dg.AssetSpec("alerts", group_name="detection", deps=["change_points"],
                     description="The alert state: every alert with its lifecycle."),
    ],
    op_tags=CONCURRENCY,
)
def detection(context: AssetExecutionContext, tracehouse: TracehouseResource) -> Iterator[Any]:
    """Detect changes, attribute them, and merge this run's alerts into the alert state."""
    from tracehouse.pipeline import step_detect

    lines: list[str] = []
    state: list[Any] = []
    with _locked(context, tracehouse):
        summary = step_detect(tracehouse.warehouse_path, _run_id(context), lines, state)
    context.log.info(summary)
    yield dg.MaterializeResult(asset_key="change_points", metadata={"summary": summary})
    yield dg.MaterializeResult(asset_key="alerts", metadata={"raised": len(lines)})


@dg.asset(
    group_name="publication",
    deps=["alerts", *sorted(k for k in tracehouse_dbt_assets.keys if k.path[0] == "marts")],
    op_tags=CONCURRENCY,
)
def publication(context: AssetExecutionContext, tracehouse: TracehouseResource) -> Any:
    """Check the marts, then publish them all atomically (nothing is published on a failure)."""
    from tracehouse.pipeline import RunResult, step_check_marts, step_publish
    from tracehouse.quality import QualityRun

    run_id = _run_id(context)
    with _locked(context, tracehouse):
        quality = QualityRun(tracehouse.lake_path, tracehouse.warehouse_path, run_id)
        checks = step_check_marts(quality)
        result = RunResult(run_id=run_id)
        published = step_publish(tracehouse.warehouse_path, run_id, result)
    context.log.info(f"{checks}; {published}")
    return dg.MaterializeResult(metadata={"checks": checks, "published": published})


@dg.asset(group_name="publication", deps=["publication"], op_tags=CONCURRENCY)
def alert_notifications(
    context: AssetExecutionContext, tracehouse: TracehouseResource
) -> Any:
    """Send new and escalated alerts to the configured destinations (never fails)."""
    from tracehouse.alerting import load_state, notify

    with _locked(context, tracehouse):
        result = notify(tracehouse.warehouse_path, load_state(tracehouse.warehouse_path),
                        _run_id(context))
    context.log.info(result.summary())
    return dg.MaterializeResult(metadata={"summary": result.summary(), "due": result.due,
                                          "sent": len(result.sent)})


@dg.asset(group_name="publication", deps=["publication"])
def regression_report(context: AssetExecutionContext, tracehouse: TracehouseResource) -> Any:
    """The regression notebook on the published marts, as self-contained HTML."""
    from tracehouse.report import build_report

    out = tracehouse.warehouse_path / "report.html"
    result = build_report(tracehouse.warehouse_path, out)
    context.log.info(f"report -> {out}")
    return dg.MaterializeResult(metadata={"path": str(out), "images": result.images})


hourly = dg.ScheduleDefinition(
    name="tracehouse_hourly",
    cron_schedule="0 * * * *",
    target=dg.AssetSelection.all(),
    tags=RUN_TAGS,
)


def resources() -> dict[str, Any]:
    """The resources, from TRACEHOUSE_LAKE / TRACEHOUSE_WAREHOUSE."""
    return {
        "tracehouse": TracehouseResource(lake=dg.EnvVar("TRACEHOUSE_LAKE"),
                                         warehouse=dg.EnvVar("TRACEHOUSE_WAREHOUSE")),
        "dbt": DbtCliResource(project_dir=PROJECT, profiles_dir=str(project_dir()),
                              dbt_executable=_dbt_executable()),
    }


@dg.asset(key=["audit", "content_access"], group_name="landing", op_tags=CONCURRENCY,
          description="The tier-3 content-access audit log (`tracehouse trace --content` "
          "writes it; read by marts.fct_content_access).")
def content_access_audit(tracehouse: TracehouseResource) -> dg.MaterializeResult:
    """Nothing to run: the log is written at read time; report how many reads it holds."""
    from tracehouse.artifacts.audit import audit_root

    files = list(audit_root(tracehouse.lake_path).glob("dt=*/*.parquet"))
    return dg.MaterializeResult(metadata={"audit_files": len(files)})


ASSETS = [lake, content_access_audit, tracehouse_dbt_assets, detection, publication,
          alert_notifications, regression_report]

defs = dg.Definitions(assets=ASSETS, schedules=[hourly], resources=resources())
