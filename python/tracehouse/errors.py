"""The one error base of tracehouse, and the exit codes the command line maps errors to.

Every error that tracehouse raises on purpose, to tell a person what is wrong with their
input, data, configuration or warehouse, derives from :class:`TracehouseError`. Domain errors
keep their historical builtin base as well (``LakeError`` is still a ``ValueError``), so code
that catches the builtin keeps working. ``tracehouse.cli`` handles the base once: one line on
stderr, the error's :attr:`~TracehouseError.exit_code`, no traceback unless ``--debug`` or
``TRACEHOUSE_DEBUG=1``. Anything else that escapes a command is a bug and keeps its traceback.

This module imports nothing of ours, so every module can import it.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_FAILED = 1  # the command failed: bad input, data or state (the message says which)
EXIT_CONFIG = 2  # a required secret, setting or optional package is missing or wrong
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the warehouse; nothing was done


class TracehouseError(Exception):
    """Base of every error tracehouse reports to a person.

    Subclasses set :attr:`exit_code` (the command line's exit status for it) and may set
    :attr:`hint`, a second line printed after the message.
    """

    exit_code: ClassVar[int] = EXIT_FAILED
    hint: ClassVar[str | None] = None


class ConfigurationError(TracehouseError):
    """A required secret, setting or optional package is missing or wrong (exit 2)."""

    exit_code: ClassVar[int] = EXIT_CONFIG


class InvalidInputError(TracehouseError, ValueError):
    """A value given to a library function or a command is not acceptable (exit 1)."""


class NotPublishedError(TracehouseError, FileNotFoundError):
    """The warehouse has no publication (or lacks a published mart) yet: run the pipeline."""
