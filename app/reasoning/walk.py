"""The one walk over a PlanDefinition's actions, shared by $apply and the pathway status.

https://hl7.org/fhir/R4/plandefinition.html#12.18.3.3 ("Applying a PlanDefinition"): each action's
applicability conditions are evaluated over the case features of the PlanDefinition's Library; an
action whose `definitionCanonical` names an eca-rule PlanDefinition is expanded in place with that
PlanDefinition's actions (evaluated with its own Library, else the caller's); sub-actions are walked
below an action whose conditions hold. With a `trigger`, only actions with a matching named-event
trigger (or below one) answer; grouping actions without a trigger pass the filter to their children.

Every action comes out with an :class:`Outcome` (docs/fail-safe.md):

- ``applies`` — every condition is true;
- ``not-applicable`` — a condition is false (decided even when another reads a failed feature);
- ``unknown`` — a condition is empty: a fact it needs is missing from the record (`blocked_by`);
- ``not-evaluated`` — a condition reads a case feature that failed at run time (directly or through
  other features) and is not decided without it, or the condition itself raised. Such an action is
  never dropped: $apply turns it into a "could not be evaluated" action, the status lists it.

An action that applies although a condition read a failed feature keeps `failed` so it can say that
its evidence is incomplete. Features that failed are evaluated as unknown (empty), so an outcome is
never other than it would be with the failing feature simply unknown, except that ``not-evaluated``
replaces a silent ``not-applicable``/``unknown``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import FHIRError, Issue
from app.fhirpath import FHIRPATH, CompiledExpression, compile_expression, singleton_boolean
from app.reasoning.failures import reason_of
from app.reasoning.features import FeatureValues, PatientContext, evaluate_features
from app.reasoning.knowledge import Artifact, KnowledgeBase

MAX_DEPTH = 8
DEFINITION_TYPES = ("PlanDefinition", "ActivityDefinition", "Questionnaire")


class Outcome(enum.StrEnum):
    """What the walk concluded about one action's applicability conditions."""

    APPLIES = "applies"
    NOT_APPLICABLE = "not-applicable"
    UNKNOWN = "unknown"
    NOT_EVALUATED = "not-evaluated"


@dataclass(frozen=True)
class Verdict:
    """The applicability of one action, and what it rested on."""

    outcome: Outcome
    failed: tuple[str, ...] = ()  # failed case features the conditions read (directly or not)
    blocked_by: tuple[str, ...] = ()  # empty features an undecided condition read
    problem: str | None = None  # why the conditions could not be evaluated (without patient data)
    where: str | None = None  # element path of the condition at fault

    @property
    def applies(self) -> bool:
        return self.outcome is Outcome.APPLIES

    @property
    def holds(self) -> bool | None:
        """True / False / None (undecided: unknown or not evaluated), the three-valued view."""
        if self.outcome is Outcome.APPLIES:
            return True
        if self.outcome is Outcome.NOT_APPLICABLE:
            return False
        return None


APPLIES = Verdict(Outcome.APPLIES)
NOT_APPLICABLE = Verdict(Outcome.NOT_APPLICABLE)


@dataclass
class Step:
    """One PlanDefinition action as walked: where it is, what decided it, what it would produce."""

    plan: Artifact
    action: Mapping[str, Any]
    path: str  # element path in `plan`, e.g. PlanDefinition.action[1].action[0]
    depth: int
    library: Artifact | None
    features: FeatureValues | None
    verdict: Verdict
    matched: bool  # at or below an action whose trigger matches (always False without a trigger)
    target: Artifact | None = None  # the resolved definitionCanonical
    target_problem: str | None = None  # why the definition cannot be used
    children: list[Step] = field(default_factory=list)  # nested PlanDefinition's actions, then sub-actions

    @property
    def id(self) -> str | None:
        value = self.action.get("id")
        return value if isinstance(value, str) else None

    @property
    def nests_plan(self) -> bool:
        return self.target is not None and self.target.resource_type == "PlanDefinition"

    def flatten(self) -> list[Step]:
        out = [self]
        for child in self.children:
            out.extend(child.flatten())
        return out


def conjuncts(text: str) -> list[str] | None:
    """The operands of a top-level `and` chain (None when the expression is not one).

    `and` binds tighter than `or`, `xor` and `implies` (FHIRPath N1 §6.5), so a top level holding any
    of those is not split; parentheses, brackets, braces, strings and quoted identifiers are skipped.
    """
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    quote: str | None = None
    n = len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch.isalpha() and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_%$.")):
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            if word in ("or", "xor", "implies"):
                return None
            if word == "and":
                parts.append(text[start:i].strip())
                start = j
            i = j
            continue
        i += 1
    parts.append(text[start:].strip())
    if len(parts) < 2 or any(not p for p in parts):
        return None
    return parts


