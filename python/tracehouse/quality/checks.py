"""The quality policy, as the pipeline runs it: batch suites warn, mart suites fail the run.

:class:`QualityRun` carries one run's GX session and results from the batch step (before the
build) to the mart step (right before publishing), writes ``dq_results`` and the Data Docs, and
says the one-line verdict the run ends with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from tracehouse.errors import TracehouseError
from tracehouse.quality.batches import DATASETS, check_batches, mark_checked
from tracehouse.quality.docs import build_docs, quality_dir
from tracehouse.quality.engine import FAIL, WARN, GxSession, SuiteResult
from tracehouse.quality.marts import check_marts, mart_tables
from tracehouse.quality.results import RESULTS_TABLE, write_results
from tracehouse.quality.touched import (
    TOUCHED_TRACES,
    mark_marts_checked,
    mart_fingerprints,
    touched_days,
    unchanged_marts,
)
from tracehouse.resources import apply_limits
from tracehouse.warehouse import MARTS_SCHEMA, warehouse_db


class QualityError(TracehouseError, RuntimeError):
    """Mart expectations failed: the run must stop before publishing."""


class _Background:
    """One call run in a daemon thread; :meth:`wait` returns its value or raises its error."""

    def __init__(self, fn: Callable[[], Path]) -> None:
        self._value: Path | None = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._value = fn()
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=target, name="tracehouse-data-docs",
                                        daemon=True)
        self._thread.start()

    def wait(self) -> Path | None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class QualityRun:
    """One run's data-quality checks and their results."""

    lake: Path
    warehouse: Path
    run_id: str
    all_batches: bool = False
    all_marts: bool = False  # check every day of the marts, not only the days rebuilt
    mart_days: list[str] | None = None
    session: GxSession = field(default_factory=GxSession)
    batch_results: list[SuiteResult] = field(default_factory=list)
    mart_results: list[SuiteResult] = field(default_factory=list)
    batches_checked: int = 0
    marts_unchanged: dict[str, str] = field(default_factory=dict)  # mart -> run that checked it
    index: Path | None = None
    # Passed mart checks render the Data Docs in a thread; the caller joins it (wait_docs).
    docs_in_background: bool = False
    _docs: _Background | None = field(default=None, repr=False)

    @property
    def suites(self) -> list[SuiteResult]:
        """Every suite run so far, batches first."""
        return [*self.batch_results, *self.mart_results]

    @property
    def expectations(self) -> int:
        """Expectations evaluated so far."""
        return sum(len(s.outcomes) for s in self.suites)

    @property
    def warnings(self) -> list[str]:
        """One line per failed warn-level expectation (or skipped suite)."""
        lines = []
        for s in self.suites:
            if s.severity != WARN:
                continue
            if s.note:
                lines.append(f"{s.suite}: {s.note}")
            for o in s.failed:
                lines.append(_describe(s, o))
        return lines

    @property
    def failures(self) -> list[str]:
        """One line per failed fail-level expectation."""
        return [_describe(s, o) for s in self.suites if s.severity == FAIL for o in s.failed]

    @property
    def level(self) -> str:
        """PASS, WARN or FAIL."""
        if self.failures:
            return "FAIL"
        return "WARN" if self.warnings else "PASS"

    def verdict(self) -> str:
        """The run's one-line verdict, e.g. ``PASS: 42 expectations on 3 batches and 12 marts``."""
        marts = len({s.target for s in self.mart_results if s.outcomes and "+" not in s.target})
        n_warn, n_fail = len(self.warnings), len(self.failures)
        text = (f"{self.level}: {self.expectations} expectations on {self.batches_checked} "
                f"batches and {marts} marts")
        if n_fail:
            text += f", {n_fail} failed"
        text += f", {n_warn} warning{'s' if n_warn != 1 else ''}"
        where = self.index or quality_dir(self.warehouse) / "index.html"
        return f"{text} (see {where})"

    def check_batches(self) -> str:
        """Validate the new batches of the lake; record results; never raises on a bad batch.

        Batch checks only warn, so they never stop a run either: when the warehouse database
        cannot be opened (another process holds it) they are skipped, and the batches stay new
        for the next run.
        """
        self.warehouse.mkdir(parents=True, exist_ok=True)
        try:
            con = apply_limits(duckdb.connect(str(warehouse_db(self.warehouse))))
        except duckdb.IOException as exc:
            note = f"batch checks skipped, warehouse database busy: {str(exc).splitlines()[0]}"
            self.batch_results = [SuiteResult("lake.batches", "batch", "lake", WARN, rows=0,
                                              note=note)]
            return note
        try:
            batches, self.batch_results = check_batches(con, self.lake, self.session,
                                                        all_batches=self.all_batches)
            self.batches_checked = len(batches)
            write_results(con, self.run_id, self.batch_results)
            per_batch: dict[str, int] = {}
            for s in self.batch_results:
                for o in s.failed:
                    for b in o.unexpected_targets:
                        per_batch[b] = per_batch.get(b, 0) + 1
            mark_checked(con, batches, self.run_id, per_batch)
        finally:
            con.close()
        if not self.batches_checked:
            return "no new batches to check"
        n = sum(len(s.outcomes) for s in self.batch_results)
        warnings = [w for s in self.batch_results for o in s.failed for w in [_describe(s, o)]]
        summary = (f"{n} expectations on {self.batches_checked} new batches: "
                   f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
        idle = [d for d in DATASETS if d not in {s.target for s in self.batch_results}]
        if idle:
            summary += (f"; no new {', '.join(idle)} batch: suite{'s' if len(idle) > 1 else ''} "
                        + ", ".join(f"lake.{d}.batches" for d in idle) + " not run")
        if warnings:
            summary += "\n" + "\n".join(f"{'':<10} WARN {w}" for w in warnings[:10])
            if len(warnings) > 10:
                summary += f"\n{'':<10} ... {len(warnings) - 10} more in dq_results"
        return summary

    def check_marts(self) -> str:
        """Validate every mart; record results and Data Docs; raise QualityError on a failure."""
        con = apply_limits(duckdb.connect(str(warehouse_db(self.warehouse))))
        try:
            # no DuckDB progress bar amid the run's step lines (slow queries print one)
            con.execute("SET enable_progress_bar = false")
            # only the days this build rewrote (whole-table invariants always); all on a first run
            self.mart_days = None if self.all_marts else touched_days(con)
            fingerprints = mart_fingerprints(con, mart_tables(con))
            # a mart a passed check saw as it is now is not validated again (not on a full check)
            self.marts_unchanged = ({} if self.mart_days is None
                                    else unchanged_marts(con, fingerprints))
            self.mart_results = check_marts(
                con, self.session, self.mart_days, self.marts_unchanged,
                traces=None if self.mart_days is None else TOUCHED_TRACES)
            write_results(con, self.run_id, self.mart_results)
            history = _history(con)
            if not any(o for s in self.mart_results for o in s.failed):
                mark_marts_checked(con, fingerprints, self.run_id)
        finally:
            con.close()
        n = sum(len(s.outcomes) for s in self.mart_results)
        failures = [_describe(s, o) for s in self.mart_results for o in s.failed]
        if failures or not self.docs_in_background:
            self.index = build_docs(self.warehouse, self.session, self.suites, self.verdict(),
                                    self.level, history=history, run_id=self.run_id)
        else:  # GX renders its pages (Python) while the run publishes (DuckDB): wait_docs()
            self.index = quality_dir(self.warehouse) / "index.html"
            args = (self.warehouse, self.session, list(self.suites), self.verdict(), self.level)
            self._docs = _Background(lambda: build_docs(*args, history=history,
                                                        run_id=self.run_id))
        if failures:
            shown = "; ".join(failures[:5])
            more = f" (+{len(failures) - 5} more)" if len(failures) > 5 else ""
            raise QualityError(
                f"{len(failures)} of {n} mart expectations failed: {shown}{more}. "
                f"Nothing was published; see {self.index}"
            )
        suites = len([s for s in self.mart_results if s.outcomes])
        scope = "every day" if self.mart_days is None else f"{len(self.mart_days)} touched day(s)"
        text = f"{n} expectations in {suites} mart suites ({scope}): all passed"
        if self.marts_unchanged:
            text += (f"; {len(self.marts_unchanged)} unchanged mart(s) not re-checked "
                     "(same content as at their last passed check)")
        if self._docs is not None:
            text += "; Data Docs rendered in the background during publish"
        return text

    def wait_docs(self) -> Path | None:
        """Wait for the Data Docs rendered in the background (if any); return the index.
        Raises what rendering raised."""
        if self._docs is not None:
            self.index = self._docs.wait()
            self._docs = None
        return self.index


def _describe(suite: SuiteResult, outcome: object) -> str:
    o = outcome  # an Outcome
    where = ""
    targets = getattr(o, "unexpected_targets", [])
    if targets:
        where = " at " + ", ".join(targets[:3]) + (f" (+{len(targets) - 3})" if len(targets) > 3
                                                     else "")
    check = o.check  # type: ignore[attr-defined]
    args = {k: v for k, v in check.kwargs.items() if k not in ("column", "column_A")}
    col = f" {check.column}" if check.column else ""
    observed = getattr(o, "observed", None)
    obs = f" observed {observed}" if observed else ""
    return f"{suite.suite}:{col} {check.expectation} {args}{obs}{where}"


def _history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    try:
        return con.execute(
            f"""
            SELECT run_id, strftime(max(checked_at), '%Y-%m-%d %H:%M:%S') AS checked_at,
                   count(success) AS expectations,
                   count(*) FILTER (WHERE success = false AND severity = 'warn') AS warnings,
                   count(*) FILTER (WHERE success = false AND severity = 'fail') AS failures
            FROM "{MARTS_SCHEMA}"."{RESULTS_TABLE}"
            GROUP BY run_id ORDER BY max(checked_at) DESC LIMIT 20
            """
        ).df()
    except duckdb.Error:
        return None
