"""Landing OTLP files and a producer's Parquet files through the one lake writer."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from tracehouse.lake import BatchReport, write_batch
from tracehouse.otlp.decode import decode_file_bytes
from tracehouse.otlp.mapping import MappingDefaults, spans_to_table
from tracehouse.otlp.rows import prepare_table
from tracehouse.redaction import ArtifactStore, Redactor

OTLP_FILE_SOURCE = "otlp-file"
PARQUET_FILE_SOURCE = "parquet-file"


def ingest_otlp_files(
    lake: Path | str,
    files: Iterable[Path | str],
    redactor: Redactor,
    *,
    source: str = OTLP_FILE_SOURCE,
    defaults: MappingDefaults | None = None,
    artifacts: ArtifactStore | None = None,
) -> list[BatchReport]:
    """Land each OTLP file (JSON lines, protobuf, gzip or not) as one batch; one report each.

    All requests of a file are mapped together, so the envelope is carried from a root to
    its children across the requests of the file. A file that does not decode raises
    :class:`tracehouse.otlp.decode.OTLPDecodeError` naming the file before anything lands.
    """
    reports = []
    for f in files:
        path = Path(f)
        try:
            spans = decode_file_bytes(path.read_bytes())
        except ValueError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        table = spans_to_table(spans, redactor, defaults=defaults, artifacts=artifacts)
        reports.append(write_batch(lake, "spans", table, source=source))
    return reports


def ingest_parquet_files(
    lake: Path | str,
    dataset: str,
    files: Iterable[Path | str],
    redactor: Redactor,
    *,
    source: str = PARQUET_FILE_SOURCE,
) -> list[tuple[BatchReport, list[str]]]:
    """Land a producer's own contract Parquet files, redacted; (report, dropped columns) each.

    Columns the contract does not know are left out before writing (the quarantine would
    otherwise keep them as text) and returned, so the caller can say which.
    """
    out = []
    for f in files:
        prepared = prepare_table(dataset, pq.read_table(Path(f)), redactor)
        report = write_batch(lake, dataset, prepared.table, source=source)
        out.append((report, prepared.dropped_fields))
    return out
