"""`tracehouse run`: land -> build -> check -> detect -> publish, each a function called in order.

This module is the only orchestrator. Each step prints one line with its timing; a step that
fails stops the run before anything is published, so the previous marts stay in place.
"""

from __future__ import annotations

import fcntl
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from tracehouse.lake import adopt_unregistered
from tracehouse.publish import Published, publish
from tracehouse.quality import QualityRun
from tracehouse.warehouse import build

Echo = Callable[[str], None]


class PipelineError(RuntimeError):
    """A step failed; nothing of this run was published."""


@dataclass
class StepResult:
    """One step's outcome: its name, its time and a one-line summary."""

    name: str
    seconds: float
    summary: str
    ok: bool = True


@dataclass
class RunResult:
    """What `run` did, step by step."""

    run_id: str
    steps: list[StepResult] = field(default_factory=list)
    published: Published | None = None

    @property
    def seconds(self) -> float:
        """Total time of all steps."""
        return sum(s.seconds for s in self.steps)


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@contextmanager
def _run_lock(warehouse: Path) -> Iterator[None]:
    warehouse.mkdir(parents=True, exist_ok=True)
    with (warehouse / ".run.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(
                f"another `tracehouse run` is using {warehouse}; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _step(result: RunResult, echo: Echo, name: str, fn: Callable[[], str]) -> None:
    started = time.perf_counter()
    try:
        summary = fn()
    except Exception as exc:
        seconds = time.perf_counter() - started
        result.steps.append(StepResult(name, seconds, str(exc), ok=False))
        echo(f"{name:<10} FAILED after {seconds:6.1f}s: {exc}")
        raise PipelineError(f"step {name!r} failed: {exc}") from exc
    seconds = time.perf_counter() - started
    result.steps.append(StepResult(name, seconds, summary))
    echo(f"{name:<10} {seconds:6.1f}s  {summary}")


def step_land(lake: Path) -> str:
    """Validate the batches that producers wrote straight into the lake since the last run."""
    if not lake.is_dir():
        raise PipelineError(f"no lake folder at {lake}")
    reports = adopt_unregistered(lake)
    if not reports:
        return "no new unregistered batches"
    accepted = sum(r.accepted for r in reports)
    quarantined = sum(r.quarantined for r in reports)
    return (
        f"validated {len(reports)} new batch file(s): {accepted:,} rows accepted, "
        f"{quarantined:,} quarantined"
    )


def step_build(
    lake: Path, warehouse: Path, full_refresh: bool, progress: bool, engine: str = "duckdb"
) -> str:
    """`dbt build` of the whole project; raises with every failing node's message."""
    res = build(lake, warehouse, full_refresh=full_refresh, progress=progress, engine=engine)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(res.counts.items()))
    if not res.success:
        detail = "; ".join(res.failures[:5]) or "dbt reported failure"
        more = f" (+{len(res.failures) - 5} more)" if len(res.failures) > 5 else ""
        raise PipelineError(f"dbt build failed: {detail}{more}")
    mode = "full refresh" if full_refresh else "incremental"
    on = f" on {engine}" if engine != "duckdb" else ""
    return f"dbt build ({mode}{on}): {counts}"


def step_detect(
    warehouse: Path, run_id: str, alert_lines: list[str], alert_state: list[pa.Table]
) -> str:
    """Change points and alerts into the warehouse's marts; see :mod:`tracehouse.detect.job`.

    The `alerts` mart is the alert state across runs (:mod:`tracehouse.alerting.state`): this
    run's alerts merged into the alerts known before, with first raised, last seen and status.
    """
    from tracehouse.alerting import track_alerts
    from tracehouse.detect.alerts import alert_lines as format_alerts
    from tracehouse.detect.job import run_detection
    from tracehouse.warehouse import warehouse_db

    detection = run_detection(warehouse, run_id)
    alert_lines.extend(format_alerts(detection.alerts))
    if detection.skipped_reason is None:
        alert_state.append(track_alerts(warehouse, warehouse_db(warehouse), detection.alerts,
                                        detection.change_points, run_id))
    return detection.summary()


def step_notify(warehouse: Path, run_id: str, alert_state: list[pa.Table]) -> str:
    """Send new and escalated alerts to the configured destinations; never fails the run."""
    from tracehouse.alerting import notify

    if not alert_state:
        return "no alert state this run"
    return notify(warehouse, alert_state[-1], run_id).summary()


def step_check_batches(quality: QualityRun) -> str:
    """Batch-level expectations on the newly landed batches: failures warn, never stop the run."""
    return quality.check_batches()


def step_check_marts(quality: QualityRun) -> str:
    """Mart expectations: a failure raises, so the run stops before anything is published."""
    return quality.check_marts()


def step_publish(warehouse: Path, run_id: str, result: RunResult) -> str:
    """Publish every mart together; see :mod:`tracehouse.publish`."""
    result.published = publish(warehouse, run_id)
    tables = result.published.tables
    return f"{len(tables)} marts -> {warehouse / 'marts'} ({sum(tables.values()):,} rows)"


def run(
    lake: Path | str,
    warehouse: Path | str,
    *,
    full_refresh: bool = False,
    progress: bool = True,
    echo: Echo = print,
    engine: str = "duckdb",
) -> RunResult:
    """Run the pipeline once on ``lake`` into ``warehouse``; return each step's result.

    Raises :class:`PipelineError` when a step fails; the previous publication is then untouched.
    """
    lake, warehouse = Path(lake).resolve(), Path(warehouse).resolve()
    result = RunResult(run_id=new_run_id())
    with _run_lock(warehouse):
        quality = QualityRun(lake, warehouse, result.run_id)
        _step(result, echo, "land", lambda: step_land(lake))
        _step(result, echo, "batches", lambda: step_check_batches(quality))
        _step(result, echo, "build",
              lambda: step_build(lake, warehouse, full_refresh, progress, engine))
        alerts: list[str] = []
        alert_state: list[pa.Table] = []
        _step(result, echo, "detect",
              lambda: step_detect(warehouse, result.run_id, alerts, alert_state))
        try:
            _step(result, echo, "marts", lambda: step_check_marts(quality))
        except PipelineError:
            echo(f"{'quality':<10} {quality.verdict()}")
            raise
        _step(result, echo, "publish", lambda: step_publish(warehouse, result.run_id, result))
        _step(result, echo, "notify", lambda: step_notify(warehouse, result.run_id, alert_state))
    echo(f"{'run':<10} {result.seconds:6.1f}s  run {result.run_id} published")
    echo(f"alerts ({len(alerts)}):" if alerts else "alerts: none")
    for line in alerts:
        echo(f"  {line}")
    echo(f"{'quality':<10} {quality.verdict()}")
    return result
