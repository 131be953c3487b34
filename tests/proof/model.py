"""What the artifacts declare, read for the generated tests: which case feature reads which ValueSet from which
place, which feature reads which, which rule action reads which features, and which actions each variant has.

Everything here is read from `plandefinitions/`, `valuesets/` and `hooks/variants.json`; nothing is evaluated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from app.reasoning import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = [ROOT / "valuesets", ROOT / "questionnaires", ROOT / "plandefinitions"]
BASE = "https://lbp-pathway.org/fhir"
LIBRARY = f"{BASE}/Library/lbp-case-features"
CASE_FEATURE_URL = f"{BASE}/StructureDefinition/case-feature"
RULES = f"{BASE}/CodeSystem/lbp-rules"
HOOKS = ("patient-view", "order-select", "order-sign")
# CDS indicator of an action priority (app/cds/cards.py maps them the same way; the tests restate it so a
# change there is a visible decision)
INDICATOR = {"routine": "info", "urgent": "warning", "asap": "critical", "stat": "critical"}

_MEMBER_OF = re.compile(r"memberOf\(\s*'([^']+)'\s*\)")
_VARIABLE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)")


def artifact_files() -> list[Path]:
    return sorted(p for folder in FOLDERS if folder.is_dir() for p in folder.glob("*.json"))


def artifacts() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in artifact_files()]


@cache
def knowledge() -> KnowledgeBase:
    """The shipped artifacts, loaded once for every generated test (read-only: nothing adds to it)."""
    return KnowledgeBase(artifacts())


def variants() -> dict[str, dict]:
    return json.loads((ROOT / "hooks" / "variants.json").read_text(encoding="utf-8"))["variants"]


@dataclass(frozen=True)
class Read:
    """One memberOf() in a case feature: `%source.where(... element.memberOf(valueset) ...)`."""

    feature: str
    valueset: str  # canonical url
    source: str  # the %collection the where() filters (conditions, activeConditions, selections …)
    element: str  # the path memberOf() is called on inside the where(), '' for the item itself
    selection: str  # the text `%source.where(...)`, compiled on its own to see which resources it selects


def _matching_paren(text: str, open_at: int) -> int:
    depth, quoted = 0, False
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch == "'" and text[i - 1] != "\\":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in {text!r}")


def _receiver(before: str) -> str:
    """The path memberOf() is called on: the text before '.memberOf(' back to an unmatched '(' or a space."""
    depth = 0
    i = len(before)
    while i > 0:
        ch = before[i - 1]
        if ch == ")":
            depth += 1
        elif ch == "(":
            if depth == 0:
                break
            depth -= 1
        elif ch == " " and depth == 0:
            break
        i -= 1
    element = before[i:].rstrip(".")
    # procedureCode.where(memberOf(...)): the element is procedureCode
    return element[: -len(".where")] if element.endswith(".where") else element


def reads_of(feature: str, text: str) -> list[Read]:
    """Each memberOf() of an expression with the %collection whose where() encloses it (innermost %-where)."""
    out: list[Read] = []
    wheres = []  # (start of '%name', name, open paren, close paren)
    for m in re.finditer(r"%([A-Za-z_][A-Za-z0-9_]*)\.where\(", text):
        open_at = m.end() - 1
        wheres.append((m.start(), m.group(1), open_at, _matching_paren(text, open_at)))
    for m in _MEMBER_OF.finditer(text):
        enclosing = [w for w in wheres if w[2] < m.start() < w[3]]
        if not enclosing:
            continue
        start, source, open_at, close_at = max(enclosing, key=lambda w: w[2])
        element = _receiver(text[open_at + 1 : m.start()])
        out.append(Read(feature, m.group(1), source, element, text[start : close_at + 1]))
    return out


@dataclass
class RuleAction:
    """A card-producing PlanDefinition action as a variant reaches it."""

    plan: str  # PlanDefinition id
    id: str
    rules: tuple[str, ...]  # codes from the lbp-rules CodeSystem
    priority: str
    triggers: frozenset[str]  # the hooks it answers (its own or inherited triggers)
    conditions: tuple[str, ...]  # its applicability conditions and those of every enclosing action
    reads: frozenset[str] = field(default_factory=frozenset)  # features its conditions read, transitively

    @property
    def indicator(self) -> str:
        return INDICATOR[self.priority]


class Model:
    """The declarations of the shipped artifacts that the generated tests reason over."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self.library = kb.artifact(LIBRARY, "Library")
        assert self.library is not None, "the case-feature Library is not loaded"
        self.features = {f.name: f for f in self.library.features}
        self.order = [f.name for f in self.library.features]
        self.depends = {f.name: set(f.depends_on) for f in self.library.features}
        self.reads = [r for f in self.library.features for r in reads_of(f.name, f.expression.text)]
        self.actions = {code: self.variant_actions(v["pathway"]) for code, v in variants().items()}

    # -- features ---------------------------------------------------------------------------------
    def closure(self, names: Iterable[str]) -> set[str]:
        """The features `names` read, directly or not, with themselves."""
        out: set[str] = set()
        stack = [n for n in names if n in self.features]
        while stack:
            name = stack.pop()
            if name not in out:
                out.add(name)
                stack.extend(self.depends[name])
        return out

    def dependants(self, name: str) -> set[str]:
        """The features that read `name`, directly or not, with itself."""
        return {f for f in self.order if name in self.closure([f])}

    def valuesets_read(self) -> list[str]:
        return sorted({r.valueset for r in self.reads})

    def valueset(self, url: str) -> dict:
        found = self.kb.resolve(url, "ValueSet")
        assert found is not None, f"{url} is read by the Library but not loaded"
        return found

    def valueset_rules(self, url: str) -> set[str]:
        vs = self.valueset(url)
        return {
            c["code"]
            for use in vs.get("useContext", []) or []
            for c in (use.get("valueCodeableConcept") or {}).get("coding", []) or []
            if c.get("system") == RULES
        }

    # -- rules ------------------------------------------------------------------------------------
    def rule_flag_types(self) -> dict[str, str]:
        cs = self.kb.resolve(RULES, "CodeSystem") or {}
        out = {}
        for concept in cs.get("concept", []) or []:
            for p in concept.get("property", []) or []:
                if p.get("code") == "flag-type":
                    out[concept["code"]] = p.get("valueCode")
        return out

    def safety_rules(self) -> set[str]:
        """Red flags and acute signs (lbp-rules flag-type red / acute)."""
        return {r for r, kind in self.rule_flag_types().items() if kind in ("red", "acute")}

    def variant_actions(self, pathway: str) -> list[RuleAction]:
        out: list[RuleAction] = []

        def walk(plan: dict, inherited: tuple[str, ...], triggers: frozenset[str], depth: int) -> None:
            assert depth < 8, "nested PlanDefinitions too deep"
            for action in plan.get("action", []) or []:
                visit(plan, action, inherited, triggers, depth)

        def visit(plan: dict, action: dict, inherited: tuple[str, ...], triggers: frozenset[str], depth: int):
            own = tuple(
                c["expression"]["expression"]
                for c in action.get("condition", []) or []
                if c.get("kind", "applicability") == "applicability"
            )
            named = frozenset(t.get("name") for t in action.get("trigger", []) or [] if t.get("name"))
            hooks = triggers | named
            conditions = inherited + own
            target = self.kb.resolve(action["definitionCanonical"]) if action.get("definitionCanonical") else None
            if target is not None and target.get("resourceType") == "PlanDefinition":
                walk(target, conditions, hooks, depth + 1)
            if action.get("priority"):
                rules = tuple(
                    c["code"]
                    for cc in action.get("code", []) or []
                    for c in cc.get("coding", []) or []
                    if c.get("system") == RULES
                )
                read = {v for text in conditions for v in _VARIABLE.findall(text)}
                out.append(
                    RuleAction(
                        plan=plan["id"],
                        id=action.get("id", ""),
                        rules=rules,
                        priority=action["priority"],
                        triggers=hooks,
                        conditions=conditions,
                        reads=frozenset(self.closure(read)),
                    )
                )
            elif target is None or target.get("resourceType") != "PlanDefinition":
                for child in action.get("action", []) or []:
                    visit(plan, child, conditions, hooks, depth)

        root = self.kb.resolve(pathway, "PlanDefinition")
        assert root is not None, f"{pathway} is not loaded"
        walk(root, (), frozenset(), 0)
        return out

    def actions_reading(self, variant: str, feature: str, hook: str | None = None) -> list[RuleAction]:
        return [
            a for a in self.actions[variant] if feature in a.reads and (hook is None or hook in a.triggers)
        ]


@cache
def model() -> Model:
    return Model(knowledge())
