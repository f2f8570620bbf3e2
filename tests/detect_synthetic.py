"""Synthetic warehouse tables of the marts' shapes, for the detection job's unit tests.

Traffic is simulated per cell (route x task type), so the `all`, `route_name=`, `model_name=`
and `task_type=` series of a rate are consistent aggregates of the same traces, as in the
warehouse's `metric_daily`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from tracehouse.contract.schemas import METRIC_SERIES_SCHEMA

ROUTES = {"premium": ("atlas-large", 0.25), "standard": ("nimbus-pro", 0.45),
          "cheap": ("nimbus-mini", 0.30)}
TASKS = {"support": 0.34, "qa": 0.24, "billing": 0.18, "summarization": 0.12, "extraction": 0.12}
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Shift:
    """A rate moves to `rate` on the traffic matching `route`/`task` (None: any) in [start, end)."""

    metric: str
    start_day: int
    end_day: int
    rate: float
    route: str | None = None
    task: str | None = None


BASE_RATES = {"required_tool_missing_rate": 0.05, "citation_mismatch_rate": 0.04,
              "error_rate": 0.02}


def metric_daily(days: int = 42, traffic: float = 2000.0, shifts: tuple[Shift, ...] = (),
                 seed: int = 0) -> pa.Table:
    """Return a `metric_daily` table: request_count, model_share and the BASE_RATES metrics."""
    rng = np.random.default_rng(seed)
    weekly = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.6, 0.55])
    cells = [(r, t) for r in ROUTES for t in TASKS]
    share = np.array([ROUTES[r][1] * TASKS[t] for r, t in cells])
    lam = traffic * weekly[np.arange(days) % 7][:, None] * share[None, :]
    counts = rng.poisson(lam).astype(np.int64)  # [days, cells]
    rows: list[dict[str, object]] = []

    def emit(metric: str, seg: str, values: np.ndarray, n: np.ndarray) -> None:
        for d in range(days):
            rows.append({"metric": metric, "grain": "day",
                         "period_start": START + timedelta(days=d), "segment_key": seg,
                         "value": float(values[d]) if n[d] > 0 else None, "n": int(n[d])})

    groups: dict[str, np.ndarray] = {"all": np.ones(len(cells), bool)}
    for r, (model, _) in ROUTES.items():
        groups[f"route_name={r}"] = np.array([c[0] == r for c in cells])
        groups[f"model_name={model}"] = groups[f"route_name={r}"]
    for t in TASKS:
        groups[f"task_type={t}"] = np.array([c[1] == t for c in cells])
    for seg, m in groups.items():
        n = counts[:, m].sum(axis=1)
        emit("request_count", seg, n.astype(float), n)
        if seg.startswith("model_name="):
            emit("model_share", seg, n / counts.sum(axis=1), counts.sum(axis=1))
    for metric, base in BASE_RATES.items():
        p = np.full((days, len(cells)), base)
        for s in shifts:
            if s.metric != metric:
                continue
            hit = np.array([(s.route in (None, r)) and (s.task in (None, t)) for r, t in cells])
            p[s.start_day:s.end_day, hit] = s.rate
        k = rng.binomial(counts, p)
        for seg, m in groups.items():
            n = counts[:, m].sum(axis=1)
            emit(metric, seg, k[:, m].sum(axis=1) / np.maximum(n, 1), n)
    return pa.Table.from_pylist(rows, schema=METRIC_SERIES_SCHEMA)


def dim_versions(rows: list[tuple[str, str, str, datetime]]) -> list[dict[str, object]]:
    """Return `dim_versions` rows from (dimension, value, scope_key, first_seen_at)."""
    return [
        {"version_id": f"{d}={v}@{s}", "version_dimension": d, "version_value": v,
         "scope_key": s, "first_seen_at": t, "last_seen_at": t, "request_count": 1,
         "previous_value": None}
        for d, v, s, t in rows
    ]
