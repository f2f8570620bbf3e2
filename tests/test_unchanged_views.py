"""Views whose SQL did not change are kept, not re-created, on a run that allows it
(macros/materializations/view.sql), and a changed view definition is applied on the next run.

A small lake is built once; then a staging view is replaced by hand with a body that returns no
rows but keeps the comment (the digest of its dbt SQL). With TRACEHOUSE_KEEP_UNCHANGED_VIEWS=1 a
build keeps it (the planted body stays: nothing re-created it); without it, or when the view's
SQL changed in the project, the build re-creates it from the project. Its data test runs either
way. `tracehouse run` sets the variable on an incremental run whose project is unchanged
(tracehouse.pipeline.SLICED_RUN_ENV).
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.test_incremental_loads import SEED
from tracehouse.changes import PROJECT_PARTS
from tracehouse.pipeline import SLICED_RUN_ENV
from tracehouse.warehouse import BuildResult, dbt_invoke, project_dir, warehouse_db

pytestmark = pytest.mark.slow

VIEW = "stg_lake__feedback"
RELATION = f"staging.{VIEW}"
KEEP = {"TRACEHOUSE_KEEP_UNCHANGED_VIEWS": "1"}
SELECT = ["--select", f"+{VIEW}", "--exclude", "test_type:unit source:lake"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tracehouse.generator import generate

    tmp_path = tmp_path_factory.mktemp("views")
    lake, warehouse = tmp_path / "lake", tmp_path / "wh"
    generate(lake, start=date(2026, 1, 1), days=1, traces_per_day=30, seed=SEED, progress=False)
    res = _build(lake, warehouse)
    assert res.success, res.failures
    return lake, warehouse


def _build(lake: Path, warehouse: Path, env: dict[str, str] | None = None) -> BuildResult:
    return dbt_invoke(["build", *SELECT], lake=lake, warehouse=warehouse, extra_env=env)


def _copy(built: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    lake, warehouse = built
    shutil.copytree(warehouse, tmp_path / "wh")
    return lake, tmp_path / "wh"


def _plant_empty_body(warehouse: Path) -> None:
    """Replace the view by one that returns no rows, keeping the comment dbt's SQL left."""
    con = duckdb.connect(str(warehouse_db(warehouse)))
    try:
        row = con.execute(
            "select comment, sql from duckdb_views() where schema_name = 'staging' "
            "and view_name = ?", [VIEW]).fetchone()
        assert row is not None and str(row[0]).startswith("tracehouse:"), row
        assert con.execute(f"select count(*) from {RELATION}").fetchone() != (0,)
        con.execute(f"create or replace view {RELATION} as "
                    f"select * from staging.base_lake__feedback where false")
        con.execute(f"comment on view {RELATION} is '{row[0]}'")
    finally:
        con.close()


def _rows(warehouse: Path) -> int:
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        found = con.execute(f"select count(*) from {RELATION}").fetchone()
    finally:
        con.close()
    assert found is not None
    return int(found[0])


def _node(res: BuildResult, name: str) -> object:
    return next(r for r in res.results if r.node.name == name)


def test_the_pipeline_keeps_unchanged_views_on_an_unchanged_project() -> None:
    assert SLICED_RUN_ENV.get("TRACEHOUSE_KEEP_UNCHANGED_VIEWS") == "1"


def test_an_unchanged_view_is_kept_and_its_test_still_runs(
    built: tuple[Path, Path], tmp_path: Path,
) -> None:
    lake, warehouse = _copy(built, tmp_path)
    _plant_empty_body(warehouse)
    res = _build(lake, warehouse, KEEP)
    assert res.success, res.failures
    assert "KEEP" in str(_node(res, VIEW).message)  # type: ignore[attr-defined]
    assert _rows(warehouse) == 0  # the planted body is still there: nothing re-created the view
    tests = [r for r in res.results if r.node.resource_type == "test"
             and VIEW in r.node.depends_on.nodes[-1]]
    assert tests and all(str(r.status) == "pass" for r in tests)


def test_without_the_variable_every_view_is_recreated(
    built: tuple[Path, Path], tmp_path: Path,
) -> None:
    lake, warehouse = _copy(built, tmp_path)
    _plant_empty_body(warehouse)
    res = _build(lake, warehouse)
    assert res.success, res.failures
    assert _rows(warehouse) > 0


def test_a_changed_view_definition_is_applied_on_the_next_run(
    built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake, warehouse = _copy(built, tmp_path)
    _plant_empty_body(warehouse)
    project = tmp_path / "project"
    for part in PROJECT_PARTS:
        src = project_dir() / part
        if src.is_dir():
            shutil.copytree(src, project / part)
        else:
            (project / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, project / part)
    model = project / "models" / "staging" / "lake" / f"{VIEW}.sql"
    model.write_text(model.read_text().replace(
        "        ingest_time\n", "        ingest_time,\n        1 as probe_column\n"))
    monkeypatch.setenv("TRACEHOUSE_DBT_PROJECT_DIR", str(project))
    res = _build(lake, warehouse, KEEP)
    assert res.success, res.failures
    assert "KEEP" not in str(_node(res, VIEW).message)  # type: ignore[attr-defined]
    assert _rows(warehouse) > 0
    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        columns = [r[0] for r in con.execute(f"describe {RELATION}").fetchall()]
    finally:
        con.close()
    assert "probe_column" in columns
