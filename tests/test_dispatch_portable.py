"""Every dispatched macro has a `default__` that is portable SQL or a clear compile error.

Engine-specific SQL lives only in `duckdb__` / `spark__` macros (issue 10). A `default__` is what
any other adapter gets: it must be ANSI SQL (no Spark or DuckDB dialect) or call `not_ported()` /
`exceptions.raise_compiler_error`, which names the adapter that lacks a version. This test reads
the macros (no dbt run): each dispatch has a `default__`, and no `default__` that returns SQL uses a
construct from either engine's dialect.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

MACROS = Path(__file__).resolve().parents[1] / "macros"

MACRO_RE = re.compile(
    r"{%-?\s*macro\s+(\w+)\s*\(.*?%}(.*?){%-?\s*endmacro\s*-?%}", re.DOTALL
)
DISPATCH_RE = re.compile(r"adapter\.dispatch\(\s*'(\w+)'\s*,\s*'tracehouse'\s*\)")
COMMENT_RE = re.compile(r"{#.*?#}", re.DOTALL)
ERRORS = ("not_ported(", "raise_compiler_error(")

# Dialect constructs that must not appear in a default__ (lowercase source, comments removed).
SPARK_ONLY = {
    "string type": r"\bas string\b|\bstring\s*[,)]",
    "backtick quoting": r"`",
    "using parquet": r"\busing\s+parquet\b",
    "insert overwrite": r"\binsert\s+overwrite\b",
    "explode": r"\b(posexplode|explode)\s*\(",
    "lateral view": r"\blateral\s+view\b",
    "null-safe <=>": r"<=>",
    "array<>/struct<>": r"\b(array|struct|map)\s*<",
    "parquet.`path`": r"\bparquet\.",
    "collect_list/set": r"\bcollect_(list|set)\s*\(",
    "spark json": r"\b(get_json_object|from_json)\s*\(",
    "spark arrays": r"\b(size|array_contains|array_except|array_distinct|array_sort|flatten)\s*\(",
    "datediff": r"\bdatediff\s*\(",
    "percentile()": r"\bpercentile\s*\(",
    "limit 0": r"\blimit\s+0\b",
    "describe": r"\bdescribe\b",
}
DUCKDB_ONLY = {
    ":: cast": r"::",
    "read_parquet/read_blob/glob": r"\b(read_parquet|read_blob|glob)\s*\(",
    "list_ functions": r"\blist_\w+\s*\(",
    "struct_pack": r"\bstruct_pack\s*\(",
    "[] list type": r"\w\[\]",
    "union by name": r"\bunion\s+all\s+by\s+name\b",
    "timestamptz": r"\btimestamptz\b",
    "quantile": r"\bquantile(_cont|_disc)?\s*\(",
    "duckdb json": r"\bjson_extract\w*\s*\(",
    "anti/semi join": r"\b(anti|semi)\s+join\b",
    "qualify": r"\bqualify\b",
    "hive_partitioning": r"\bhive_partitioning\b",
}
NOT_ANSI = {"create or replace": r"\bcreate\s+or\s+replace\b"}
FORBIDDEN = {**SPARK_ONLY, **DUCKDB_ONLY, **NOT_ANSI}


def _macros() -> dict[str, tuple[Path, str]]:
    found: dict[str, tuple[Path, str]] = {}
    for path in sorted(MACROS.rglob("*.sql")):
        for match in MACRO_RE.finditer(path.read_text()):
            found[match.group(1)] = (path, match.group(2))
    return found


def dialect_constructs(body: str) -> list[str]:
    """The engine-specific constructs a macro body uses (Jinja comments ignored)."""
    text = COMMENT_RE.sub("", body).lower()
    return [name for name, pattern in FORBIDDEN.items() if re.search(pattern, text)]


def is_compile_error(body: str) -> bool:
    """The body raises a compile error naming the adapter (via not_ported or dbt's raise)."""
    return any(marker in COMMENT_RE.sub("", body) for marker in ERRORS)


def test_the_detector_flags_engine_sql() -> None:
    """The scan catches the Spark and DuckDB spellings it is meant to keep out of default__."""
    spark_view = (
        "create or replace view lake_raw.content_access as select "
        "cast(null as string) as access_id, cast(null as timestamp) as accessed_at limit 0"
    )
    assert {"string type", "limit 0", "create or replace"} <= set(dialect_constructs(spark_view))
    assert "insert overwrite" in dialect_constructs("insert overwrite table t select * from k")
    assert ":: cast" in dialect_constructs("select x::varchar from t")
    assert "read_parquet/read_blob/glob" in dialect_constructs("from read_parquet('a/*.parquet')")
    assert dialect_constructs("{#- Spark: `x` as string -#} select cast(x as date) from t") == []
    assert dialect_constructs("percentile_cont(0.5) within group (order by x)") == []


def test_every_dispatched_macro_has_a_default() -> None:
    macros = _macros()
    dispatched = {
        name for path in MACROS.rglob("*.sql") for name in DISPATCH_RE.findall(path.read_text())
    }
    assert len(dispatched) > 20, "the scan found too few dispatched macros"
    missing = sorted(n for n in dispatched if f"default__{n}" not in macros)
    assert not missing, f"dispatched macros without a default__: {missing}"
    # Every engine version belongs to a dispatched macro (a typo would never be called).
    orphans = sorted(
        name for name in macros
        if name.startswith(("duckdb__", "spark__", "default__"))
        and name.split("__", 1)[1] not in dispatched
        and not name.startswith("spark__load_csv_rows")  # dbt-spark's own dispatch
        and name != "duckdb__get_delete_insert_merge_sql"  # dbt's own dispatch (span_days.sql)
    )
    assert not orphans, f"engine versions of macros that are never dispatched: {orphans}"


@pytest.mark.parametrize(
    "name", sorted(n for n in _macros() if n.startswith("default__"))
)
def test_default_is_portable_sql_or_a_compile_error(name: str) -> None:
    path, body = _macros()[name]
    if is_compile_error(body):
        return
    used = dialect_constructs(body)
    assert not used, (
        f"{name} ({path.relative_to(MACROS.parent)}) uses engine-specific SQL {used}: move it to "
        "a duckdb__/spark__ version and make the default ANSI SQL or not_ported()"
    )
