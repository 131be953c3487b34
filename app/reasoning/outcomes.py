"""The RequestGroup action that says a rule could not be evaluated, with its wording from the knowledge.

Its texts come from the evaluation-outcome CodeSystem (`not-evaluated`: what it means and the label
"check by hand", in every language the CodeSystem carries) and from the codes on the action (the
rules, with their displays in each language); its priority from the `role` property of those codes
(a rule whose role is `safety` makes the action `urgent`, otherwise it is `routine`). Nothing here
names a rule: a region changes the wording or the roles by loading a CodeSystem (docs/fail-safe.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.reasoning.failures import FeatureFailure
from app.reasoning.knowledge import KnowledgeBase

BASE = "https://lbp-pathway.org/fhir"
OUTCOME_SYSTEM = f"{BASE}/CodeSystem/lbp-evaluation-outcome"
EVALUATION_OUTCOME = f"{BASE}/StructureDefinition/evaluation-outcome"
FAILED_FEATURE = f"{BASE}/StructureDefinition/failed-feature"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
NOT_EVALUATED = "not-evaluated"
INCOMPLETE = "incomplete"
CHECK_BY_HAND = "check-by-hand"
SAFETY = "safety"
# designation.use codes that mark a designation as the definition (SNOMED CT "Definition", or plain)
DEFINITION_USE = ("900000000000550004", "definition")


def _concept(codesystem: Mapping[str, Any] | None, code: str) -> Mapping[str, Any] | None:
    stack = list((codesystem or {}).get("concept", []) or [])
    while stack:
        concept = stack.pop()
        if concept.get("code") == code:
            return concept  # type: ignore[no-any-return]
        stack.extend(concept.get("concept", []) or [])
    return None


def _texts(codesystem: Mapping[str, Any] | None, concept: Mapping[str, Any] | None, key: str) -> dict[str, str]:
    """language -> the concept's display (key "display") or definition in that language.

    The text in the CodeSystem's own language, then every designation: one whose `use` is SNOMED CT
    900000000000550004 "Definition" translates the definition, any other the display.
    """
    if concept is None:
        return {}
    own = (codesystem or {}).get("language") or "en"
    out: dict[str, str] = {}
    if concept.get(key):
        out[own] = concept[key]
    for designation in concept.get("designation", []) or []:
        language, value = designation.get("language"), designation.get("value")
        if not language or not value:
            continue
        use = (designation.get("use") or {}).get("code")
        is_definition = use in DEFINITION_USE
        if (key == "definition") == is_definition:
            out.setdefault(language.split("-")[0], value)
    return out


def translated(element: Mapping[str, Any], key: str, primary: str | None) -> dict[str, str]:
    """language -> the element's text `key` (the primary language's and each translation extension's)."""
    out: dict[str, str] = {}
    if isinstance(element.get(key), str) and primary:
        out[primary] = element[key]
    for ext in (element.get(f"_{key}") or {}).get("extension", []) or []:
        if ext.get("url") != TRANSLATION:
            continue
        parts = {e.get("url"): e for e in ext.get("extension", []) or []}
        language = (parts.get("lang") or {}).get("valueCode")
        content = (parts.get("content") or {}).get("valueString")
        if language and content:
            out.setdefault(language, content)
    return out


def _with_translations(target: dict[str, Any], key: str, texts: Mapping[str, str], primary: str) -> None:
    if not texts:
        return
    main = texts.get(primary) or next(iter(texts.values()))
    target[key] = main
    others = [
        {
            "url": TRANSLATION,
            "extension": [{"url": "lang", "valueCode": language}, {"url": "content", "valueString": value}],
        }
        for language, value in texts.items()
        if language != primary
    ]
    if others:
        target[f"_{key}"] = {"extension": others}


class OutcomeWording:
    """Reads the evaluation-outcome CodeSystem and the code systems of the rules from one knowledge base."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self._systems: dict[str, Mapping[str, Any] | None] = {}

    def codesystem(self, url: str) -> Mapping[str, Any] | None:
        if url not in self._systems:
            self._systems[url] = self.kb.resolve(url, "CodeSystem")
        return self._systems[url]

    def outcome(self, code: str, key: str = "display") -> dict[str, str]:
        codesystem = self.codesystem(OUTCOME_SYSTEM)
        return _texts(codesystem, _concept(codesystem, code), key)

    def role(self, system: str, code: str) -> str | None:
        concept = _concept(self.codesystem(system), code)
        for prop in (concept or {}).get("property", []) or []:
            if prop.get("code") == "role":
                value = prop.get("valueCode") or (prop.get("valueCoding") or {}).get("code")
                return value if isinstance(value, str) else None
        return None

    def declares_role(self, system: str) -> bool:
        """Whether a code system's codes are rules (it defines the `role` property)."""
        return any(p.get("code") == "role" for p in (self.codesystem(system) or {}).get("property", []) or [])

    def code_display(self, system: str, code: str) -> dict[str, str]:
        codesystem = self.codesystem(system)
        return _texts(codesystem, _concept(codesystem, code), "display")

    def is_safety(self, codings: Iterable[Mapping[str, Any]]) -> bool:
        return any(
            self.role(str(c.get("system")), str(c.get("code"))) == SAFETY for c in codings if c.get("code")
        )


