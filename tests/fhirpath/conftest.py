"""Prints the official FHIRPath suite figure after the test run."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.fhirpath.suite import RESULTS

    if RESULTS:
        passed = sum(ok for ok, _ in RESULTS.values())
        terminalreporter.write_line(
            f"FHIRPath R4 official suite: {passed} / {len(RESULTS)} active cases passed "
            f"({100 * passed / len(RESULTS):.1f} %)"
        )
