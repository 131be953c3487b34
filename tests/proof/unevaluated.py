"""Whether every evaluation error of an $apply has its "could not be evaluated" outcome (docs/proof-tests.md).

The one place that knows how an applied pathway says that a rule could not be evaluated; every generated family
asks it.
"""

from __future__ import annotations

ERRORS = ("error", "fatal")


def unexplained_errors(care_plan: dict, issues: list) -> list[str]:
    """The evaluation errors of one $apply that no outcome in the RequestGroup reports to the clinician."""
    return [f"evaluation error without an outcome: {i.text[:300]}" for i in issues if i.severity in ERRORS]
