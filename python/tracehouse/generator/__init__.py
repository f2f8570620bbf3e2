"""The synthetic generator: a support copilot's spans, feedback and annotations, landed in a lake.

:func:`generate` simulates every trace day that can still deliver rows into the requested range
(late feedback and annotations come up to ~16 days later), and lands only the rows whose
``ingest_time`` falls in the range, as one batch per dataset and ingest day with a fixed batch
id. The world (tenants, deploys, versions, incidents) depends only on the seed and the lake's
epoch, kept in ``<lake>/_generator.json``; so generating a range in several appends gives the
very same files as generating it in one go, and the same arguments give a byte-identical lake.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

from tracehouse.errors import TracehouseError
from tracehouse.generator.days import DATASETS, Plan, auto_workers, run
from tracehouse.generator.world import build_world, to_us, truth_records

__all__ = ["GenerateReport", "GeneratorError", "generate"]

STATE_FILE: Final = "_generator.json"
LOOKBACK_DAYS: Final = 16  # annotations up to 14 days late, plus ingest delay and redelivery


class GeneratorError(TracehouseError, ValueError):
    """Arguments that do not fit the lake (another seed, an overlapping range, ...)."""


@dataclass
class GenerateReport:
    """What :func:`generate` landed."""

    lake: Path
    start: date
    end: date  # exclusive
    seed: int
    epoch: date
    received: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    elapsed_s: float = 0.0
    incidents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spans_per_s(self) -> float:
        """Span rows received per second of wall time, end to end."""
        return self.received.get("spans", 0) / self.elapsed_s if self.elapsed_s else 0.0


def _state(lake: Path, *, seed: int, start: date, traces_per_day: int,
           incidents: bool) -> dict[str, Any]:
    """The lake's generator state, created on first use; errors if the arguments disagree."""
    path = lake / STATE_FILE
    if not path.exists():
        return {"seed": seed, "epoch": start.isoformat(), "incidents": incidents,
                "traces_per_day": traces_per_day,
                "volumes": [{"from": start.isoformat(), "traces_per_day": traces_per_day}],
                "generated_until": start.isoformat()}
    state: dict[str, Any] = json.loads(path.read_text())
    if state["seed"] != seed:
        raise GeneratorError(f"{lake} was generated with --seed {state['seed']}, not {seed}")
    if state["incidents"] != incidents:
        flag = "--no-incidents" if not state["incidents"] else "incidents on"
        raise GeneratorError(f"{lake} was generated with {flag}; use the same setting to append")
    until = date.fromisoformat(state["generated_until"])
    if start != until:
        raise GeneratorError(
            f"{lake} holds generated days up to {until - timedelta(days=1)}; "
            f"append with --start {until} (got {start})"
        )
    if state["volumes"][-1]["traces_per_day"] != traces_per_day:
        state["volumes"].append({"from": start.isoformat(), "traces_per_day": traces_per_day})
    return state


def generate(
    lake: Path | str,
    *,
    start: date,
    days: int,
    traces_per_day: int,
    seed: int,
    incidents: bool = True,
    truth_path: Path | None = None,
    bad_rows: float = 0.0,
    progress: bool = True,
    workers: int | None = None,
) -> GenerateReport:
    """Generate ``days`` days from ``start`` into ``lake``; return what landed.

    Writes every row through :func:`tracehouse.lake.write_batch`. On an empty lake the seed,
    epoch (= ``start``) and incidents flag are recorded in ``<lake>/_generator.json``; a later
    call must continue where the last one stopped, with the same seed and incidents flag.
    ``truth_path`` receives the incidents injected from the epoch up to the end of the range.
    ``workers`` processes share the work (default: one per core, fewer for a small job); the
    files are the same whatever their number.
    """
    from tqdm import tqdm

    if days < 1 or traces_per_day < 1:
        raise GeneratorError("--days and --traces-per-day must be at least 1")
    if not 0 <= bad_rows < 1:
        raise GeneratorError("--bad-rows is a fraction in [0, 1)")
    lake = Path(lake)
    end = start + timedelta(days=days)
    state = _state(lake, seed=seed, start=start, traces_per_day=traces_per_day,
                   incidents=incidents)
    epoch = date.fromisoformat(state["epoch"])
    world = build_world(seed, epoch, end, incidents=incidents)
    report = GenerateReport(lake=lake, start=start, end=end, seed=seed, epoch=epoch,
                            received=dict.fromkeys(DATASETS, 0),
                            accepted=dict.fromkeys(DATASETS, 0),
                            quarantined=dict.fromkeys(DATASETS, 0))
    t_begin = time.perf_counter()
    first = max(epoch, start - timedelta(days=LOOKBACK_DAYS))
    trace_days = [first + timedelta(days=i) for i in range((end - first).days)]
    volumes = tuple((date.fromisoformat(v["from"]), int(v["traces_per_day"]))
                    for v in state["volumes"])
    plan = Plan(lake=lake, world=world, seed=seed, start=start, end=end, bad_rows=bad_rows,
                volumes=volumes)
    if workers is None:
        workers = auto_workers(len(trace_days), traces_per_day)
    with tqdm(total=len(trace_days), desc="generate", unit="day", disable=not progress) as bar:
        for counts in run(plan, trace_days, workers=workers, on_day=bar.update):
            for dataset in DATASETS:
                report.received[dataset] += counts.received[dataset]
                report.accepted[dataset] += counts.accepted[dataset]
                report.quarantined[dataset] += counts.quarantined[dataset]
            report.batches += counts.batches
    report.elapsed_s = time.perf_counter() - t_begin
    state["generated_until"] = end.isoformat()
    lake.mkdir(parents=True, exist_ok=True)
    (lake / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    report.incidents = truth_records(world, to_us(end))
    if truth_path is not None:
        Path(truth_path).write_text(json.dumps(report.incidents, indent=2) + "\n")
    return report


