"""The trace drill-down's data: one trace's request, spans in tree order, and its chunk journey."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from tracehouse.errors import TracehouseError

Row = dict[str, Any]


class TraceNotFoundError(TracehouseError, LookupError):
    """No trace with that id (or id prefix) in the warehouse."""


@dataclass
class ChunkStep:
    """Where one chunk went: retrieved (rank), selected by rerank, included or excluded (why)."""

    chunk_id: str
    relevant: bool
    retrieved_rank: int | None
    selected_rank: int | None
    included: bool
    excluded_reason: str | None

    @property
    def lost_at(self) -> str | None:
        """The stage that lost a relevant chunk, or None if it reached the model."""
        if self.included:
            return None
        if self.retrieved_rank is None:
            return "retrieval"
        if self.selected_rank is None and not self.excluded_reason:
            return "rerank"
        return "context_assembly"


@dataclass
class TraceView:
    """One trace: its request row, spans (tree order), feedback, annotations, and chunk journey."""

    trace_id: str
    request: Row
    spans: list[Row]  # in tree order, each with "depth"
    feedback: list[Row] = field(default_factory=list)
    annotations: list[Row] = field(default_factory=list)
    chunks: list[ChunkStep] = field(default_factory=list)

    @property
    def root(self) -> Row | None:
        """The root span, if it landed."""
        return next((s for s in self.spans if s.get("parent_span_id") is None), None)

    @property
    def duration_ms(self) -> float:
        """Wall time of the trace: the root's duration, else the span extent."""
        root = self.root
        if root and root.get("duration_ms"):
            return float(root["duration_ms"])
        ends = [(_num(s.get("offset_ms")) or 0) + (_num(s.get("duration_ms")) or 0)
                for s in self.spans]
        return max(ends, default=0.0) or 1.0


def _tree_order(spans: list[Row]) -> list[Row]:
    """Spans depth-first from the root(s), children by start; orphans last at depth 0."""
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str | None, list[Row]] = {}
    for s in spans:
        parent = s.get("parent_span_id")
        children.setdefault(parent if parent in by_id else None, []).append(s)
    ordered: list[Row] = []
    seen: set[str] = set()

    def walk(span: Row, depth: int) -> None:
        if span["span_id"] in seen:
            return
        seen.add(span["span_id"])
        ordered.append({**span, "depth": depth})
        for child in children.get(span["span_id"], []):
            walk(child, depth + 1)

    for top in children.get(None, []):
        walk(top, 0)
    for s in spans:  # cycles or anything left over
        if s["span_id"] not in seen:
            ordered.append({**s, "depth": 0})
    return ordered


def _first(view: TraceView, span_type: str) -> Row | None:
    return next((s for s in view.spans if s.get("span_type") == span_type), None)


def _spans(view: TraceView, span_type: str) -> list[Row]:
    return [s for s in view.spans if s.get("span_type") == span_type]


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return list(value) if isinstance(value, list | tuple) else [value]


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def chunk_journey(view: TraceView) -> list[ChunkStep]:
    """Every chunk the trace touched; for the judged-relevant ones, whether and where lost."""
    relevant = [str(c) for c in _list(view.request.get("relevant_chunk_ids"))]
    for a in view.annotations:
        relevant += [str(c) for c in _list(a.get("relevant_chunk_ids")) if str(c) not in relevant]
    retrieved: list[str] = []
    for s in _spans(view, "retrieval"):
        retrieved += [str(c) for c in _list(s.get("chunk_ids")) if str(c) not in retrieved]
    selected: list[str] = []
    rerank_seen = False
    for s in _spans(view, "rerank"):
        rerank_seen = True
        selected += [str(c) for c in _list(s.get("selected_chunk_ids")) if str(c) not in selected]
    included: list[str] = []
    excluded: dict[str, str] = {}
    assembly_seen = False
    for s in _spans(view, "context_assembly"):
        assembly_seen = True
        included += [str(c) for c in _list(s.get("included_chunk_ids"))]
        for e in _list(s.get("excluded_chunks")):
            if isinstance(e, dict) and e.get("chunk_id") is not None:
                excluded[str(e["chunk_id"])] = str(e.get("reason") or "unknown")
    if not rerank_seen:
        selected = list(retrieved)
    if not assembly_seen:
        included = list(selected)
    order = list(dict.fromkeys([*retrieved, *selected, *included, *excluded, *relevant]))
    steps = []
    for c in order:
        steps.append(
            ChunkStep(
                chunk_id=c,
                relevant=c in relevant,
                retrieved_rank=retrieved.index(c) + 1 if c in retrieved else None,
                selected_rank=selected.index(c) + 1 if c in selected else None,
                included=c in included,
                excluded_reason=excluded.get(c),
            )
        )
    return steps
