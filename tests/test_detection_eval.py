"""Detection scored end to end on small generated lakes: one with incidents, one control.

Each lake is generated, built with dbt, detected and published, then scored against the
generator's truth file (`tracehouse.detect.evaluate`). The seed and incident times are not
ones the detector was developed on. Thresholds are fixed; the measured figures are in
docs/detection.md.
"""

from __future__ import annotations

from datetime import date

import pytest

from tracehouse.detect.evalrun import EvalRun, generated_run

pytestmark = pytest.mark.slow

SEED = 11
DAYS = 30
TRACES_PER_DAY = 800
START = date(2026, 4, 6)

#: Measured on this lake: recall 1.00 (6 judged; the 3-day reranker degradation holds only two
#: whole days and is "too short"), precision 1.00, attribution 1.00, control 0.010 false points
#: per series-month; held-out seeds in docs/detection.md. Recall and attribution thresholds are
#: the issue's targets: with 6 incidents judged, one miss fails.
MIN_RECALL = 0.95
MIN_ATTRIBUTION = 0.9
#: Strict precision: a change point belongs if its metric is a primary movement or a listed side
#: effect of an incident (docs/generator.md).
MIN_PRECISION = 0.9
MIN_EXPLAINED_PRECISION = 0.95
MAX_FALSE_PER_SERIES_MONTH = 0.02


@pytest.fixture(scope="module")
def incidents_run(tmp_path_factory: pytest.TempPathFactory) -> EvalRun:
    return generated_run(tmp_path_factory.mktemp("detect-eval"), seed=SEED, days=DAYS,
                         traces_per_day=TRACES_PER_DAY, start=START)


@pytest.fixture(scope="module")
def control_run(tmp_path_factory: pytest.TempPathFactory) -> EvalRun:
    return generated_run(tmp_path_factory.mktemp("detect-control"), seed=SEED, days=DAYS,
                         traces_per_day=TRACES_PER_DAY, start=START, incidents=False)


def test_incidents_are_found_and_attributed(incidents_run: EvalRun) -> None:
    s = incidents_run.score
    print(incidents_run.line())
    assert len(s.judged) >= 5
    assert sum(i.found for i in s.incidents) >= 6
    assert s.recall >= MIN_RECALL, s.as_dict()
    assert s.attribution >= MIN_ATTRIBUTION, s.as_dict()
    assert s.precision >= MIN_PRECISION, s.as_dict()
    assert s.explained_precision >= MIN_EXPLAINED_PRECISION, s.as_dict()
    assert abs(s.median_delay_hours) <= 24.0
    det = incidents_run.detection
    assert det.change_points.num_rows == s.change_points
    rules = set(det.alerts.column("rule").to_pylist())
    assert {"no_tool_for_required", "citation_mismatch_rising"} <= rules
    assert det.seconds < 10.0


def test_control_lake_has_few_false_change_points(control_run: EvalRun) -> None:
    s = control_run.score
    print(control_run.line())
    assert s.series_judged >= 100
    assert s.false_per_series_month <= MAX_FALSE_PER_SERIES_MONTH, s.as_dict()
