"""`tracehouse.pipeline.run` is the only thing that chains the steps.

Publishing is the step that makes marts visible to readers, so only the pipeline may call
``tracehouse.publish.publish`` (after the mart checks); the Dagster assets call the pipeline's
own step functions, one per asset; the evaluation runner of tests and bench calls the pipeline;
`tracehouse detect` prints and writes nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "tracehouse"


def _imports(path: Path) -> set[tuple[str, str]]:
    """(module, name) of every ``from module import name`` in ``path``, at any depth."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.update((node.module, alias.name) for alias in node.names)
    return out


def test_only_the_pipeline_publishes() -> None:
    publishers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                        if ("tracehouse.publish", "publish") in _imports(p))
    assert publishers == ["pipeline.py"]


def test_the_evaluation_runner_and_dagster_go_through_the_pipeline() -> None:
    evalrun = _imports(PACKAGE / "detect" / "evalrun.py")
    assert ("tracehouse.pipeline", "run") in evalrun
    assert ("tracehouse.warehouse", "build") not in evalrun
    dagster = _imports(PACKAGE / "dagster_defs.py")
    assert {("tracehouse.pipeline", "step_publish"),
            ("tracehouse.pipeline", "step_check_marts")} <= dagster


def test_detect_command_writes_nothing() -> None:
    detect = _imports(PACKAGE / "commands" / "detect.py")
    assert ("tracehouse.pipeline", "step_detect") not in detect
    assert ("tracehouse.detect.job", "run_detection") not in detect  # it writes the marts
    assert not {name for module, name in detect if module == "tracehouse.publish"}
