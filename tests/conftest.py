"""Shared pytest hooks."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the redaction corpus size (recorded by tests/test_redaction_corpus.py), also under
    xdist, where a test's own output is not shown."""
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get(
        "failed", []
    ):
        for name, value in getattr(report, "user_properties", []):
            if name == "redaction_variants" and report.when == "call":
                terminalreporter.write_line(f"redaction corpus: {value} variants tried")
