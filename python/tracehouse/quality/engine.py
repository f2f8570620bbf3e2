"""Great Expectations, run the way tracehouse needs it: ephemeral, quiet, on pandas frames.

One :class:`GxSession` per pipeline run holds an ephemeral data context (nothing is written to
disk except the Data Docs site that :mod:`tracehouse.quality.docs` asks for). Suites are declared
as plain :class:`Check` tuples in :mod:`~tracehouse.quality.batches` and
:mod:`~tracehouse.quality.marts`, so that importing those modules does not import GX (about 3 s);
GX is imported the first time a suite runs, or earlier in a background thread started by
:func:`prewarm` (``tracehouse run`` starts it before landing, so the import overlaps the run's
first steps instead of adding to the batch checks).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from tracehouse import prewarm as prewarming

Severity = str  # "warn" (batch suspicion) or "fail" (broken mart)
WARN: Severity = "warn"
FAIL: Severity = "fail"


@dataclass(frozen=True)
class Check:
    """One expectation to run: a GX expectation class name, its arguments, and why it matters."""

    expectation: str  # e.g. "ExpectColumnValuesToBeBetween"
    kwargs: dict[str, Any]
    description: str

    @property
    def column(self) -> str | None:
        """The column the expectation looks at (the first of a pair), if any."""
        return self.kwargs.get("column") or self.kwargs.get("column_A")


@dataclass
class Outcome:
    """The result of one expectation on one frame."""

    check: Check
    success: bool
    observed: str | None  # observed value, rendered
    unexpected_count: int | None
    unexpected_targets: list[str]  # index values (batch ids, days, keys) of failing rows
    unexpected_examples: list[str]


@dataclass
class SuiteResult:
    """One suite run on one frame: what it checked and what failed."""

    suite: str  # e.g. "lake.spans.batches", "marts.fct_requests"
    stage: str  # "batch" or "mart"
    target: str  # dataset or mart name
    severity: Severity
    rows: int  # rows of the validated frame
    outcomes: list[Outcome] = field(default_factory=list)
    note: str | None = None  # e.g. why a suite was skipped
    validated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def failed(self) -> list[Outcome]:
        """The outcomes that did not pass."""
        return [o for o in self.outcomes if not o.success]

    @property
    def success(self) -> bool:
        """True when every expectation passed."""
        return not self.failed


def _render(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.6g}"
    try:
        return json.dumps(value, default=str)[:500]
    except (TypeError, ValueError):
        return str(value)[:500]


def _range(values: pd.Series) -> str | None:
    """``min .. max`` of a numeric column (what a between-expectation saw), else None."""
    if not pd.api.types.is_numeric_dtype(values) or values.dropna().empty:
        return None
    lo, hi = values.min(), values.max()
    return _render(float(lo)) if lo == hi else f"{_render(float(lo))} .. {_render(float(hi))}"


def _import_gx() -> None:
    import great_expectations  # noqa: F401
    from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: F401


def prewarm() -> threading.Thread:
    """Import GX in a daemon thread (once per process); return the thread.

    Python's import lock makes this safe: a thread that imports GX meanwhile waits for the
    module to finish initialising. :meth:`GxSession.context` joins the thread before using GX,
    so an import error surfaces there, as it would without prewarming.
    """
    return prewarming.start("gx", _import_gx)


class GxSession:
    """An ephemeral GX context with progress bars off, one pandas datasource, lazily created."""

    def __init__(self) -> None:
        self._context: Any = None
        self._datasource: Any = None
        self.validation_results: list[Any] = []  # GX ExpectationSuiteValidationResult objects

    @property
    def context_or_none(self) -> Any:
        """The GX data context if a suite has run, else None (without importing GX)."""
        return self._context

    @property
    def context(self) -> Any:
        """The GX data context (imports GX on first use)."""
        if self._context is None:
            prewarming.wait("gx")
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            logging.getLogger("great_expectations").setLevel(logging.WARNING)
            logging.getLogger("great_expectations.data_context.types.base").setLevel(
                logging.WARNING
            )

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            # The ephemeral context comes with a site in a temp folder; docs.py adds ours.
            for name in list(context.list_data_docs_sites()):
                context.delete_data_docs_site(name)
            self._context = context
            self._datasource = context.data_sources.add_pandas("tracehouse")
        return self._context

    def validate(
        self,
        suite_name: str,
        frame: pd.DataFrame,
        checks: list[Check],
        *,
        stage: str,
        target: str,
        severity: Severity,
        index_column: str | None = None,
    ) -> SuiteResult:
        """Run ``checks`` on ``frame`` as the GX suite ``suite_name``; say what passed, what not.

        ``index_column`` names the column whose values identify failing rows (a batch id, a day).
        """
        import great_expectations as gx

        context = self.context
        asset_name = suite_name.replace(".", "_")
        asset = self._datasource.add_dataframe_asset(asset_name)
        batch_definition = asset.add_batch_definition_whole_dataframe(f"{asset_name}_frame")
        # The suite is built whole, then stored once: adding expectations to a stored suite
        # re-serialises it on every add (quadratic, about half of a wide suite's time).
        expectations = [
            getattr(gx.expectations, check.expectation)(
                **check.kwargs, meta={"description": check.description})
            for check in checks
        ]
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name,
                                                       expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
        )
        result_format: dict[str, Any] = {"result_format": "COMPLETE"}
        if index_column is not None and index_column in frame.columns:
            result_format["unexpected_index_column_names"] = [index_column]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            validation = definition.run(batch_parameters={"dataframe": frame},
                                        result_format=result_format)
        self.validation_results.append(validation)

        result = SuiteResult(suite_name, stage, target, severity, rows=len(frame))
        for r in validation.results:
            cfg = r.expectation_config
            kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
            check = _match(checks, cfg.type, kwargs)
            res = r.to_json_dict().get("result") or {}
            exc = r.exception_info or {}
            raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
            targets: list[str] = []
            for row in res.get("unexpected_index_list") or []:
                if isinstance(row, dict) and index_column in row:
                    targets.append(str(row[index_column]))
            examples = [_render(v) or "null" for v in (res.get("partial_unexpected_list") or [])]
            observed = res.get("observed_value")
            if observed is None and check.column in frame.columns:
                observed = _range(frame[check.column])
            if raised:
                observed = f"error: {exc.get('exception_message')}"
            result.outcomes.append(
                Outcome(
                    check=check,
                    success=bool(r.success) and not raised,
                    observed=_render(observed),
                    unexpected_count=res.get("unexpected_count"),
                    unexpected_targets=sorted(set(targets))[:50],
                    unexpected_examples=examples[:10],
                )
            )
        return result


def _match(checks: list[Check], type_: str, kwargs: dict[str, Any]) -> Check:
    """The declared Check a GX result belongs to (GX adds defaults to kwargs, so match loosely)."""
    camel = "".join(part.capitalize() for part in type_.split("_"))
    for check in checks:
        if check.expectation == camel and all(
            kwargs.get(k) == v for k, v in check.kwargs.items()
        ):
            return check
    return Check(camel, kwargs, "")
