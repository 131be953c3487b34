"""The case features one $apply of a PlanDefinition can read for one hook: worked out from the compiled expressions.

A hook (trigger) walks only the actions whose trigger names it, their descendants, and the actions
without a trigger on the way to them (their conditions are evaluated to reach the children). The
conditions of an action whose trigger names another event are never evaluated for this hook, and
neither is anything below it, so the features only they read need not be computed. The set is the
%-names those expressions read (the Library's own dependencies are followed by `evaluate_features`),
worked out once per knowledge epoch per PlanDefinition and trigger (`KnowledgeBase.derived`).

Unknown-data semantics do not change: every expression the walk can evaluate sees exactly the
features it would have seen with every feature computed, because each of its inputs is in the set.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.reasoning.knowledge import Artifact, KnowledgeBase


def _names(trigger: str, action: Mapping[str, Any]) -> bool | None:
    triggers = action.get("trigger") or []
    if not triggers:
        return None
    return any(t.get("type") == "named-event" and t.get("name") == trigger for t in triggers)


def _pruned_paths(plan: Artifact, trigger: str) -> list[str]:
    """Element paths of the actions this trigger never walks (their trigger names another event)."""
    pruned: list[str] = []

    def visit(actions: Any, path: str) -> None:
        for i, action in enumerate(actions or []):
            here = f"{path}.action[{i}]"
            if _names(trigger, action) is False:
                pruned.append(here)
                continue
            if _names(trigger, action) is None:
                visit(action.get("action"), here)
            # a matching trigger: everything below is walked

    visit(plan.resource.get("action"), "PlanDefinition")
    return pruned


def _walked_actions(plan: Artifact, trigger: str | None, matched: bool) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []

    def visit(actions: Any, matched: bool) -> None:
        for action in actions or []:
            here = matched
            if trigger is not None and not matched:
                verdict = _names(trigger, action)
                if verdict is False:
                    continue
                here = verdict is True
            out.append(action)
            visit(action.get("action"), here)
            if action.get("definitionCanonical"):
                out.append({"__nested__": action["definitionCanonical"], "__matched__": here})

    visit(plan.resource.get("action"), matched)
    return out


def features_read(kb: KnowledgeBase, plan: Artifact, trigger: str | None) -> frozenset[str]:
    """Every %-name that the expressions a walk of `plan` for `trigger` can evaluate read.

    Cached per knowledge epoch for a loaded PlanDefinition; worked out afresh for a caller-supplied one."""
    loaded = kb.artifact(plan.label, plan.resource_type)
    if loaded is not plan:
        return frozenset(_features_read(kb, plan, trigger))
    found: frozenset[str] = kb.derived(("features-read", plan.label, trigger),
                                       lambda: frozenset(_features_read(kb, plan, trigger)))
    return found


def _features_read(kb: KnowledgeBase, plan: Artifact, trigger: str | None) -> set[str]:
    names: set[str] = set()
    seen: set[tuple[str, bool]] = set()
    pending: list[tuple[Artifact, bool]] = [(plan, False)]
    while pending:
        current, matched = pending.pop()
        if (current.label, matched) in seen:
            continue
        seen.add((current.label, matched))
        pruned = _pruned_paths(current, trigger) if (trigger is not None and not matched
                                                      and current.resource_type == "PlanDefinition") else []
        for path, compiled in current.expressions.items():
            if not any(path.startswith(p + ".") for p in pruned):
                names |= compiled.variables
        if current.resource_type != "PlanDefinition":
            continue
        for item in _walked_actions(current, trigger, matched):
            canonical = item.get("__nested__")
            if canonical is None:
                continue
            target = kb.artifact(canonical)
            if target is not None and target.resource_type in ("PlanDefinition", "ActivityDefinition"):
                pending.append((target, bool(item["__matched__"])))
    return names