def _codings(actions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str | None, str]] = set()
    out: list[dict[str, Any]] = []
    for action in actions:
        for cc in action.get("code", []) or []:
            for coding in cc.get("coding", []) or []:
                key = (coding.get("system"), coding.get("code"))
                if coding.get("code") and key not in seen:
                    seen.add(key)
                    out.append({k: v for k, v in coding.items() if k in ("system", "code", "display")})
    return out


def not_evaluated_action(
    wording: OutcomeWording,
    action: Mapping[str, Any],
    *,
    stands_for: Sequence[Mapping[str, Any]],
    name_texts: Mapping[str, str],
    primary: str,
    failures: Sequence[FeatureFailure],
    rule_system: str | None = None,
) -> dict[str, Any]:
    """The RequestGroup action for `action`, whose conditions could not be evaluated.

    `stands_for`: the actions whose outcome is unknown (the action itself, or the rules below a
    grouping action that answer the hook); their codes become the action's codes. `name_texts`:
    language -> what the action is called (its title). `rule_system`: the code system whose codes
    are listed under "check by hand" (default: the code systems that define the `role` property,
    else every code on the actions).
    """
    codings = _codings(stands_for)
    out: dict[str, Any] = {}
    if action.get("id"):
        out["id"] = action["id"]
    label = wording.outcome(NOT_EVALUATED)
    meaning = wording.outcome(NOT_EVALUATED, "definition")
    check = wording.outcome(CHECK_BY_HAND)
    languages = list(dict.fromkeys([primary, *label, *name_texts]))
    titles: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    listed = [
        c
        for c in codings
        if (c.get("system") == rule_system if rule_system else wording.declares_role(str(c.get("system"))))
    ] or codings
    for language in languages:
        head = label.get(language) or label.get("en") or NOT_EVALUATED
        name = name_texts.get(language) or name_texts.get(primary) or ""
        titles[language] = f"{head}: {name}" if name else head
        lines = []
        for coding in listed:
            displays = wording.code_display(str(coding.get("system")), str(coding["code"]))
            display = displays.get(language) or displays.get("en") or ""
            lines.append(f"- {coding['code']} {display}".rstrip())
        text = meaning.get(language) or meaning.get("en") or ""
        if lines:
            text += f"\n\n**{check.get(language) or check.get('en') or CHECK_BY_HAND}**\n" + "\n".join(lines)
        descriptions[language] = text.strip()
    _with_translations(out, "title", titles, primary)
    _with_translations(out, "description", descriptions, primary)
    out["priority"] = "urgent" if wording.is_safety(codings) else "routine"
    if codings:
        out["code"] = [{"coding": [c]} for c in codings]
    out["extension"] = outcome_extensions(NOT_EVALUATED, failures)
    return out


def note_incomplete(wording: OutcomeWording, out: dict[str, Any], primary: str) -> None:
    """Append the meaning of `incomplete` to an applied action's description, in each of its languages."""
    label = wording.outcome(INCOMPLETE)
    meaning = wording.outcome(INCOMPLETE, "definition")
    if not meaning:
        return

    def note(language: str) -> str:
        head = label.get(language) or label.get("en") or INCOMPLETE
        return f"**{head}:** {meaning.get(language) or meaning.get('en') or ''}".strip()

    if isinstance(out.get("description"), str):
        out["description"] = f"{out['description']}\n\n{note(primary)}"
    else:
        out["description"] = note(primary)
    translations = copy.deepcopy((out.get("_description") or {}).get("extension", []) or [])
    for ext in translations:
        if ext.get("url") != TRANSLATION:
            continue
        parts = {e.get("url"): e for e in ext.get("extension", []) or []}
        language = (parts.get("lang") or {}).get("valueCode")
        content = parts.get("content")
        if language and content and isinstance(content.get("valueString"), str):
            content["valueString"] = f"{content['valueString']}\n\n{note(language)}"
    if translations:
        out["_description"] = {**(out.get("_description") or {}), "extension": translations}


def outcome_extensions(outcome: str, failures: Sequence[FeatureFailure]) -> list[dict[str, Any]]:
    """The evaluation-outcome extension and one failed-feature extension per feature that raised."""
    extensions: list[dict[str, Any]] = [{"url": EVALUATION_OUTCOME, "valueCode": outcome}]
    for failure in failures:
        extensions.append({"url": FAILED_FEATURE, "valueString": failure.feature})
    return extensions
