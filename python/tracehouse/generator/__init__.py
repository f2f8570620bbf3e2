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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa

from tracehouse.errors import TracehouseError
from tracehouse.generator.annotations import build_annotations
from tracehouse.generator.faults import bad_batches
from tracehouse.generator.feedback import build_feedback
from tracehouse.generator.spans import build_spans
from tracehouse.generator.traces import simulate_day
from tracehouse.generator.traffic import traces_on
from tracehouse.generator.world import US_PER_DAY, US_PER_S, build_world, to_us, truth_records

__all__ = ["GenerateReport", "GeneratorError", "generate"]

STATE_FILE: Final = "_generator.json"
SOURCE: Final = "generator"
LOOKBACK_DAYS: Final = 16  # annotations up to 14 days late, plus ingest delay and redelivery
SPAN_LOOKBACK_DAYS: Final = 2  # spans: ingest delay, midnight straddlers, redelivery
DUPLICATE_SHARE: Final = 0.01
DATASETS: Final = ("spans", "feedback", "annotations")


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


def _volume(state: dict[str, Any], day: date) -> int:
    tpd = int(state["volumes"][0]["traces_per_day"])
    for v in state["volumes"]:
        if date.fromisoformat(v["from"]) <= day:
            tpd = int(v["traces_per_day"])
    return tpd


def _with_duplicates(table: pa.Table, seed: int, dayk: int, salt: int) -> pa.Table:
    """Append ~1% of the rows again, redelivered a day (and up to 6 h) after their ingest."""
    if table.num_rows == 0:
        return table
    rng = np.random.default_rng([seed, dayk, 81, salt])
    pick = np.nonzero(rng.random(table.num_rows) < DUPLICATE_SHARE)[0]
    dup = table.take(pa.array(pick))
    later = dup.column("ingest_time").cast(pa.int64()).to_numpy()
    later = later + US_PER_DAY + (rng.random(len(pick)) * 6 * 3600 * US_PER_S).astype(np.int64)
    i = dup.schema.get_field_index("ingest_time")
    dup = dup.set_column(i, dup.schema.field(i),
                         pa.array(later, pa.int64()).view(dup.schema.field(i).type))
    return pa.concat_tables([table, dup])


def _by_ingest_day(table: pa.Table) -> dict[int, pa.Table]:
    """Split rows by the UTC day (as days since the Unix epoch) of their ingest_time."""
    days = table.column("ingest_time").cast(pa.int64()).to_numpy() // US_PER_DAY
    uniq, counts = np.unique(days, return_counts=True)
    if len(uniq) == 1:
        return {int(uniq[0]): table}
    ordered = table.take(pa.array(np.argsort(days, kind="stable")))  # one copy, then slices
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {int(d): ordered.slice(int(a), int(b - a))
            for d, a, b in zip(uniq, bounds[:-1], bounds[1:], strict=True)}


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
) -> GenerateReport:
    """Generate ``days`` days from ``start`` into ``lake``; return what landed.

    Writes every row through :func:`tracehouse.lake.write_batch`. On an empty lake the seed,
    epoch (= ``start``) and incidents flag are recorded in ``<lake>/_generator.json``; a later
    call must continue where the last one stopped, with the same seed and incidents flag.
    ``truth_path`` receives the incidents injected from the epoch up to the end of the range.
    """
    from tqdm import tqdm

    from tracehouse.lake import write_batch

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
    s_day, e_day = (to_us(start) // US_PER_DAY), (to_us(end) // US_PER_DAY)
    pending: dict[tuple[str, int], list[pa.Table]] = {}
    trace_days = [first + timedelta(days=i) for i in range((end - first).days)]
    for d in tqdm(trace_days, desc="generate", unit="day", disable=not progress):
        dk = d.toordinal()
        tr = simulate_day(world, d, traces_on(seed, d, _volume(state, d)))
        tables = {"feedback": build_feedback(world, tr),
                  "annotations": build_annotations(world, tr)}
        if d >= start - timedelta(days=SPAN_LOOKBACK_DAYS):
            tables["spans"] = build_spans(world, tr)
        for salt, (dataset, table) in enumerate(tables.items()):
            for iday, part in _by_ingest_day(_with_duplicates(table, seed, dk, salt)).items():
                if s_day <= iday < e_day:
                    pending.setdefault((dataset, iday), []).append(part)
        today = to_us(d) // US_PER_DAY
        if today < s_day:
            continue
        for dataset in DATASETS:
            parts = pending.pop((dataset, today), [])
            if not parts:
                continue
            batch = pa.concat_tables(parts)
            stamp = datetime(d.year, d.month, d.day, 23, 59, 59, tzinfo=UTC)
            base = f"gen-s{seed}-{d.isoformat()}-{dataset}"
            batches = [("", batch), *((f"-{suffix}", t) for suffix, t in
                                      bad_batches(dataset, batch, bad_rows, seed, dk))]
            for suffix, t in batches:
                r = write_batch(lake, dataset, t, source=SOURCE, batch_id=base + suffix,
                                ingest_time=stamp)
                report.received[dataset] += r.received
                report.accepted[dataset] += r.accepted
                report.quarantined[dataset] += r.quarantined
                report.batches += 1
    report.elapsed_s = time.perf_counter() - t_begin
    state["generated_until"] = end.isoformat()
    lake.mkdir(parents=True, exist_ok=True)
    (lake / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    report.incidents = truth_records(world, to_us(end))
    if truth_path is not None:
        Path(truth_path).write_text(json.dumps(report.incidents, indent=2) + "\n")
    return report


