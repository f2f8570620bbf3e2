"""How labels, promotions and eval results read in ``tracehouse trace`` (its annotation lines).

The trace view calls :func:`annotation_head` and :func:`annotation_extras` for each annotation
row; rows without ``annotation_kind`` (older lakes) read as labels, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _kind(annotation: Mapping[str, Any]) -> str:
    return str(annotation.get("annotation_kind") or "label")


def annotation_head(annotation: Mapping[str, Any]) -> str:
    """The first words of an annotation line: what kind of review it is."""
    kind = _kind(annotation)
    if kind == "promotion":
        return f"promoted to eval set {annotation.get('eval_dataset_id') or '?'}"
    if kind == "eval_result":
        return f"eval run {annotation.get('eval_run_id') or '?'} result"
    return str(annotation.get("failure_category") or "no failure")


def annotation_extras(annotation: Mapping[str, Any]) -> list[str]:
    """The review details of an annotation line: note or reason, candidate stage results."""
    kind = _kind(annotation)
    out: list[str] = []
    if kind == "eval_result":
        versions = annotation.get("candidate_versions")
        if versions:
            out.append("candidate " + ", ".join(str(v) for v in versions))
        if annotation.get("retrieval_hit") is not None:
            out.append(f"retrieval hit: {'yes' if annotation['retrieval_hit'] else 'no'}")
        if annotation.get("cost_usd") is not None:
            out.append(f"cost ${float(annotation['cost_usd']):.4f}")
        if annotation.get("latency_ms") is not None:
            out.append(f"latency {float(annotation['latency_ms']):.0f} ms")
        if annotation.get("failure_category"):
            out.append(f"failure {annotation['failure_category']}")
    note = annotation.get("note_redacted")
    if note:
        out.append(("reason: " if kind == "promotion" else "note: ") + str(note))
    return out
