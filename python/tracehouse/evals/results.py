"""``tracehouse eval import``: a candidate run's per-example results, landed as annotations.

Each result (one JSON object per line, or a JSON array) names its example (``trace_id``, or the
``example_id`` / Langfuse ``sourceTraceId`` of the export), the run (``eval_run_id``), the
candidate's versions, and its scores and per-stage results, flat or under ``scores`` /
``stages``. It becomes one ``eval_result`` annotation, through the same redaction, validator
and quarantine as every landing path: a score outside [0, 1], a value of the wrong type or a
malformed trace id sends the row to the quarantine with its reason. The annotation id is a hash
of (run, trace), so importing the same run again replaces its results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracehouse.contract.schemas import SCHEMA_VERSION
from tracehouse.errors import TracehouseError
from tracehouse.lake import BatchReport, write_batch
from tracehouse.otlp.rows import RowsError, parse_rows, rows_to_table
from tracehouse.redaction import Redactor

EVAL_IMPORT_SOURCE = "eval-import"

# Annotation column <- names a result may use for it (first found wins).
RESULT_FIELDS: dict[str, tuple[str, ...]] = {
    "correctness": ("correctness", "answer_correctness", "qa"),
    "groundedness": ("groundedness",),
    "citation_quality": ("citation_quality", "citation"),
    "completeness": ("completeness",),
    "tool_use_correct": ("tool_use_correct", "tool_use", "tool_adherence"),
    "policy_compliant": ("policy_compliant", "policy"),
    "retrieval_hit": ("retrieval_hit", "retrieval"),
    "cost_usd": ("cost_usd", "cost"),
    "latency_ms": ("latency_ms", "latency"),
    "failure_category": ("failure_category",),
}
_ENVELOPE = {
    "trace_id", "example_id", "sourceTraceId", "eval_run_id", "run_id", "candidate_versions",
    "scores", "stages", "eval_dataset_id", "evaluated_at", "note", "comment", "metadata",
}
_KNOWN = _ENVELOPE | {alias for aliases in RESULT_FIELDS.values() for alias in aliases}


class ResultsError(TracehouseError, ValueError):
    """A results file that cannot be read, or results with no run id."""


@dataclass
class ImportReport:
    """What one import landed: the lake's report and the fields it did not know."""

    report: BatchReport
    eval_run_ids: list[str]
    ignored_fields: list[str] = field(default_factory=list)


def _versions(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [f"{k}={v}" for k, v in sorted(value.items())]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def _scalar(value: Any) -> Any:
    """A stage result given as ``{"value": x}`` / ``{"score": x}`` / ``{"pass": b}``: its value."""
    if isinstance(value, Mapping):
        for key in ("value", "score", "pass", "hit", "correct"):
            if key in value:
                return value[key]
    return value


def _trace_id(record: Mapping[str, Any]) -> Any:
    raw = record.get("metadata")
    metadata: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    tid = (record.get("trace_id") or record.get("sourceTraceId") or metadata.get("trace_id")
           or record.get("example_id"))
    if isinstance(tid, str) and tid.startswith("th-"):
        tid = tid[3:]
    return tid


def result_rows(
    records: Sequence[Mapping[str, Any]],
    *,
    eval_run_id: str | None = None,
    candidate_versions: Iterable[str] = (),
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Results to annotation rows (kind ``eval_result``); and the fields nobody maps.

    A record's own ``eval_run_id`` wins over ``eval_run_id``; ``candidate_versions``
    (``dim=value``) are added to every record's own.
    """
    now = now or datetime.now(UTC)
    extra_versions = list(candidate_versions)
    rows: list[dict[str, Any]] = []
    ignored: set[str] = set()
    missing_run: list[int] = []
    for i, rec in enumerate(records, start=1):
        values: dict[str, Any] = dict(rec)
        for nested in ("scores", "stages"):
            if isinstance(rec.get(nested), Mapping):
                values.update(rec[nested])
                ignored |= {str(k) for k in rec[nested] if k not in _KNOWN}
        ignored |= {str(k) for k in rec if k not in _KNOWN}
        run = rec.get("eval_run_id") or rec.get("run_id") or eval_run_id
        if not run:
            missing_run.append(i)
            continue
        tid = _trace_id(rec)
        key = f"{run}|{tid}".encode()
        row: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "annotation_id": "evalres-" + hashlib.sha256(key).hexdigest()[:32],
            "label_time": rec.get("evaluated_at") or now.isoformat(),
            "trace_id": tid,
            "annotation_kind": "eval_result",
            "eval_run_id": str(run),
            "eval_dataset_id": rec.get("eval_dataset_id"),
            "candidate_versions": sorted(set(_versions(rec.get("candidate_versions"))
                                             + extra_versions)) or None,
            "note_redacted": rec.get("note") or rec.get("comment"),
        }
        for column, aliases in RESULT_FIELDS.items():
            found = next((values[a] for a in aliases if values.get(a) is not None), None)
            row[column] = _scalar(found)
        rows.append(row)
    if missing_run:
        shown = ", ".join(map(str, missing_run[:10]))
        raise ResultsError(f"results {shown} name no eval_run_id: pass --run-id or add "
                           "eval_run_id to each result")
    return rows, sorted(ignored)


def read_results(path: Path | str) -> list[dict[str, Any]]:
    """The result records of a JSON lines file (or a JSON array / ``{"rows": [...]}``)."""
    path = Path(path)
    try:
        return parse_rows(path.read_bytes())
    except (RowsError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: {exc}") from None


def import_results(
    lake: Path | str,
    path: Path | str,
    redactor: Redactor,
    *,
    eval_run_id: str | None = None,
    candidate_versions: Iterable[str] = (),
    now: datetime | None = None,
) -> ImportReport:
    """Land the results file ``path`` as one annotations batch; counts always reconcile."""
    rows, ignored = result_rows(read_results(path), eval_run_id=eval_run_id,
                                candidate_versions=candidate_versions, now=now)
    prepared = rows_to_table("annotations", rows, redactor)
    report = write_batch(lake, "annotations", prepared.table, source=EVAL_IMPORT_SOURCE,
                         ingest_time=now)
    runs = sorted({r["eval_run_id"] for r in rows})
    return ImportReport(report, runs, ignored)
