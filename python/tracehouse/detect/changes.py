"""One detected change in one series, before it becomes a row of `change_points`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


@dataclass
class Change:
    """A change found in the series `(metric, grain, segment_key)`.

    `value_before` / `value_after` are the levels of the regimes before and after (the
    detector's deseasonalised weighted means). The decomposition fields come from the job, over
    one full week (or day, hourly) either side of `change_at`: `contribution` is how much this
    segment moved the `all` series (the segment's part of the overall move, in the metric's
    units), `overall_move` how much the `all` series moved, and `share` the segment's share of
    the metric's denominator. They are NaN where a metric has no `all` series.
    """

    metric: str
    grain: str
    segment_key: str
    change_at: datetime
    value_before: float
    value_after: float
    score: float
    contribution: float = math.nan
    overall_move: float = math.nan
    share: float = math.nan
    suspected_causes: list[str] = field(default_factory=list)

    @property
    def direction(self) -> Literal["up", "down"]:
        """Return "up" if the level rose, else "down"."""
        return "up" if self.value_after > self.value_before else "down"

    @property
    def relative_change(self) -> float:
        """Return `value_after / value_before - 1` (NaN if the level before is 0)."""
        if self.value_before == 0.0 or not math.isfinite(self.value_before):
            return math.nan
        return self.value_after / self.value_before - 1.0

    def as_row(self, detected_by: str, run_id: str) -> dict[str, object]:
        """Return the contract's `change_points` row."""
        return {
            "metric": self.metric,
            "grain": self.grain,
            "segment_key": self.segment_key,
            "change_at": self.change_at,
            "value_before": self.value_before,
            "value_after": self.value_after,
            "relative_change": self.relative_change,
            "direction": self.direction,
            "score": self.score,
            "suspected_causes": list(self.suspected_causes),
            "detected_by": detected_by,
            "run_id": run_id,
        }
