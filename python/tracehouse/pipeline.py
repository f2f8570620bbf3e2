"""`tracehouse run`: land -> checks -> build -> freshness -> detect -> checks -> publish.

This module is the only orchestrator. Each step prints one line with its timing; a step that
fails stops the run before anything is published, so the previous publication stays in place.

A run holds the warehouse's run lock (:mod:`tracehouse.runlock`): a second run exits at once
with :data:`~tracehouse.runlock.EXIT_LOCKED`. It starts by cleaning what a killed run left
(partial publication folders, temporary links and records) and records itself in
``<warehouse>/_runs/`` (:mod:`tracehouse.runs`), whatever its outcome. When the lake's ledger,
the producer files, the dbt project and tracehouse's code are all as the last good run saw
them, the run skips build, checks, detection and publication and says so.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracehouse import runs as runs_log
from tracehouse.errors import TracehouseError
from tracehouse.publication import PublicationError, check_links, clean_leftovers, current_folder
from tracehouse.runlock import (
    EXIT_LOCKED,
    LAKE_WAIT_S,
    RunLockedError,
    lake_files_lock,
    lake_lock,
    run_lock,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from tracehouse.publish import DaysAhead, Published
    from tracehouse.quality import QualityRun

Echo = Callable[[str], None]

__all__ = ["EXIT_LOCKED", "PipelineError", "RunLockedError", "RunResult", "new_run_id", "run"]


class PipelineError(TracehouseError, RuntimeError):
    """A step failed; nothing of this run was published."""

    hint = "The previously published marts are unchanged."


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
    skipped: bool = False
    record: runs_log.RunRecord | None = None
    detection: Any = None  # the detect step's DetectionResult (tracehouse.detect.job)

    @property
    def seconds(self) -> float:
        """Total time of all steps."""
        return sum(s.seconds for s in self.steps)


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id."""
    now = now or datetime.now(UTC)
    # Milliseconds: two runs in one second (a skipped one is that quick) still sort in order.
    return f"{now.strftime('%Y%m%dT%H%M%S')}{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


