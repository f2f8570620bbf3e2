"""Labels and promotions: human annotations written through the one lake writer.

A label (``tracehouse label``) is an annotation of kind ``label`` with a ``failure_category``
from the taxonomy and an optional note. A promotion (``tracehouse promote``) is an annotation of
kind ``promotion`` with the ``eval_dataset_id`` it goes into and the reason as its note. Both go
through the same redaction (annotator id hashed, note masked) and validation as every other
landing path; the next ``tracehouse run`` shows them in ``fct_requests``,
``agg_failure_taxonomy`` and ``fct_eval_candidates``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracehouse.contract.schemas import SCHEMA_VERSION
from tracehouse.errors import ConfigurationError, InvalidInputError
from tracehouse.lake import BatchReport, write_batch
from tracehouse.otlp.rows import rows_to_table
from tracehouse.redaction import Redactor
from tracehouse.review.lookup import find_trace, normalize_trace_id
from tracehouse.review.taxonomy import check_category, load_taxonomy

REVIEW_SOURCE = "review-cli"
ANNOTATOR_ENV = "TRACEHOUSE_ANNOTATOR"
DEFAULT_EVAL_DATASET = "eval-promoted"


class AnnotatorMissingError(ConfigurationError, ValueError):
    """No annotator given by flag, TRACEHOUSE_ANNOTATOR or USER."""


@dataclass(frozen=True)
class ReviewResult:
    """What a label or promotion landed, and where the trace was found."""

    annotation_id: str
    trace_id: str
    found_in: str
    report: BatchReport


def resolve_annotator(annotator: str | None, env: Mapping[str, str] | None = None) -> str:
    """The annotator: the flag, else ``TRACEHOUSE_ANNOTATOR``, else ``USER``."""
    env = os.environ if env is None else env
    who = annotator or env.get(ANNOTATOR_ENV) or env.get("USER")
    if not who:
        raise AnnotatorMissingError(
            f"who is labelling? pass --annotator or set {ANNOTATOR_ENV}"
        )
    return who


def _land(
    lake: Path | str, row: dict[str, Any], redactor: Redactor, now: datetime
) -> BatchReport:
    prepared = rows_to_table("annotations", [row], redactor)
    return write_batch(lake, "annotations", prepared.table, source=REVIEW_SOURCE,
                       ingest_time=now)


def _base_row(trace_id: str, annotator: str, kind: str, now: datetime) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "annotation_id": f"{kind}-{uuid.uuid4().hex}",
        "label_time": now,
        "trace_id": trace_id,
        "annotator_id": annotator,  # hashed by the redaction of rows (annotator_id_hash)
        "annotation_kind": kind,
    }


def label_trace(
    lake: Path | str,
    trace_id: str,
    category: str,
    redactor: Redactor,
    *,
    annotator: str,
    note: str | None = None,
    warehouse: Path | str | None = None,
    taxonomy: Path | str | None = None,
    now: datetime | None = None,
) -> ReviewResult:
    """Label ``trace_id`` with a taxonomy ``category``: one human annotation, landed.

    Raises :class:`~tracehouse.review.taxonomy.UnknownCategoryError` for a code the taxonomy
    does not define, :class:`~tracehouse.review.lookup.TraceNotFoundError` for a trace that is
    neither in the published marts of ``warehouse`` nor in ``lake``.
    """
    check_category(category, load_taxonomy(taxonomy))
    tid = normalize_trace_id(trace_id)
    found = find_trace(tid, warehouse=warehouse, lake=lake)
    now = now or datetime.now(UTC)
    row = _base_row(tid, annotator, "label", now)
    row.update(failure_category=category, note_redacted=note)
    return ReviewResult(row["annotation_id"], tid, found, _land(lake, row, redactor, now))


def promote_trace(
    lake: Path | str,
    trace_id: str,
    reason: str,
    redactor: Redactor,
    *,
    annotator: str,
    eval_dataset_id: str = DEFAULT_EVAL_DATASET,
    warehouse: Path | str | None = None,
    now: datetime | None = None,
) -> ReviewResult:
    """Promote ``trace_id`` into the eval set ``eval_dataset_id``, keeping ``reason``.

    The reason is required (an eval example nobody can explain is not reviewable) and lands
    masked in ``note_redacted``.
    """
    if not reason or not reason.strip():
        raise InvalidInputError("a promotion needs a reason (--reason)")
    if not eval_dataset_id or not eval_dataset_id.strip():
        raise InvalidInputError("the eval set id must not be empty")
    tid = normalize_trace_id(trace_id)
    found = find_trace(tid, warehouse=warehouse, lake=lake)
    now = now or datetime.now(UTC)
    row = _base_row(tid, annotator, "promotion", now)
    row.update(eval_dataset_id=eval_dataset_id.strip(), note_redacted=reason.strip())
    return ReviewResult(row["annotation_id"], tid, found, _land(lake, row, redactor, now))
