"""Puts the fuzz summary (executions per target) in pytest's terminal summary, where -q and output
capture cannot hide it."""

from __future__ import annotations

import pytest

SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("fuzz")
        for line in SUMMARY:
            terminalreporter.write_line(line)