class _Run:
    """One run's state: the result, its record, and how to run and record a step."""

    def __init__(self, lake: Path, warehouse: Path, echo: Echo, full_refresh: bool) -> None:
        self.lake, self.warehouse, self.echo = lake, warehouse, echo
        started = datetime.now(UTC)
        self.result = RunResult(run_id=new_run_id(started))
        self.record = runs_log.RunRecord(self.result.run_id, started.isoformat(),
                                         full_refresh=full_refresh)
        self.result.record = self.record

    def step(self, name: str, fn: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            summary = fn()
        except Exception as exc:
            seconds = time.perf_counter() - started
            self._add(StepResult(name, seconds, str(exc), ok=False))
            self.echo(f"{name:<10} FAILED after {seconds:6.1f}s: {exc}")
            raise PipelineError(f"step {name!r} failed: {exc}") from exc
        self._add(StepResult(name, time.perf_counter() - started, summary))
        self.echo(f"{name:<10} {self.result.steps[-1].seconds:6.1f}s  {summary}")

    def _add(self, step: StepResult) -> None:
        self.result.steps.append(step)
        self.record.steps.append({"step": step.name, "seconds": round(step.seconds, 3),
                                  "ok": step.ok, "summary": step.summary})
        runs_log.save(self.warehouse, self.record)

    def finish(self, status: str, error: str | None = None) -> None:
        self.record.status = status
        self.record.error = error
        self.record.ended_at = runs_log.now_iso()
        self.record.seconds = round(self.result.seconds, 3)
        runs_log.save(self.warehouse, self.record)


def step_land(lake: Path) -> str:
    """Validate the batches that producers wrote straight into the lake since the last run.

    Holds the lake's adoption lock, so two runs sharing a lake adopt each file once.
    """
    from tracehouse.lake import adopt_unregistered

    if not lake.is_dir():
        raise PipelineError(f"no lake folder at {lake}")
    with lake_lock(lake):
        stale = clean_lake_temporaries(lake)
        reports = adopt_unregistered(lake)
    cleaned = f"; removed {stale} stale temporary file(s)" if stale else ""
    if not reports:
        return "no new unregistered batches" + cleaned
    accepted = sum(r.accepted for r in reports)
    quarantined = sum(r.quarantined for r in reports)
    return (
        f"validated {len(reports)} new batch file(s): {accepted:,} rows accepted, "
        f"{quarantined:,} quarantined{cleaned}"
    )


LAKE_TMP_MAX_AGE_S = 3600.0


def clean_lake_temporaries(lake: Path, max_age_s: float = LAKE_TMP_MAX_AGE_S) -> int:
    """Remove the lake writer's hidden ``.*.tmp`` files older than ``max_age_s``; return how many.

    Every lake file is written to a hidden temporary name and renamed; a writer killed in
    between leaves the temporary file. One older than an hour belongs to no live writer.
    """
    from tracehouse.changes import DATASET_NAMES

    now = time.time()
    roots = [lake / d for d in DATASET_NAMES]
    roots += [lake / "_quarantine" / d for d in DATASET_NAMES]
    roots += [lake / "_quarantine" / "_originals" / d for d in DATASET_NAMES]
    folders = [lake / "_ledger" / d for d in DATASET_NAMES]
    for root in roots:
        if root.is_dir():
            folders += [p for p in root.iterdir() if p.is_dir() and p.name.startswith("dt=")]
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > max_age_s:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def ledger_totals(lake: Path) -> dict[str, list[int]]:
    """dataset -> [received, accepted, quarantined] over the whole ledger."""
    import duckdb

    if not any((lake / "_ledger").glob("*/*.parquet")):
        return {}
    glob = str(lake / "_ledger" / "*" / "*.parquet").replace("'", "''")
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT dataset, sum(received), sum(accepted), sum(quarantined) "
            f"FROM read_parquet('{glob}') GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return {r[0]: [int(r[1]), int(r[2]), int(r[3])] for r in rows}


def landed_since(now: dict[str, list[int]], before: dict[str, list[int]]) -> list[dict[str, Any]]:
    """Rows landed per dataset between two ledger totals (received, accepted, quarantined)."""
    out = []
    for dataset in sorted(now):
        prev = before.get(dataset, [0, 0, 0])
        out.append({"dataset": dataset, "landed": now[dataset][0] - prev[0],
                    "accepted": now[dataset][1] - prev[1],
                    "quarantined": now[dataset][2] - prev[2]})
    return out


#: dbt nodes an unchanged-project incremental build leaves out (see :func:`step_build`).
SLICED_RUN_EXCLUDES = "test_type:unit source:lake"
# data tests on slices (macros/incremental/test_slices.sql); views whose SQL did not change are
# kept, not re-created (macros/materializations/view.sql)
SLICED_RUN_ENV = {"TRACEHOUSE_TEST_SLICES": "1", "TRACEHOUSE_KEEP_UNCHANGED_VIEWS": "1"}


def step_build(  # noqa: PLR0917
    lake: Path, warehouse: Path, full_refresh: bool, progress: bool, record: runs_log.RunRecord,
    lookback_days: int | None = None, engine: str = "duckdb",
    project_unchanged: bool = False,
) -> str:
    """`dbt build` of the whole project; raises with every failing node's message.

    With ``project_unchanged`` (an incremental run whose dbt project is the one the last good
    run built with) the dbt unit tests are left out (their fixtures and the SQL under test are
    the same, so they pass as they did), so are the data tests of the raw lake sources
    (``source:lake``: they re-read the whole lake; every landed batch was already validated
    against the contract by the lake writer, which quarantines bad rows, and by the batch
    checks), and the data tests check only what the base tables wrote since each test last
    passed (``test_slices``, macros/incremental/test_slices.sql), and a view whose compiled SQL
    is the one it was created with is kept, not re-created (macros/materializations/view.sql).
    A full refresh or a changed project runs every unit test and source test, tests whole tables
    and re-creates every view.
    """
    from tracehouse.warehouse import build

    dbt_vars: dict[str, object] | None = (
        {"lookback_days": lookback_days} if lookback_days is not None else None
    )
    sliced = project_unchanged and not full_refresh
    res = build(lake, warehouse, full_refresh=full_refresh, progress=progress, dbt_vars=dbt_vars,
                engine=engine, exclude=SLICED_RUN_EXCLUDES if sliced else None,
                extra_env=SLICED_RUN_ENV if sliced else None)
    record.models_built = res.models_built
    record.checks_failed = (record.checks_failed or 0) + res.tests_failed
    counts = ", ".join(f"{v} {k}" for k, v in sorted(res.counts.items()))
    if not res.success:
        detail = "; ".join(res.failures[:5]) or "dbt reported failure"
        more = f" (+{len(res.failures) - 5} more)" if len(res.failures) > 5 else ""
        raise PipelineError(f"dbt build failed: {detail}{more}")
    mode = "full refresh" if full_refresh else "incremental"
    if lookback_days is not None and not full_refresh:
        mode += f", lookback {lookback_days} days"
    if engine != "duckdb":
        mode += f" on {engine}"
    if sliced:
        mode += ("; project unchanged: unit tests and lake source tests skipped (batches "
                 "validated on landing), data tests on what was written since they last passed, "
                 "views kept where their SQL is unchanged")
    retried = ""
    if res.retried:
        retried = (f"; {len(res.retried)} node(s) ran out of DuckDB's memory or temp disk beside "
                   f"other nodes and passed when retried one at a time: "
                   f"{', '.join(n.split('.')[-1] for n in res.retried[:5])}")
    return f"dbt build ({mode}): {counts}{retried}"


def step_freshness(lake: Path, warehouse: Path, record: runs_log.RunRecord,
                   seen: dict[str, str | None] | None = None, engine: str = "duckdb") -> str:
    """Source freshness of the lake datasets: warns, never fails the run.

    A building run on DuckDB reads the newest ``ingest_time`` of each base table it just built
    (on another engine it asks ``dbt source freshness``); a run that found nothing new
    (``seen``: the newest loads the last good run saw) checks the same thresholds without dbt.
    """
    from tracehouse import freshness
    from tracehouse.warehouse import project_dir

    try:
        project = project_dir()
        if seen is None and engine == "duckdb":
            results = freshness.from_warehouse(warehouse, project)
        elif seen is None:
            results = freshness.from_dbt(lake, warehouse, project)
        elif not seen:
            return "not checked: the last building run recorded no freshness"
        else:
            results = freshness.from_record(seen, project)
    except Exception as exc:  # a check that cannot run is a warning, not a failed run
        return f"WARN freshness not checked: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    record.freshness = {f.dataset: f.max_loaded_at.isoformat() if f.max_loaded_at else None
                        for f in results}
    where = ("nothing landed since the last run" if seen is not None
             else "newest ingest_time of the base tables" if engine == "duckdb"
             else "dbt source freshness")
    return f"{freshness.summary(results)} ({where})"


