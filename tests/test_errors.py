"""One error base, handled once by the command line.

Every error class tracehouse defines derives from ``tracehouse.errors.TracehouseError``; the
root command group turns one into a single line on stderr and the error's exit code (1 failed,
2 configuration, 75 locked), with the traceback only under ``--debug`` / ``TRACEHOUSE_DEBUG``;
and no command catches tracehouse's errors itself.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracehouse.cli import app, report_error
from tracehouse.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_LOCKED,
    ConfigurationError,
    NotPublishedError,
    TracehouseError,
)
from tracehouse.pipeline import PipelineError
from tracehouse.runlock import run_lock

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "tracehouse"
# Command modules may still catch these, because they do more than report them:
# `check` prints the failed mart suite and goes on to the verdict; `trace --content` says the
# tier-3 content was not shown.
HANDLED_IN_COMMANDS = {
    ("quality.py", "QualityError"),
    ("artifacts.py", "AccessRefusedError"),
    ("artifacts.py", "AuditWriteError"),
    ("artifacts.py", "PolicyError"),
    ("artifacts.py", "ArtifactKeyError"),
}


def _error_classes() -> list[tuple[str, str]]:
    """(module, class) of every class named *Error / *Exception in the package's source."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                rel = path.relative_to(PACKAGE.parent).with_suffix("")
                module = ".".join(p for p in rel.parts if p != "__init__")
                found.append((module, node.name))
    return found


def test_every_error_class_derives_from_the_one_base():
    classes = _error_classes()
    assert len(classes) >= 30  # the package defines that many; the walk must see them
    stray = []
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        if not issubclass(cls, TracehouseError):
            stray.append(f"{module}.{name}")
    assert not stray, f"errors outside the TracehouseError hierarchy: {stray}"


def test_domain_errors_keep_their_builtin_bases_and_exit_codes():
    from tracehouse.lake import LakeError
    from tracehouse.redaction import MissingHashKeyError
    from tracehouse.runlock import RunLockedError
    from tracehouse.trace_view import TraceNotFoundError

    assert issubclass(LakeError, ValueError)  # callers that catch the builtin still work
    assert issubclass(TraceNotFoundError, LookupError)
    assert issubclass(NotPublishedError, FileNotFoundError)
    assert issubclass(MissingHashKeyError, ConfigurationError)
    assert MissingHashKeyError.exit_code == EXIT_CONFIG == 2
    assert RunLockedError.exit_code == EXIT_LOCKED == 75
    assert PipelineError.exit_code == EXIT_FAILED == 1


def test_no_command_catches_tracehouse_errors_itself():
    names = {name for _module, name in _error_classes()} | {"TracehouseError"}
    caught = []
    for path in sorted((PACKAGE / "commands").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                for t in types:
                    name = t.id if isinstance(t, ast.Name) else getattr(t, "attr", "")
                    if name in names and (path.name, name) not in HANDLED_IN_COMMANDS:
                        caught.append(f"{path.name}:{node.lineno} {name}")
    assert not caught, f"commands catching what tracehouse.cli handles once: {caught}"


def test_report_error_prints_one_line_and_the_hint(capsys):
    code = report_error(PipelineError("step build failed:\n  dbt exited 1"))
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err == ["error: step build failed: dbt exited 1",
                   "The previously published marts are unchanged."]


def test_cli_maps_errors_to_one_line_and_exit_code(tmp_path):
    runner = CliRunner()
    empty = tmp_path / "warehouse"
    empty.mkdir()
    res = runner.invoke(app, ["summary", "--warehouse", str(empty)])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [
        f"error: nothing published in {empty} (no marts.duckdb): run `tracehouse run` first"
    ]
    assert "Traceback" not in res.output

    # A held run lock: exit 75 whatever the command that needs the lock.
    with run_lock(empty, "holder-run", datetime.now(UTC).isoformat()):
        res = runner.invoke(app, ["check", "--lake", str(tmp_path / "lake"),
                                  "--warehouse", str(empty)])
    assert res.exit_code == EXIT_LOCKED, res.output
    assert "run holder-run" in res.stderr and "already running" in res.stderr

    # --debug: the error propagates with its traceback instead.
    res = runner.invoke(app, ["--debug", "summary", "--warehouse", str(empty)])
    assert isinstance(res.exception, NotPublishedError)


@pytest.mark.parametrize("debug", [False, True])
def test_console_script_traceback_only_with_debug(tmp_path, debug):
    env = {k: v for k, v in os.environ.items() if k != "TRACEHOUSE_DEBUG"}
    if debug:
        env["TRACEHOUSE_DEBUG"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", "from tracehouse.cli import main; main()",
         "traces", "--warehouse", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 1
    if debug:
        assert "Traceback" in proc.stderr and "NotPublishedError" in proc.stderr
    else:
        assert proc.stderr.strip().splitlines() == [
            f"error: nothing published in {tmp_path} (no marts.duckdb): run `tracehouse run` "
            "first"
        ]
