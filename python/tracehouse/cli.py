"""The `tracehouse` command line: a thin face over library functions.

Each area registers its commands from its own module in ``tracehouse.commands``; command
modules import only typer at load time and their libraries inside the command body, so that
``tracehouse --help`` stays fast.

Errors are handled here, once, for every command: a :class:`~tracehouse.errors.TracehouseError`
raised anywhere below a command becomes one line on stderr (``error: <message>``, plus the
error's hint line if it has one) and the error's exit code (1 failed, 2 configuration, 75 the
warehouse is locked by another run). ``tracehouse --debug ...`` or ``TRACEHOUSE_DEBUG=1`` shows
the traceback instead. Commands therefore do not catch tracehouse's errors themselves.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from tracehouse.errors import TracehouseError

DEBUG_ENV = "TRACEHOUSE_DEBUG"


def report_error(exc: TracehouseError) -> int:
    """Print ``exc`` for a person (one line on stderr, then its hint); return its exit code."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    typer.secho(f"error: {message}", err=True, fg="yellow" if exc.exit_code == 75 else "red")
    if exc.hint:
        typer.secho(exc.hint, err=True)
    return exc.exit_code


class TracehouseGroup(TyperGroup):
    """The root command group: runs a command and turns a TracehouseError into an exit code."""

    def invoke(self, ctx: Any) -> Any:
        """Invoke the command; a TracehouseError is reported by :func:`report_error`."""
        try:
            return super().invoke(ctx)
        except TracehouseError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            raise typer.Exit(report_error(exc)) from None


app = typer.Typer(
    name="tracehouse",
    help="An analytics warehouse for production LLM systems.",
    cls=TracehouseGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar=DEBUG_ENV,
                     help="Show the traceback of an error instead of one line. "
                     f"Env: {DEBUG_ENV}=1."),
    ] = False,
) -> None:
    """An analytics warehouse for production LLM systems."""
    ctx.obj = {"debug": debug}


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
    "tracehouse.commands.artifacts",
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
