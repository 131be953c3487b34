"""Rule ↔ feature ↔ condition as data: which rules each case feature serves, derived from the PlanDefinitions.

A PlanDefinition action *reads* a case feature when one of its applicability conditions or
dynamicValues names it (`%name`), directly or through the features that feature depends on. The
rules the action serves are its codes in the rules CodeSystem; an action without rule codes (a
suggestion below a card) serves the rules of its nearest ancestor that has some. The Library
declares the result on each `Library.parameter` entry with the `serves-rule` extension (a Coding
in the rules CodeSystem), and a test holds the declarations equal to this derivation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.reasoning.features import needed_features
from app.reasoning.knowledge import Artifact, KnowledgeBase
from app.reasoning.walk import rule_codes

RULES_SYSTEM = "https://lbp-pathway.org/fhir/CodeSystem/lbp-rules"
SERVES_RULE = "https://lbp-pathway.org/fhir/StructureDefinition/serves-rule"


@dataclass(frozen=True)
class RuleCondition:
    """One expression of a PlanDefinition action that decides (or words) a rule's card."""

    plan: str  # PlanDefinition/<id>
    action: str  # the action id, else its element path
    path: str  # element path of the expression
    expression: str
    features: tuple[str, ...]  # the case features it reads, with everything they depend on
    reads: tuple[str, ...] = ()  # the case features it names itself

    @property
    def is_condition(self) -> bool:
        return ".condition[" in self.path


def _actions(
    plan: Artifact, system: str
) -> Iterator[tuple[str, Mapping[str, Any], list[str]]]:
    """(element path, action, the rules it serves) for every action of a PlanDefinition."""

    def visit(actions: list[Mapping[str, Any]], where: str, inherited: list[str]) -> Iterator[Any]:
        for i, action in enumerate(actions or []):
            path = f"{where}[{i}]"
            rules = rule_codes(action, system) or inherited
            yield path, action, rules
            yield from visit(action.get("action", []) or [], f"{path}.action", rules)

    yield from visit(plan.resource.get("action", []) or [], "PlanDefinition.action", [])


def rule_conditions(kb: KnowledgeBase, system: str = RULES_SYSTEM) -> dict[str, list[RuleCondition]]:
    """rule id -> the conditions and dynamicValues of the actions that serve it, with the features they read."""
    out: dict[str, list[RuleCondition]] = {}
    for resource in kb.resources("PlanDefinition"):
        plan = kb.artifact(resource, "PlanDefinition")
        if plan is None:
            continue
        library = kb.library_for(plan.resource)
        for path, action, rules in _actions(plan, system):
            for expr_path, compiled in plan.expressions.items():
                prefix = f"{path}."
                if not expr_path.startswith(prefix) or expr_path[len(prefix):].startswith("action["):
                    continue
                features = tuple(sorted(needed_features(library, compiled.variables) if library else ()))
                reads = tuple(sorted(set(compiled.variables) & set(features)))
                entry = RuleCondition(
                    plan.label, str(action.get("id") or path), expr_path, compiled.text, features, reads
                )
                for rule in rules:
                    out.setdefault(rule, []).append(entry)
    return out


def derived_served_rules(kb: KnowledgeBase, library: Artifact, system: str = RULES_SYSTEM) -> dict[str, list[str]]:
    """feature name -> the rule ids of the actions that read it (through the PlanDefinitions naming `library`)."""
    served: dict[str, set[str]] = {f.name: set() for f in library.features}
    for conditions in rule_conditions(kb, system).items():
        rule, entries = conditions
        for entry in entries:
            plan = kb.artifact(entry.plan)
            if plan is None or kb.library_for(plan.resource) is not library:
                continue
            for feature in entry.features:
                if feature in served:
                    served[feature].add(rule)
    order = _rule_order(kb, system)
    return {name: sorted(rules, key=lambda r: (order.get(r, len(order)), r)) for name, rules in served.items()}


def declared_served_rules(library: Mapping[str, Any], system: str = RULES_SYSTEM) -> dict[str, list[str]]:
    """feature name -> the rule ids its `Library.parameter` entry declares with the serves-rule extension."""
    out: dict[str, list[str]] = {}
    for parameter in library.get("parameter", []) or []:
        if parameter.get("use") != "out" or not parameter.get("name"):
            continue
        out[parameter["name"]] = [
            ext["valueCoding"]["code"]
            for ext in parameter.get("extension", []) or []
            if ext.get("url") == SERVES_RULE
            and (ext.get("valueCoding") or {}).get("system") == system
            and (ext.get("valueCoding") or {}).get("code")
        ]
    return out


def _rule_order(kb: KnowledgeBase, system: str) -> dict[str, int]:
    codesystem = kb.resolve(system, "CodeSystem") or {}
    return {c["code"]: i for i, c in enumerate(codesystem.get("concept", []) or [])}
