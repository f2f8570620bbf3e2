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

#: The issue's targets (docs/detection.md has the measured figures of every lake). Recall and
#: top-1 attribution: with 6-7 incidents judged, one miss fails.
MIN_RECALL = 0.95
#: Top-1: the first suspect of the most certain finding change point, or its tied group, is the
#: cause (the generator ships a harmless version minutes from every cause, half of them canaries).
MIN_TOP1_ATTRIBUTION = 0.9
#: Strict precision: a change point belongs if its metric is a primary movement or a listed side
#: effect of an incident (docs/generator.md).
MIN_PRECISION = 0.9
MAX_MEDIAN_LOCATION_ERROR_HOURS = 2.0
MAX_FALSE_PER_SERIES_MONTH = 0.02


@pytest.fixture(scope="module")
def incidents_run(tmp_path_factory: pytest.TempPathFactory) -> EvalRun:
    return generated_run(tmp_path_factory.mktemp("detect-eval"), seed=SEED, days=DAYS,
                         traces_per_day=TRACES_PER_DAY, start=START)


@pytest.fixture(scope="module")
def control_run(tmp_path_factory: pytest.TempPathFactory) -> EvalRun:
    return generated_run(tmp_path_factory.mktemp("detect-control"), seed=SEED, days=DAYS,
                         traces_per_day=TRACES_PER_DAY, start=START, incidents=False)


def test_incidents_are_found_located_and_attributed(incidents_run: EvalRun) -> None:
    s = incidents_run.score
    print(incidents_run.line())
    assert len(s.judged) >= 5
    assert sum(i.found for i in s.incidents) >= 6
    assert s.recall >= MIN_RECALL, s.as_dict()
    assert s.attribution >= MIN_TOP1_ATTRIBUTION, s.as_dict()
    assert s.precision >= MIN_PRECISION, s.as_dict()
    assert s.median_location_error_hours <= MAX_MEDIAN_LOCATION_ERROR_HOURS, s.as_dict()
    # a daily change needs three whole days after its start day; nothing is later than that
    assert all(i.time_to_alert_hours <= 4 * 24 for i in s.judged if i.found), s.as_dict()
    # the metrics judged hour by hour (fast operational ones, trace-level shares) alert within
    # hours, not days: the hourly change's third hour, a few hours after the start
    by_grain = s.time_to_alert_by_grain()
    print("median time to alert by grain (h):", by_grain)
    assert sum(i.alert_grain == "hour" for i in s.judged if i.found) >= 2, s.as_dict()
    assert by_grain["hour"] <= 24, s.as_dict()
    det = incidents_run.detection
    assert det.change_points.num_rows == s.change_points
    rules = set(det.alerts.column("rule").to_pylist())
    assert {"no_tool_for_required", "citation_mismatch_rising"} <= rules
    # every alert names its first suspect with the evidence
    for msg, causes in zip(det.alerts.column("message").to_pylist(),
                           det.alerts.column("suspected_causes").to_pylist(), strict=True):
        if causes:
            assert f"suspected: {causes[0]}" in msg and "without (n=" in causes[0]


def test_control_lake_has_few_false_change_points(control_run: EvalRun) -> None:
    s = control_run.score
    print(control_run.line())
    assert s.series_judged >= 100
    assert s.false_per_series_month <= MAX_FALSE_PER_SERIES_MONTH, s.as_dict()
