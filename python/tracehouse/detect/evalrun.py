"""Generate a lake, build it, detect, publish and score: the evaluation loop of tests and bench."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tracehouse.detect.evaluate import DetectionScore, evaluate_warehouse
from tracehouse.detect.job import DetectionResult


@dataclass
class EvalRun:
    """One generated lake, end to end: its score, the detection result and the step timings."""

    label: str
    score: DetectionScore
    detection: DetectionResult
    seconds: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """One printable line of the figures."""
        s = self.score
        head = f"{self.label:<28}"
        if s.judged:
            head += (
                f" recall {s.recall:.2f} ({len(s.judged)} incidents)"
                f"  precision {s.precision:.2f} (explained {s.explained_precision:.2f})"
                f"  top-1 {s.attribution:.2f} (listed {s.cause_listed:.2f})"
                f"  location {s.median_location_error_hours:.1f} h"
                f"  to alert {s.median_time_to_alert_hours:.0f} h"
            )
        return (
            f"{head}  {s.change_points} change points, {s.false_points} false over "
            f"{s.series_judged} series: {s.false_per_series_month:.4f} per series-month"
            f"  (detect {self.detection.seconds:.2f}s)"
        )


def generated_run(
    workdir: Path | str,
    *,
    seed: int,
    days: int,
    traces_per_day: int,
    start: date = date(2026, 1, 1),
    incidents: bool = True,
) -> EvalRun:
    """Generate a lake under `workdir`, run the pipeline on it, score against its truth.

    The pipeline is :func:`tracehouse.pipeline.run`, the one thing that chains the steps: build,
    checks, detection and publication are exactly those of `tracehouse run`.
    """
    from tracehouse.generator import generate
    from tracehouse.pipeline import run

    workdir = Path(workdir)
    lake, warehouse, truth = workdir / "lake", workdir / "warehouse", workdir / "truth.json"
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    generate(lake, start=start, days=days, traces_per_day=traces_per_day, seed=seed,
             incidents=incidents, truth_path=truth, progress=False)
    seconds["generate"] = time.perf_counter() - t
    result = run(lake, warehouse, progress=False, echo=lambda _line: None)
    seconds.update((s.name, s.seconds) for s in result.steps)
    detection: DetectionResult = result.detection
    label = f"seed {seed}, {days} d x {traces_per_day}" + ("" if incidents else " (control)")
    score = evaluate_warehouse(warehouse, truth if incidents else None)
    return EvalRun(label, score, detection, seconds)
