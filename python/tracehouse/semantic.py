"""The semantic layer: MetricFlow (`mf`) over the published marts, with the project's paths set.

`mf` runs against the dbt target `published`: the current publication's `W/marts.duckdb`,
attached read-only, so a query never blocks (or is blocked by) a run, and always sees one whole
publication.

The semantic models and metrics live in `models/marts/semantic/_semantic__models.yml`. `mf`
must run from the dbt project folder with the profile found; :func:`mf_env` gives the
environment for that (a user can export the same variables and call `mf` by hand), and
:func:`query` runs `mf query` and returns its rows as an Arrow table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from tracehouse.errors import TracehouseError
from tracehouse.warehouse import WarehouseError, project_dir

SEMANTIC_MANIFEST = "semantic_manifest.json"
#: Written beside the manifest when `dbt parse` ran for the `published` target.
PARSED_FOR = ".semantic_target"


class SemanticLayerError(TracehouseError, RuntimeError):
    """`mf` is missing or failed."""


def mf_executable() -> str:
    """Return the `mf` executable beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name("mf")
    if beside.is_file():
        return str(beside)
    found = shutil.which("mf")
    if not found:
        raise SemanticLayerError(
            "MetricFlow's `mf` is not installed: pip install 'tracehouse[semantic]'"
        )
    return found


def mf_env(
    warehouse: Path | str, lake: Path | str | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return the environment in which `mf` finds the project, the profile and the warehouse."""
    project = project_dir()
    warehouse = Path(warehouse).resolve()
    env = dict(os.environ if base is None else base)
    env.pop("DBT_TARGET_PATH", None)  # mf reads the manifest from the project's target/
    env.update({
        "DBT_PROFILES_DIR": str(project),
        "DBT_PROJECT_DIR": str(project),
        "TRACEHOUSE_WAREHOUSE": str(warehouse),
        "DBT_LOG_PATH": str(warehouse / "_dbt" / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # Readers never open the build database: mf queries the current publication.
        "TRACEHOUSE_DBT_TARGET": "published",
    })
    if lake is not None:
        env["TRACEHOUSE_LAKE"] = str(Path(lake).resolve())
    return env


def _manifest_is_stale(project: Path) -> bool:
    manifest = project / "target" / SEMANTIC_MANIFEST
    marker = project / "target" / PARSED_FOR
    if not (manifest.is_file() and marker.is_file()):
        return True
    built = manifest.stat().st_mtime
    # Another dbt command (a build, Dagster's parse) rewrote the manifest for another target.
    if built > marker.stat().st_mtime + 1:
        return True
    sources = [project / "dbt_project.yml", project / "profiles.yml"]
    for folder in ("models", "macros", "seeds"):
        sources += (project / folder).rglob("*.*")
    return any(p.stat().st_mtime > built for p in sources if p.is_file())


def ensure_semantic_manifest(warehouse: Path | str) -> Path:
    """Run `dbt parse` when `target/semantic_manifest.json` is older than the project's files.

    `mf` reads the semantic manifest from the project's `target/` and does not parse the project
    itself; a stale manifest would answer with old metric definitions.
    """
    project = project_dir()
    if _manifest_is_stale(project):
        dbt = Path(sys.executable).with_name("dbt")
        done = subprocess.run(
            [str(dbt) if dbt.is_file() else "dbt", "parse", "--quiet"], cwd=project,
            env=mf_env(warehouse), capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            tail = done.stdout[-2000:] + done.stderr[-2000:]
            raise SemanticLayerError(f"dbt parse failed: {tail}")
        (project / "target" / PARSED_FOR).write_text("published\n", encoding="utf-8")
    return project / "target" / SEMANTIC_MANIFEST


def run_mf(
    args: Sequence[str], warehouse: Path | str, *, lake: Path | str | None = None,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `mf ARGS` from the project folder against ``warehouse``; raise if it fails."""
    try:
        cwd = project_dir()
    except WarehouseError as exc:
        raise SemanticLayerError(str(exc)) from exc
    ensure_semantic_manifest(warehouse)
    done = subprocess.run(
        [mf_executable(), *args], cwd=cwd, env=mf_env(warehouse, lake),
        capture_output=capture, text=True, check=False,
    )
    if done.returncode != 0:
        detail = (done.stdout or "")[-2000:] + (done.stderr or "")[-2000:] if capture else ""
        raise SemanticLayerError(f"mf {' '.join(args[:1])} failed ({done.returncode}): {detail}")
    return done


def query(
    metrics: Sequence[str],
    group_by: Sequence[str],
    warehouse: Path | str,
    *,
    where: str | None = None,
) -> pa.Table:
    """Return the rows of `mf query --metrics ... --group-by ...` as an Arrow table."""
    with tempfile.TemporaryDirectory(prefix="tracehouse-mf-") as tmp:
        out = Path(tmp) / "result.csv"
        args = ["query", "--metrics", ",".join(metrics), "--group-by", ",".join(group_by),
                "--csv", str(out), "--quiet"]
        if where:
            args += ["--where", where]
        run_mf(args, warehouse)
        return pacsv.read_csv(out)
