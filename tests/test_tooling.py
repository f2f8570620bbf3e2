"""CI runs the linters: `make lint` (ruff, mypy, sqlfluff) is a step of `.ci/run`, and the lint
configuration points at files that exist."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _recipe(target: str) -> list[str]:
    """The recipe lines of ``target`` in the Makefile (continuations joined)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert match, f"no target {target}"
    return [line.strip() for line in match.group(1).splitlines()]


def test_ci_runs_lint_and_tests_one_command_per_line() -> None:
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert "make lint" in commands and "make test" in commands
    assert commands.index("make lint") < commands.index("make test")  # fail fast


def test_make_lint_runs_ruff_mypy_and_sqlfluff_on_the_models() -> None:
    recipe = " ".join(_recipe("lint"))
    assert re.search(r"ruff check python tests notebooks", recipe)
    assert re.search(r"mypy python/tracehouse", recipe)
    assert re.search(r"sqlfluff lint models --processes", recipe)


def test_sqlfluff_config_and_ignores_are_current() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".sqlfluff")
    assert config["sqlfluff"]["templater"] == "dbt"
    assert config["sqlfluff"]["dialect"] == "duckdb"
    assert config["sqlfluff:templater:dbt"]["target"] == "duckdb"
    ignored = [line.strip() for line in (ROOT / ".sqlfluffignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ignored and all((ROOT / path).is_file() for path in ignored), ignored
