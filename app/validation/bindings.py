"""Required and extensible bindings of Coding and CodeableConcept elements to the core ValueSets.

The ValueSets are those the official package expands completely (`definitions/r4-core.json.gz`);
an element bound to any other ValueSet is not checked. As the HL7 validator does: a Coding of a
required binding must be in the ValueSet (error); a CodeableConcept of a required binding must have
at least one Coding in it (error); for an extensible binding the same findings are warnings. A
CodeableConcept with text and no Coding is not checked. Code elements' required bindings are checked
by the schema walk (`core_rules.json`); their extensible bindings here. The issue names the binding's
element path and the ValueSet.
"""
from __future__ import annotations

from typing import Any

from app.errors import Issue

from .definitions import CoreDefinitions


def _in_value_set(expansion: dict[str, frozenset[str]], system: Any, code: Any) -> bool:
    if not isinstance(code, str):
        return False
    if isinstance(system, str):
        return code in expansion.get(system, ())
    return any(code in codes for codes in expansion.values())


def binding_issues(defs: CoreDefinitions, binding: list[str], path: str, type_name: str | None, data: Any,
                   location: str) -> list[Issue]:
    strength, value_set = binding
    expansion = defs.value_sets.get(value_set.split("|", 1)[0])
    if expansion is None:
        return []
    severity = "error" if strength == "required" else "warning"
    where = f"the {strength} binding of {path} to {value_set}"
    if type_name == "code":
        if strength == "required" or not isinstance(data, str):
            return []  # required: the schema walk checks it
        if _in_value_set(expansion, None, data):
            return []
        return [Issue(severity, "code-invalid", f"Code '{data}' is not in {where}", [location])]
    if type(data) is not dict:
        return []
    if type_name == "Coding":
        code = data.get("code")
        if code is None or _in_value_set(expansion, data.get("system"), code):
            return []
        return [Issue(severity, "code-invalid",
                      f"Coding {data.get('system', '(no system)')}|{code} is not in {where}", [location])]
    if type_name == "CodeableConcept":
        coding = data.get("coding")
        codings = [c for c in coding if type(c) is dict and c.get("code") is not None] if type(coding) is list else []
        if not codings or any(_in_value_set(expansion, c.get("system"), c.get("code")) for c in codings):
            return []
        shown = ", ".join(f"{c.get('system', '(no system)')}|{c.get('code')}" for c in codings[:3])
        return [Issue(severity, "code-invalid", f"None of the codings ({shown}) is in {where}", [location])]
    return []
