"""The `tracehouse` command line: a thin face over library functions.

Each area registers its commands from its own module in ``tracehouse.commands``; command
modules import only typer at load time and their libraries inside the command body, so that
``tracehouse --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os

import typer

app = typer.Typer(
    name="tracehouse",
    help="An analytics warehouse for production LLM systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module exposes `register(app: typer.Typer) -> None`.
COMMAND_MODULES = (
    "tracehouse.commands.lake",
    "tracehouse.commands.generate",
    "tracehouse.commands.run",
    "tracehouse.commands.summary",
    "tracehouse.commands.ingest",
    "tracehouse.commands.detect",
    "tracehouse.commands.inspect",
    "tracehouse.commands.quality",
    "tracehouse.commands.alerts",
    "tracehouse.commands.semantic",
    "tracehouse.commands.review",
    "tracehouse.commands.evals",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # an area not built yet in this checkout
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    """Entry point of the `tracehouse` console script."""
    logging.basicConfig(level=os.environ.get("TRACEHOUSE_LOG_LEVEL", "WARNING"))
    app()
