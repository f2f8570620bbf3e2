"""What the warehouse build tests share: a dbt invocation that must have passed, and comparing two
warehouses' tables row for row (the incremental == full refresh tests)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from tracehouse.warehouse import BuildResult, warehouse_db


def assert_built(result: BuildResult) -> BuildResult:
    """``result``, after asserting the dbt invocation passed (its failures are the message)."""
    assert result.success, "\n".join(result.failures)
    return result


def warehouse_table(warehouse: Path, table: str) -> pa.Table:
    """``table`` of ``warehouse`` without its ``*_loaded_at`` columns: those say which build
    wrote a row (and int_traces_stamped copies them), so they differ between builds by design.
    Each warehouse is opened under its own name: views (fct_spans) name their catalog."""
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        rel = con.sql(f"select * from {table}")
        return rel.select(", ".join(f'"{c}"' for c in rel.columns
                                    if not c.endswith("_loaded_at"))).to_arrow_table()
    finally:
        con.close()


def assert_same_rows(incremental: pa.Table, full: pa.Table, table: str) -> None:
    """The two tables hold the same rows, duplicates counted (``except all`` both ways), and at
    least one."""
    assert incremental.num_rows == full.num_rows, (
        f"{table}: {incremental.num_rows} incremental, {full.num_rows} full"
    )
    assert incremental.num_rows > 0, table
    con = duckdb.connect()
    try:
        con.register("inc", incremental)
        con.register("ful", full)
        for a, b in (("inc", "ful"), ("ful", "inc")):
            diff = con.execute(
                f"select count(*) from (select * from {a} except all select * from {b})"
            ).fetchall()[0][0]
            assert diff == 0, f"{table}: {diff} rows of {a} not in {b}"
    finally:
        con.close()
