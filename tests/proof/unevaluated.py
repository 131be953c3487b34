"""Whether the evaluation errors of an $apply reach the clinician as "could not be evaluated" outcomes.

The one place that knows how an applied pathway says a rule could not be evaluated (docs/fail-safe.md): a
RequestGroup action with the evaluation-outcome extension (`not-evaluated`, or `incomplete` for an action that
applied on a partly unknown input) naming the failed feature(s) in failed-feature extensions. Every generated
family asks it.
"""

from __future__ import annotations

import re

from tests.proof.model import model
from tests.proof.records import applied_actions

BASE = "https://lbp-pathway.org/fhir/StructureDefinition"
EVALUATION_OUTCOME = f"{BASE}/evaluation-outcome"
FAILED_FEATURE = f"{BASE}/failed-feature"
ERRORS = ("error", "fatal")
_FEATURE_ERROR = re.compile(r"feature (\w+) could not be evaluated")
RULES = "https://lbp-pathway.org/fhir/CodeSystem/lbp-rules"


def outcome_of(action: dict) -> str | None:
    return next((e.get("valueCode") for e in action.get("extension", []) or [] if e.get("url") == EVALUATION_OUTCOME),
                None)


def failed_features_of(action: dict) -> set[str]:
    return {e.get("valueString") for e in action.get("extension", []) or [] if e.get("url") == FAILED_FEATURE}


def not_evaluated(care_plan: dict) -> list[dict]:
    """The RequestGroup actions that say their rule could not be evaluated."""
    return [a for a in applied_actions(care_plan) if outcome_of(a) == "not-evaluated"]


def rules_of(action: dict) -> set[str]:
    return {c.get("code") for cc in action.get("code", []) or [] for c in cc.get("coding", []) or []
            if c.get("system") == RULES}


def failed_in(issues: list) -> set[str]:
    """The case features whose own expression raised, from the issues of an $apply."""
    return {m.group(1) for i in issues if i.severity in ERRORS for m in [_FEATURE_ERROR.search(i.text)] if m}


def unexplained_errors(care_plan: dict, issues: list, variant: str, hook: str) -> list[str]:
    """The evaluation errors of one $apply that no outcome reports to the clinician.

    A feature that raised is reported when an action of the RequestGroup names it as a failed feature, or
    when no rule action of the variant that answers the hook reads it (then no advice depends on it). Any
    other error (a condition, a dynamic value) is unexplained."""
    m = model()
    out = []
    named = {f for a in applied_actions(care_plan) for f in failed_features_of(a)}
    for issue in issues:
        if issue.severity not in ERRORS:
            continue
        found = _FEATURE_ERROR.search(issue.text)
        if found is None:
            out.append(f"evaluation error without an outcome: {issue.text[:300]}")
            continue
        feature = found.group(1)
        if feature not in named and m.actions_reading(variant, feature, hook):
            readers = ", ".join(a.id for a in m.actions_reading(variant, feature, hook))
            out.append(f"feature {feature} failed and no outcome says so; read by {readers}")
    return out
