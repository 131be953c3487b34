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


def unexplained_errors(care_plan: dict, issues: list, variant: str, hook: str, applied_when_unknown) -> list[str]:
    """The evaluation errors of one $apply that no outcome reports to the clinician.

    A feature that raised is reported when an action of the RequestGroup names it as a failed feature; it
    needs no report when no rule action that reads it would apply with the feature simply unknown
    (`applied_when_unknown(feature)`: the applied action ids of the same call with the feature's expression
    replaced by `{}`), since then no advice depends on it. Any other error (a condition, a dynamic value) is
    unexplained."""
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
        if feature in named:
            continue
        readers = {a.id for a in m.actions_reading(variant, feature, hook)} & applied_when_unknown(feature)
        if readers:
            out.append(f"feature {feature} failed and no outcome says so; {sorted(readers)} read it")
    return out


class UnknownRuns:
    """$apply of one call with one case feature simply unknown (its expression `{}`), on a knowledge base of
    its own."""

    def __init__(self, pathway: str, record: list[dict], hook: str, drafts: list[dict], patient_id: str = ""):
        self.call = (pathway, record, hook, drafts, patient_id)
        self.kb = None

    def __call__(self, feature: str) -> set[str]:
        from app.reasoning import KnowledgeBase
        from tests.proof.model import artifacts
        from tests.proof.records import applied_ids, apply

        if self.kb is None:
            self.kb = KnowledgeBase(artifacts())
        self.kb.add(unknown_library(feature))
        pathway, record, hook, drafts, patient_id = self.call
        return applied_ids(apply(self.kb, pathway, record, hook, drafts, patient_id=patient_id)[0])


def unknown_library(feature: str) -> dict:
    """The case-feature Library with `feature`'s expression replaced by the empty collection."""
    import copy

    from tests.proof.model import CASE_FEATURE_URL, LIBRARY, knowledge

    library = copy.deepcopy(knowledge().resolve(LIBRARY, "Library"))
    for ext in library.get("extension", []):
        value = ext.get("valueExpression") or {}
        if ext.get("url") == CASE_FEATURE_URL and value.get("name") == feature:
            value["expression"] = "{}"
            return library
    raise AssertionError(f"feature {feature} not found")


class _Poisoned(Exception):
    """Raised when an expression reads a feature it must not depend on."""


def reads_when_failing(kb, record: list[dict], hook: str, drafts: list[dict], feature: str,
                       conditions: tuple[str, ...]) -> bool:
    """Whether the applicability conditions of a rule action (the enclosing actions' first) read `feature`, or a
    feature whose own evaluation read it, when evaluated in order on this record — found without the engine's own
    read tracking: the feature is a variable that raises when read, every feature is evaluated in declaration
    order over the others' values (one that raises because of it raises whenever read too), and the conditions are
    evaluated until one is false. An action whose conditions complete without raising gets a value that does not
    depend on the feature in any way (docs/fail-safe.md: "depended on" means "read")."""
    from app.fhirpath import Scope, compile_expression, evaluate, singleton_boolean
    from app.reasoning.features import patient_context
    from tests.proof.model import LIBRARY
    from tests.proof.records import TODAY

    poisoned = {feature}

    class PoisonScope(Scope):
        def missing(self, name: str):
            if name in poisoned:
                raise _Poisoned(name)
            return super().missing(name)

    patient = next((r for r in record if r.get("resourceType") == "Patient" and r.get("id")), None)
    context = patient_context(record, subject=patient, today=TODAY, draft_orders=list(drafts),
                              selections=list(drafts) if hook == "order-sign" else [], terminology=kb.terminology)
    scope = PoisonScope()
    for name, value in context.variables().items():
        scope.put(name, value)
    for item in kb.artifact(LIBRARY, "Library").features:
        if item.name in poisoned:
            continue
        try:
            scope[item.name] = evaluate(item.expression, context.focus, scope, context.env)
        except _Poisoned:
            poisoned.add(item.name)
        except Exception:  # noqa: BLE001 — a feature that fails by itself is unknown, as in the engine
            scope[item.name] = []
    for text in conditions:
        try:
            value = evaluate(compile_expression(text), context.focus, scope, context.env)
        except _Poisoned:
            return True
        except Exception:  # noqa: BLE001 — a condition that raises is reported whatever it read
            return True
        try:
            if singleton_boolean(value) is False:
                return False  # the rule is not reached: nothing below this condition is evaluated
        except Exception:  # noqa: BLE001
            return True
    return False