def step_detect(
    warehouse: Path, run_id: str, alert_lines: list[str], alert_state: list[pa.Table],
    record: runs_log.RunRecord | None = None,
    *,
    result: RunResult | None = None,
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
    if result is not None:
        result.detection = detection
    alert_lines.extend(format_alerts(detection.alerts))
    if detection.skipped_reason is None:
        alert_state.append(track_alerts(warehouse, warehouse_db(warehouse), detection.alerts,
                                        detection.change_points, run_id))
    if record is not None:
        record.change_points = detection.change_points.num_rows
        record.alerts = detection.alerts.num_rows
    return detection.summary()


#: ``1``: `tracehouse run` exports the publication's marts in a background thread while detect
#: and the mart checks run (:class:`tracehouse.publish.DaysAhead`). Off by default: on the shared
#: 2-core machine (load 8-15) the export and detect/checks share one DuckDB instance's threads
#: and the cores, so detect and the checks slowed by what publish saved (docs/warehouse.md).
PUBLISH_AHEAD_ENV = "TRACEHOUSE_PUBLISH_AHEAD"


def publish_ahead(engine: str = "duckdb", environ: Mapping[str, str] | None = None) -> bool:
    """Whether a run exports its marts ahead (:data:`PUBLISH_AHEAD_ENV`; DuckDB builds only)."""
    env = os.environ if environ is None else environ
    return engine == "duckdb" and env.get(PUBLISH_AHEAD_ENV, "").strip() == "1"


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


def build_of(record: runs_log.RunRecord | None) -> str:
    """The fingerprint of the dbt project and tracehouse's code a publication records."""
    from tracehouse import changes
    from tracehouse.warehouse import project_dir

    return changes.build_fingerprint(project_dir(), record.inputs if record else None)


def step_publish(warehouse: Path, run_id: str, result: RunResult,
                 record: runs_log.RunRecord | None = None, *, full_refresh: bool = False,
                 ahead: DaysAhead | None = None,
                 docs: Callable[[], object] | None = None) -> str:
    """Publish every mart together, with the runs record; see :mod:`tracehouse.publish`.

    The day-partitioned marts rewrite only the days the build touched (every day on a full
    refresh or with another project or code than the current publication's). With ``ahead``
    they were exported in the background while detection and the mart checks ran. ``docs``
    waits for the Data Docs the mart checks render meanwhile, before the links swap."""
    from tracehouse.publish import publish

    others = [r for r in runs_log.history(warehouse) if r.run_id != run_id]
    mine = []
    if record is not None:  # the snapshot published with this run shows it as published
        mine = [runs_log.RunRecord(**asdict(record))]
        mine[0].status, mine[0].ended_at = runs_log.PUBLISHED, runs_log.now_iso()
        mine[0].seconds = round(result.seconds, 3)
    table = runs_log.as_table([*others, *mine])
    published = publish(warehouse, run_id, extra_tables={"runs": table},
                        full_refresh=full_refresh, build=build_of(record), ahead=ahead,
                        before_swap=docs)
    result.published = published
    if record is not None:
        record.marts_written = len(published.written)
        record.marts_linked = len(published.linked)
    tables = published.tables
    linked = f", {len(published.linked)} unchanged hard-linked" if published.linked else ""
    days = ", ".join(
        f"{name} {len(written)} day(s) written, {published.days_linked.get(name, 0)} linked"
        for name, written in sorted(published.days_written.items()))
    if days and published.all_days_because:
        days += f" (every day: {published.all_days_because})"
    if days and published.days_ahead_seconds is not None:
        days += (f"; day files and {len(published.ahead)} other mart(s) exported in "
                 f"{published.days_ahead_seconds:.1f}s in the background during detect and "
                 "marts, those others re-checked by fingerprint")
    return (f"{len(tables)} marts -> {warehouse / 'marts'} ({sum(tables.values()):,} rows"
            f"{linked}{'; ' + days if days else ''})")


def _recover(state: _Run, killed: Any) -> None:
    """Clean a killed run's leftovers and record the takeover."""
    removed = clean_leftovers(state.warehouse)
    runs_log.clean_temporary(state.warehouse)
    notes = []
    if killed is not None:
        previous = runs_log.load(state.warehouse, killed.run_id)
        at = previous.steps[-1]["step"] if previous and previous.steps else "start"
        if previous and previous.status == runs_log.RUNNING:
            previous.status = runs_log.KILLED
            previous.ended_at = previous.ended_at or runs_log.now_iso()
            previous.note = (f"ended without releasing the run lock (after step {at}); "
                             f"taken over by run {state.record.run_id}")
            runs_log.save(state.warehouse, previous)
        notes.append(f"took over the run lock from {killed.describe()}, which was killed "
                     f"(last step done: {at})")
    # We hold the lock, so no other run is running here: any record still "running" was killed.
    for other in runs_log.history(state.warehouse):
        if other.status == runs_log.RUNNING and other.run_id != state.record.run_id:
            other.status = runs_log.KILLED
            other.ended_at = other.ended_at or runs_log.now_iso()
            other.note = f"ended without finishing; found by run {state.record.run_id}"
            runs_log.save(state.warehouse, other)
    if removed:
        notes.append(f"removed {len(removed)} leftover(s) of an interrupted publish: "
                     + ", ".join(p.name for p in removed[:3]))
    if notes:
        state.record.note = "; ".join(notes)
        for note in notes:
            state.echo(f"{'recover':<10} {note}")


def _nothing_new(state: _Run, full_refresh: bool, lookback_days: int | None,
                 project: Path) -> runs_log.RunRecord | None:
    """The last good run, if this run would read exactly what it read; else None."""
    from tracehouse import changes

    state.record.inputs = {**changes.inputs(state.lake, project),
                           **_outputs(state.warehouse)}
    if full_refresh or lookback_days is not None:
        return None
    last = runs_log.last_good(state.warehouse)
    folder = current_folder(state.warehouse)
    if last is None or folder is None or not folder.is_dir():
        return None
    if last.inputs != state.record.inputs:
        return None
    if changes.producer_files(state.lake):
        return None
    return last


def _outputs(warehouse: Path) -> dict[str, str]:
    """What a good run leaves: the build database as it was, the publication where it was.

    A build database changed by hand (``dbt build`` outside tracehouse) or a warehouse copied or
    moved (its views name absolute paths) is not "nothing new".
    """
    from tracehouse.warehouse import warehouse_db

    db = warehouse_db(warehouse)
    st = db.stat() if db.is_file() else None
    return {"warehouse_db": f"{st.st_size}:{st.st_mtime_ns}" if st else "",
            "publication": str(current_folder(warehouse) or "")}


def run(
    lake: Path | str,
    warehouse: Path | str,
    *,
    full_refresh: bool = False,
    lookback_days: int | None = None,
    progress: bool = True,
    echo: Echo = print,
    engine: str = "duckdb",
) -> RunResult:
    """Run the pipeline once on ``lake`` into ``warehouse``; return each step's result.

    ``engine`` is the dbt target that builds the warehouse: ``duckdb`` (embedded) or ``spark``
    (:mod:`tracehouse.engines`); detection, checks and publish read the marts the same way.

    Raises :class:`RunLockedError` when another run holds the warehouse (nothing done, nothing
    recorded) and :class:`PipelineError` when a step fails (recorded as ``failed``; the previous
    publication is then untouched).
    """
    lake, warehouse = Path(lake).resolve(), Path(warehouse).resolve()
    state = _Run(lake, warehouse, echo, full_refresh)
    with run_lock(warehouse, state.record.run_id, state.record.started_at) as killed, \
            lake_files_lock(lake, rewrite=False, what="this run", timeout_s=LAKE_WAIT_S):
        try:
            _recover(state, killed)
            runs_log.save(warehouse, state.record)
            try:
                check_links(warehouse)
            except PublicationError as exc:
                raise PipelineError(str(exc)) from exc
            _run_steps(state, full_refresh, lookback_days, progress, engine)
        except PipelineError as exc:
            state.finish(runs_log.FAILED, str(exc))
            raise
        except BaseException as exc:
            state.finish(runs_log.FAILED, f"interrupted: {exc!r}")
            raise
    return state.result


def _run_steps(state: _Run, full_refresh: bool, lookback_days: int | None,
               progress: bool, engine: str = "duckdb") -> None:
    from tracehouse.warehouse import project_dir

    lake, warehouse, echo, record = state.lake, state.warehouse, state.echo, state.record
    project = project_dir()
    last = _nothing_new(state, full_refresh, lookback_days, project)
    if last is not None:
        state.step("land", lambda: f"nothing new since run {last.run_id}: build, checks, "
                                   "detect and publish skipped")
        record.ledger_totals = last.ledger_totals
        record.datasets = landed_since(last.ledger_totals, last.ledger_totals)
        state.step("freshness", lambda: step_freshness(lake, warehouse, record,
                                                       seen=last.freshness))
        state.result.skipped = True
        state.finish(runs_log.SKIPPED)
        echo(f"{'run':<10} {state.result.seconds:6.1f}s  run {record.run_id}: nothing new; "
             f"the publication of run {_published_run(warehouse)} stays current")
        return

    from tracehouse.quality import QualityRun
    from tracehouse.quality.engine import prewarm

    prewarm()  # GX's ~3 s import overlaps landing and the batch statistics
    from tracehouse import warehouse as _warehouse

    _warehouse.prewarm()  # so does dbt's ~1.2 s
    previous = runs_log.last_good(warehouse)
    state.step("land", lambda: step_land(lake))
    from tracehouse import changes

    record.inputs = changes.inputs(lake, project)  # after adoption registered its batches
    record.ledger_totals = ledger_totals(lake)
    record.datasets = landed_since(record.ledger_totals,
                                   previous.ledger_totals if previous else {})
    quality = QualityRun(lake, warehouse, record.run_id, docs_in_background=True)
    state.step("batches", lambda: step_check_batches(quality))
    unchanged = previous is not None and bool(previous.inputs) and (
        previous.inputs.get("project") == record.inputs.get("project"))
    state.step("build", lambda: step_build(lake, warehouse, full_refresh, progress, record,
                                           lookback_days, engine, project_unchanged=unchanged))
    state.step("freshness", lambda: step_freshness(lake, warehouse, record, engine=engine))
    alerts: list[str] = []
    alert_state: list[pa.Table] = []
    # With PUBLISH_AHEAD_ENV=1 the marts are exported while detection and the mart checks run
    # (DuckDB's writes beside GX's and the detector's Python); nothing is visible before the
    # publish step swaps the links.
    from tracehouse.publish import DaysAhead

    ahead = DaysAhead(warehouse, record.run_id, full_refresh=full_refresh,
                      build=build_of(record)) if publish_ahead(engine) else None
    try:
        state.step("detect",
                   lambda: step_detect(warehouse, record.run_id, alerts, alert_state, record,
                                       result=state.result))
        try:
            state.step("marts", lambda: step_check_marts(quality))
        except PipelineError:
            record.checks_failed = (record.checks_failed or 0) + len(quality.failures)
            echo(f"{'quality':<10} {quality.verdict()}")
            raise
    except BaseException:
        if ahead is not None:
            ahead.discard()
        raise
    record.checks_failed = (record.checks_failed or 0) + len(quality.failures)
    state.step("publish",
               lambda: step_publish(warehouse, record.run_id, state.result, record,
                                    full_refresh=full_refresh, ahead=ahead,
                                    docs=quality.wait_docs))
    state.step("notify", lambda: step_notify(warehouse, record.run_id, alert_state))
    record.inputs.update(_outputs(warehouse))  # last: notify records deliveries in the warehouse
    state.finish(runs_log.PUBLISHED)
    echo(f"{'run':<10} {state.result.seconds:6.1f}s  run {record.run_id} published")
    echo(f"alerts ({len(alerts)}):" if alerts else "alerts: none")
    for line in alerts:
        echo(f"  {line}")
    echo(f"{'quality':<10} {quality.verdict()}")


def _published_run(warehouse: Path) -> str:
    folder = current_folder(warehouse)
    return folder.name if folder else "?"