def _decided_false(
    plan: Artifact, compiled: CompiledExpression, where: str, features: FeatureValues
) -> bool:
    """Whether a condition is false whatever its failed inputs hold: one operand of its top-level
    `and` chain reads no failed feature and is false (`false and x` is false for every x)."""
    for k, text in enumerate(conjuncts(compiled.text) or ()):
        try:
            part = compile_expression(text, artifact=plan.label, path=f"{where}#and{k}")
        except FHIRError:
            return False
        traced = features.trace(part)
        if traced.failed or traced.error is not None:  # an operand that raises decides nothing
            continue
        try:
            if singleton_boolean(traced.value) is False:
                return True
        except Exception:  # not one boolean: decides nothing
            continue
    return False


def evaluate_conditions(
    plan: Artifact, action: Mapping[str, Any], path: str, features: FeatureValues
) -> Verdict:
    """The verdict of an action's applicability conditions (they all must hold; see the module docstring)."""
    undecided: list[Verdict] = []
    for j, condition in enumerate(action.get("condition", []) or []):
        if condition.get("kind", "applicability") != "applicability":
            continue
        expression = condition.get("expression") or {}
        where = f"{path}.condition[{j}].expression.expression"
        if expression.get("language") != FHIRPATH:
            undecided.append(
                Verdict(
                    Outcome.NOT_EVALUATED,
                    problem=f"condition language {expression.get('language')!r} is not supported",
                    where=where,
                )
            )
            continue
        compiled = plan.expressions.get(where)
        if compiled is None:  # did not compile: refused at load, so only a caller-supplied artifact
            undecided.append(Verdict(Outcome.NOT_EVALUATED, problem="condition did not compile", where=where))
            continue
        traced = features.trace(compiled)
        failed = tuple(sorted(traced.failed))  # the failed features it actually read
        try:
            value = singleton_boolean(traced.result())
        except Exception as exc:  # a condition that raises is not evaluated, never "false"
            undecided.append(
                Verdict(Outcome.NOT_EVALUATED, failed, problem=f"condition failed ({reason_of(exc)})", where=where)
            )
            continue
        if value is True:
            if failed:
                undecided.append(Verdict(Outcome.APPLIES, failed, where=where))
            continue
        if value is False and not failed:
            return NOT_APPLICABLE
        if failed:
            if _decided_false(plan, compiled, where, features):
                return NOT_APPLICABLE
            undecided.append(
                Verdict(
                    Outcome.NOT_EVALUATED,
                    failed,
                    problem=f"reads %{failed[0]}, which could not be evaluated",
                    where=where,
                )
            )
            continue
        blocked = tuple(
            v for v in sorted(compiled.variables) if v in features.raw and not features.raw[v]
        )
        undecided.append(Verdict(Outcome.UNKNOWN, blocked_by=blocked, where=where))
    if not undecided:
        return APPLIES
    failed_all = tuple(dict.fromkeys(f for v in undecided for f in v.failed))
    for outcome in (Outcome.NOT_EVALUATED, Outcome.UNKNOWN, Outcome.APPLIES):
        first = next((v for v in undecided if v.outcome is outcome), None)
        if first is not None:
            blocked = tuple(dict.fromkeys(b for v in undecided for b in v.blocked_by))
            return Verdict(outcome, failed_all, blocked, first.problem, first.where)
    return APPLIES  # unreachable: every undecided verdict has one of the outcomes above


