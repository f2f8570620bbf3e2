"""Feedback events: what users did after an answer, depending on what went wrong in its trace.

A trace that went wrong (retrieval missed, a required tool was not called, context truncated, a
guardrail blocked, a tool failed, citations invalid, ...) is much likelier to draw a thumbs-down,
an escalation, a regenerate, a rephrase or an abandoned task; a good one draws thumbs-up, copies
and completed tasks. Feedback arrives minutes to days later (heavy tail, at most 7 days).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa

from tracehouse.contract.schemas import FEEDBACK_SCHEMA
from tracehouse.generator.ids import hex_ids, labels, mix64, timestamps
from tracehouse.generator.traces import DayTraces
from tracehouse.generator.world import US_PER_S, World

MAX_DELAY_S: Final = 7 * 86_400
# feedback type -> (probability for a good answer, for the worst one, median delay in s)
FEEDBACK_MODEL: Final[dict[str, tuple[float, float, float]]] = {
    "escalation": (0.008, 0.10, 1800.0),
    "regenerate": (0.03, 0.16, 40.0),
    "rephrase": (0.04, 0.15, 60.0),
    "task_abandoned": (0.02, 0.12, 3 * 3600.0),
    "task_completed": (0.35, 0.08, 2 * 3600.0),
    "copy": (0.20, 0.05, 90.0),
    "citation_click": (0.10, 0.06, 120.0),
    "edit": (0.03, 0.07, 300.0),
    "follow_up": (0.08, 0.12, 240.0),
}
RATED: Final = 0.3  # share of answers that get a thumb at all
DOWN_GIVEN_RATED: Final = (0.05, 0.7)
COMMENTS: Final = ("answer quoted an outdated policy", "did not look at my account",
                   "wrong invoice amount", "too long", "sources do not say that")


def build_feedback(world: World, tr: DayTraces) -> pa.Table:
    """Feedback rows about one simulated day's traces, with their ``ingest_time``."""
    v, n = tr.v, tr.n
    rng = np.random.default_rng([world.seed, tr.day.toordinal(), 31])
    weight = v["severity"] / 0.8  # 0 for a good answer, 1 for the worst failures
    api = (v["entry"] == 1) | (v["entry"] == 3)
    damp = np.where(api, 0.3, 1.0)
    rated = rng.random(n) < RATED * damp
    lo, hi = DOWN_GIVEN_RATED
    down = rng.random(n) < lo + (hi - lo) * weight
    masks = {"thumbs_up": rated & ~down, "thumbs_down": rated & down}
    delays = {"thumbs_up": 45.0, "thumbs_down": 45.0}
    for kind, (p_good, p_bad, median) in FEEDBACK_MODEL.items():
        p = (p_good + (p_bad - p_good) * weight) * damp
        if kind == "citation_click":
            p = p * v["has_cite"]
        masks[kind] = rng.random(n) < p
        delays[kind] = median
    parts = []
    types = list(masks)
    for ti, kind in enumerate(types):
        idx = np.nonzero(masks[kind])[0]
        k = len(idx)
        if k == 0:
            continue
        delay = np.minimum(delays[kind] * np.exp(rng.normal(0, 1.8, k)), MAX_DELAY_S)
        event = v["root_end"][idx] + ((delay + 5) * US_PER_S).astype(np.int64)
        ingest = event + (np.exp(rng.normal(np.log(30), 1.0, k)) * US_PER_S).astype(np.int64)
        value = None
        if kind == "edit":
            value = pa.array(rng.integers(3, 400, k).astype(float))
        comment = None
        if kind == "thumbs_down":
            has = rng.random(k) < 0.2
            comment = labels(COMMENTS, rng.integers(0, len(COMMENTS), k), has)
        source = np.where(kind == "escalation", 2, np.where(api[idx], 1, 0))
        dayk = tr.day.toordinal()
        cols = {
            "schema_version": pa.repeat("1", k),
            "feedback_id": hex_ids(mix64(world.seed, 30, dayk, idx, ti),
                                   mix64(world.seed, 31, dayk, idx, ti), prefix="fb_"),
            "event_time": timestamps(event),
            "ingest_time": timestamps(ingest),
            "trace_id": hex_ids(mix64(world.seed, 1, dayk, idx), mix64(world.seed, 2, dayk, idx)),
            "request_id": hex_ids(mix64(world.seed, 4, dayk, idx), prefix="req_"),
            "conversation_id": hex_ids(
                mix64(world.seed, 5, v["tenant"][idx], v["user"][idx], dayk, idx % 3),
                prefix="conv_"),
            "tenant_id": labels(world.tenant_ids, v["tenant"][idx]),
            "user_id_hash": hex_ids(mix64(world.seed, 7, v["tenant"][idx], v["user"][idx])),
            "feedback_type": pa.repeat(kind, k),
            "value": value,
            "comment_redacted": comment,
            "source": labels(["ui", "api", "support"], source),
        }
        parts.append(pa.table([cols[f.name] if cols.get(f.name) is not None
                               else pa.nulls(k, f.type) for f in FEEDBACK_SCHEMA],
                              schema=FEEDBACK_SCHEMA))
    if not parts:
        return FEEDBACK_SCHEMA.empty_table()
    return pa.concat_tables(parts)
