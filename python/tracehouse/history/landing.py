"""Mapped history rows to the lake: the same redaction, validator and quarantine as OTLP."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from tracehouse.lake import BatchReport, write_batch
from tracehouse.otlp.rows import redact_table
from tracehouse.redaction import Redactor


@dataclass
class HistoryReport:
    """What one history import read and landed.

    ``read`` counts the source rows per export table; ``reports`` are the lake's batches
    (each reconciles: received = accepted + quarantined); ``not_landed`` counts source rows
    that map to nothing in the contract (e.g. a score name no column takes), by reason.
    """

    source: str
    read: dict[str, int] = field(default_factory=dict)
    reports: list[BatchReport] = field(default_factory=list)
    not_landed: dict[str, int] = field(default_factory=dict)


def land(lake: Path | str, dataset: str, table: pa.Table, redactor: Redactor, *,
         source: str) -> BatchReport:
    """Redact ``table`` as every landing path does, then validate and land it as one batch."""
    return write_batch(lake, dataset, redact_table(table, redactor), source=source)