class PlanWalk:
    """One walk over a PlanDefinition for one patient context: the case features per Library, the steps, issues.

    `only`: the case features that may be read (with what they depend on); None: every feature. Each is
    computed when a condition or dynamicValue first reads it (`lazy`), or all of them up front.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        context: PatientContext,
        *,
        trigger: str | None = None,
        only: frozenset[str] | set[str] | None = None,
        lazy: bool = True,
    ):
        self.kb = kb
        self.context = context
        self.trigger = trigger
        self.only = only
        self.lazy = lazy
        self.features: dict[str, FeatureValues] = {}
        self.issues: list[Issue] = []
        self.skipped: list[str] = []  # texts of the parts left out because of errors
        self._bare: FeatureValues | None = None

    # -- case features ------------------------------------------------------------------------
    def features_for(self, library: Artifact | None) -> FeatureValues | None:
        if library is None:
            return None
        if library.label not in self.features:
            values = evaluate_features(self.kb, library, self.context, only=self.only, lazy=self.lazy)
            values.issues_to(self.issues)  # a feature's issue arrives when a rule first reads it
            self.features[library.label] = values
        return self.features[library.label]

    def no_features(self) -> FeatureValues:
        """What an expression of an artifact without a Library sees: the patient context only."""
        if self._bare is None:
            self._bare = FeatureValues.bare(self.context)
        return self._bare

    def skip(self, text: str, path: str, expression: str | None, severity: str = "error") -> None:
        self.issues.append(Issue(severity, "processing", text, [path], diagnostics=expression))
        self.skipped.append(text)

    # -- the walk -----------------------------------------------------------------------------
    def plan(
        self,
        plan: Artifact,
        library: Artifact | None,
        *,
        stack: tuple[str, ...] = (),
        depth: int = 0,
        matched: bool = False,
    ) -> list[Step]:
        """The steps of `plan`'s top-level actions (those a trigger filters out are left out)."""
        if len(stack) > MAX_DEPTH or plan.label in stack:
            self.skip(
                f"{plan.label}: nested PlanDefinitions form a cycle or are too deep; skipped",
                "PlanDefinition",
                None,
            )
            return []
        features = self.features_for(library)
        steps = []
        for i, action in enumerate(plan.resource.get("action", []) or []):
            step = self.action(
                plan, action, f"PlanDefinition.action[{i}]", library, features, stack + (plan.label,), depth, matched
            )
            if step is not None:
                steps.append(step)
        return steps

    def trigger_matches(self, action: Mapping[str, Any]) -> bool | None:
        """True/False when the action names triggers; None when it names none."""
        triggers = action.get("trigger") or []
        if not triggers:
            return None
        return any(t.get("type") == "named-event" and t.get("name") == self.trigger for t in triggers)

    def action(
        self,
        plan: Artifact,
        action: Mapping[str, Any],
        path: str,
        library: Artifact | None,
        features: FeatureValues | None,
        stack: tuple[str, ...],
        depth: int,
        inherited_match: bool,
    ) -> Step | None:
        matched = inherited_match
        if self.trigger is not None and not inherited_match:
            verdict_trigger = self.trigger_matches(action)
            if verdict_trigger is False:
                return None
            matched = verdict_trigger is True
        verdict = evaluate_conditions(plan, action, path, features or self.no_features())
        step = Step(plan, action, path, depth, library, features, verdict, matched)
        if not verdict.applies:
            return step
        canonical = action.get("definitionCanonical")
        if canonical:
            target = self.kb.artifact(canonical)
            if target is None or target.resource_type not in DEFINITION_TYPES:
                step.target_problem = (
                    "is not loaded" if target is None else f"is a {target.resource_type}, which cannot be a definition"
                )
                return step
            step.target = target
        if step.nests_plan and step.target is not None:
            nested_library = self.kb.library_for(step.target.resource, fallback=library)
            step.children.extend(
                self.plan(step.target, nested_library, stack=stack, depth=depth + 1, matched=matched)
            )
        for k, child in enumerate(action.get("action", []) or []):
            child_step = self.action(
                plan, child, f"{path}.action[{k}]", library, features, stack, depth + 1, matched
            )
            if child_step is not None:
                step.children.append(child_step)
        return step


def rule_codes(action: Mapping[str, Any], system: str) -> list[str]:
    """The codes of `system` on an action, in order, each once."""
    return list(
        dict.fromkeys(
            c["code"]
            for cc in action.get("code", []) or []
            for c in cc.get("coding", []) or []
            if c.get("system") == system and c.get("code")
        )
    )


def answering_actions(kb: KnowledgeBase, action: Mapping[str, Any], trigger: str | None) -> list[Mapping[str, Any]]:
    """The actions at or below `action` (through nested PlanDefinitions) that would answer `trigger`
    (every one without a trigger): what an action that could not be evaluated stands for."""
    found: list[Mapping[str, Any]] = []
    seen: set[str] = set()

    def visit(current: Mapping[str, Any], matched: bool) -> None:
        if trigger is not None and not matched:
            triggers = current.get("trigger") or []
            if triggers:
                if not any(t.get("type") == "named-event" and t.get("name") == trigger for t in triggers):
                    return
                matched = True
        if matched or trigger is None:
            found.append(current)
        canonical = current.get("definitionCanonical")
        if canonical and canonical not in seen:
            seen.add(canonical)
            target = kb.artifact(canonical, "PlanDefinition")
            if target is not None:
                for nested in target.resource.get("action", []) or []:
                    visit(nested, matched)
        for child in current.get("action", []) or []:
            visit(child, matched)

    visit(action, False)
    return found
