"""Bring your history: Langfuse and Phoenix exports mapped into the contract.

- :mod:`tracehouse.history.sql`: reading export files with DuckDB, typed column expressions.
- :mod:`tracehouse.history.langfuse`: Langfuse blob-storage exports (traces, observations,
  enriched observations, scores) to spans, annotations and feedback.
- :mod:`tracehouse.history.phoenix`: Phoenix span dataframes (Parquet) to spans.

Both map with one DuckDB query per dataset (no loop per row) and land through the same
redaction (:func:`tracehouse.otlp.rows.redact_table`), validator and quarantine
(:func:`tracehouse.lake.write_batch`) as every other landing path. ``docs/history.md`` has the
mapping tables.
"""
