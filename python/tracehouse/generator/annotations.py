"""Annotations: human labels on a sample of traces (failures oversampled), 1-14 days later.

Labels agree with what happened: ``relevant_chunk_ids`` holds the trace's relevant chunk, which
reached the model exactly when the simulation says retrieval hit; ``required_tools`` follows the
tool-requirement rules; ``failure_category`` names the first thing that went wrong.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa

from tracehouse.contract.schemas import ANNOTATIONS_SCHEMA
from tracehouse.generator.ids import hex_ids, labels, list_array, mix64, ragged, timestamps
from tracehouse.generator.spans import chunk_ids
from tracehouse.generator.traces import DayTraces
from tracehouse.generator.world import TOOL_NAMES, US_PER_DAY, US_PER_S, World

SAMPLE_GOOD: Final = 0.04
SAMPLE_BAD: Final = 0.07
CATEGORIES: Final = (
    "retrieval_miss", "stale_knowledge", "wrong_tool", "missing_tool_call",
    "tool_execution_failure", "hallucination_with_context", "citation_mismatch", "format_parse",
    "guardrail_false_positive", "guardrail_false_negative", "timeout_degradation",
    "route_model_mismatch", "context_truncation",
)
C = {c: i for i, c in enumerate(CATEGORIES)}


def failure_category(tr: DayTraces, u: np.ndarray) -> np.ndarray:
    """Index into CATEGORIES of the first thing that went wrong per trace, -1 when none."""
    v = tr.v
    miss = v["has_retrieval"] & ~v["hit"]
    latent_cat = np.select([u < 0.55, u < 0.75, u < 0.9], [C["hallucination_with_context"],
                           C["route_model_mismatch"], C["guardrail_false_negative"]],
                           C["stale_knowledge"])
    return np.select(
        [v["failed"] | v["tool_timeout"], v["blocked_fp"], v["blocked"],
         v["tool_failed"], v["wrong"], v["missing_required"],
         v["lost_to_budget"], miss & (u < 0.2), miss, v["cite_mismatch"], v["format_fail"],
         v["latent"] | v["truncated"]],
        [C["timeout_degradation"], C["guardrail_false_positive"], -1,
         C["tool_execution_failure"], C["wrong_tool"], C["missing_tool_call"],
         C["context_truncation"], C["stale_knowledge"], C["retrieval_miss"],
         C["citation_mismatch"], C["format_parse"], latent_cat],
        -1,
    )


def build_annotations(world: World, tr: DayTraces) -> pa.Table:
    """Annotation rows for the sampled traces of one simulated day, with ``ingest_time``."""
    v, n = tr.v, tr.n
    rng = np.random.default_rng([world.seed, tr.day.toordinal(), 41])
    bad = v["bad"]
    picked = rng.random(n) < np.where(bad, SAMPLE_BAD, SAMPLE_GOOD)
    u = rng.random((n, 8))
    cat_all = failure_category(tr, u[:, 0])
    idx = np.nonzero(picked)[0]
    k = len(idx)
    if k == 0:
        return ANNOTATIONS_SCHEMA.empty_table()
    cat = cat_all[idx]
    wrong = cat >= 0
    label_us = v["root_end"][idx] + ((1 + 13 * u[idx, 1] ** 1.6) * US_PER_DAY).astype(np.int64)
    ingest = label_us + (np.exp(rng.normal(np.log(60), 1.0, k)) * US_PER_S).astype(np.int64)

    def score(good: tuple[float, float], poor: tuple[float, float]) -> np.ndarray:
        return np.round(np.where(wrong, rng.beta(*poor, k), rng.beta(*good, k)), 3)

    ret = v["has_retrieval"][idx]
    rel = np.stack([v["relevant"][idx], v["second_relevant"][idx]], axis=1)
    r_offs, r_flat = ragged(rel, ret[:, None] & (rel >= 0))
    relevant = list_array(r_offs, chunk_ids(r_flat))
    relevant = pa.ListArray.from_arrays(pa.array(r_offs), relevant.values, mask=pa.array(~ret))
    tools = np.broadcast_to(np.arange(len(TOOL_NAMES)), (k, len(TOOL_NAMES)))
    t_offs, t_flat = ragged(tools, v["required"][idx])
    cit_quality = np.where(v["cite_mismatch"][idx], np.round(rng.beta(2, 5, k), 3),
                           np.round(rng.beta(8, 2, k), 3))
    dayk = tr.day.toordinal()
    cols = {
        "schema_version": pa.repeat("1", k),
        "annotation_id": hex_ids(mix64(world.seed, 50, dayk, idx), prefix="ann_"),
        "label_time": timestamps(label_us),
        "ingest_time": timestamps(ingest),
        "trace_id": hex_ids(mix64(world.seed, 1, dayk, idx), mix64(world.seed, 2, dayk, idx)),
        "annotator_id_hash": hex_ids(mix64(world.seed, 51, rng.integers(0, 12, k))),
        "eval_dataset_id": labels(["eval-support-regressions", "eval-weekly-sample"],
                                  wrong.astype(int) ^ 1, u[idx, 2] < 0.4),
        "correctness": pa.array(score((9, 1.5), (2, 4))),
        "groundedness": pa.array(score((8, 1.5), (2.5, 3))),
        "citation_quality": pa.array(np.where(ret, cit_quality, np.nan), mask=~ret),
        "completeness": pa.array(score((7, 2), (2, 3))),
        "tool_use_correct": pa.array(~(v["wrong"][idx] | v["missing_required"][idx])),
        "policy_compliant": pa.array(cat != C["guardrail_false_negative"]),
        "relevant_chunk_ids": relevant,
        "required_tools": list_array(t_offs, labels(TOOL_NAMES, t_flat)),
        "failure_category": labels(CATEGORIES, np.maximum(cat, 0), wrong),
    }
    # optional columns the generator does not produce (review workflow, eval runs) are null
    return pa.table([cols.get(f.name, pa.nulls(k, f.type)) for f in ANNOTATIONS_SCHEMA],
                    schema=ANNOTATIONS_SCHEMA)
