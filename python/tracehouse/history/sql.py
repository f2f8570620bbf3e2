"""DuckDB helpers shared by the history importers: files to relations, typed expressions."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb

from tracehouse.errors import TracehouseError
from tracehouse.otlp.mapping import ENVIRONMENT_SYNONYMS
from tracehouse.redaction import PREVIEW_CHARS

PARQUET_SUFFIXES = (".parquet",)
JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")


class HistoryError(TracehouseError, ValueError):
    """An export that cannot be read (no files, unknown format)."""


def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier (Phoenix columns have dots in their names)."""
    return '"' + name.replace('"', '""') + '"'


def files_in(folder: Path) -> list[Path]:
    """Parquet and JSON-lines files under ``folder`` (recursively), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and p.name.lower().endswith(PARQUET_SUFFIXES + JSON_SUFFIXES))


def register_files(con: duckdb.DuckDBPyConnection, name: str, files: Iterable[Path]) -> bool:
    """Create view ``name`` over the files (Parquet and/or JSON lines, unioned by column name).

    Returns False when there is no file.
    """
    files = list(files)
    parquet = [f for f in files if f.name.lower().endswith(PARQUET_SUFFIXES)]
    jsonl = [f for f in files if not f.name.lower().endswith(PARQUET_SUFFIXES)]
    parts = []
    if parquet:
        parts.append(f"SELECT * FROM read_parquet([{', '.join(_q(str(f)) for f in parquet)}], "
                     "union_by_name = true)")
    if jsonl:
        parts.append(f"SELECT * FROM read_json([{', '.join(_q(str(f)) for f in jsonl)}], "
                     "format = 'newline_delimited', union_by_name = true, "
                     "sample_size = -1)")
    if not parts:
        return False
    con.execute(f"CREATE OR REPLACE TEMP VIEW {ident(name)} AS "
                + " UNION ALL BY NAME ".join(parts))
    return True


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """``{column: DuckDB type}`` of a relation."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {ident(relation)}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


class Columns:
    """Typed expressions over a relation's columns, NULL for columns the export lacks."""

    def __init__(self, types: dict[str, str], alias: str = "") -> None:
        self.types = types
        self.prefix = f"{alias}." if alias else ""

    def has(self, name: str) -> bool:
        """True when the export has the column."""
        return name in self.types

    def raw(self, name: str) -> str:
        """The column as it is, or NULL."""
        return self.prefix + ident(name) if name in self.types else "NULL"

    def text(self, *names: str) -> str:
        """The first present, non-null column as text (JSON rendered for nested values)."""
        parts = []
        for n in names:
            if n not in self.types:
                continue
            t = self.types[n].upper()
            col = self.prefix + ident(n)
            nested = t.endswith("]") or t.startswith(("STRUCT", "MAP")) or t == "JSON"
            parts.append(f"CAST(to_json({col}) AS VARCHAR)" if nested
                         else f"CAST({col} AS VARCHAR)")
        return f"coalesce({', '.join(parts)})" if parts else "CAST(NULL AS VARCHAR)"

    def json(self, name: str) -> str:
        """The column as JSON (a JSON text parsed, a struct / map rendered), or NULL."""
        if name not in self.types:
            return "CAST(NULL AS JSON)"
        t = self.types[name].upper()
        col = self.prefix + ident(name)
        if t == "VARCHAR":
            return f"TRY_CAST({col} AS JSON)"
        return f"CAST(to_json({col}) AS JSON)"

    def number(self, name: str) -> str:
        """The column as DOUBLE (NULL where it does not cast)."""
        return f"TRY_CAST({self.raw(name)} AS DOUBLE)" if name in self.types else "NULL::DOUBLE"

    def ts(self, name: str) -> str:
        """The column as TIMESTAMPTZ; naive timestamps and text are taken as UTC."""
        if name not in self.types:
            return "NULL::TIMESTAMPTZ"
        t = self.types[name].upper()
        col = self.prefix + ident(name)
        if t.startswith("TIMESTAMP WITH TIME ZONE"):
            return col
        if t.startswith("TIMESTAMP"):
            return f"timezone('UTC', CAST({col} AS TIMESTAMP))"
        return (f"coalesce(TRY_CAST({col} AS TIMESTAMPTZ), "
                f"timezone('UTC', TRY_CAST({col} AS TIMESTAMP)))")


def trace_id_expr(expr: str) -> str:
    """A W3C trace id from any id: 32 hex kept (dashes of a UUID removed), else md5 of it."""
    clean = f"lower(replace({expr}, '-', ''))"
    return (f"CASE WHEN {expr} IS NULL THEN NULL "
            f"WHEN regexp_full_match({clean}, '[0-9a-f]{{32}}') THEN {clean} "
            f"ELSE md5(CAST({expr} AS VARCHAR)) END")


def span_id_expr(expr: str) -> str:
    """A W3C span id from any id: 16 hex kept, else the first 16 hex of its md5."""
    clean = f"lower({expr})"
    return (f"CASE WHEN {expr} IS NULL THEN NULL "
            f"WHEN regexp_full_match({clean}, '[0-9a-f]{{16}}') THEN {clean} "
            f"ELSE substr(md5(CAST({expr} AS VARCHAR)), 1, 16) END")


def environment_expr(expr: str, default: str) -> str:
    """The contract environment from a free label (production -> prod, ...), else ``default``.

    An unknown label is kept as it is, so the validator quarantines it with its reason.
    """
    pairs = ", ".join(f"{_q(k)}: {_q(v)}" for k, v in ENVIRONMENT_SYNONYMS.items())
    low = f"lower(trim({expr}))"
    return (f"CASE WHEN {expr} IS NULL OR {low} IN ('', 'default') THEN {_q(default)} "
            f"ELSE coalesce(MAP {{{pairs}}}[{low}], {expr}) END")


def preview_expr(expr: str) -> str:
    """A tier-2 preview of free text: cut to the preview length (masking happens on landing)."""
    n = PREVIEW_CHARS
    return (f"CASE WHEN length({expr}) > {n} THEN substr({expr}, 1, {n - 1}) || '…' "
            f"ELSE {expr} END")


def lit(value: str) -> str:
    """A SQL string literal."""
    return _q(value)
