"""Checks on conformance resources that the R4 spec text requires beyond the core invariants.

The invariants of StructureDefinition (sdf-*), ElementDefinition (eld-*), ValueSet (vsd-*), CodeSystem
(csd-*), SearchParameter (spd-*), OperationDefinition (opd-*) and CapabilityStatement (cpb-*) run in
the invariant layer. Here, what the element definitions and pages say in words:

- CodeSystem (https://hl7.org/fhir/R4/codesystem.html): with `content` = not-present the resource
  holds no concepts; a supplement has `content` = supplement and names what it `supplements`, and
  `content` = supplement needs `supplements`; a concept's `property.code` refers to a
  `CodeSystem.property.code`; `count`, with complete content, is the number of concepts (warning).
- SearchParameter (https://hl7.org/fhir/R4/searchparameter.html): `expression` and each
  `component.expression` are FHIRPath, so a syntax error is an error; an expression this server's
  engine cannot compile for another reason is reported as information.
- OperationDefinition (https://hl7.org/fhir/R4/operationdefinition.html): a parameter's `max` is `*`
  or a number not below its `min`; one name is not declared twice for the same use at one level (warning).
- CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html): an interaction is listed
  once per resource and once per rest (warning).
- ValueSet: a code is listed once in one include or exclude (warning).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from app.errors import Issue

from . import fhirpath_adapter as fp


def conformance_issues(resource: dict[str, Any], expr: str) -> list[Issue]:
    check = _CHECKS.get(resource.get("resourceType", ""))
    return check(resource, expr) if check else []


def _list(value: Any) -> list[Any]:
    return value if type(value) is list else []


def _code_system(cs: dict[str, Any], expr: str) -> list[Issue]:
    issues: list[Issue] = []
    content = cs.get("content")
    concepts = _list(cs.get("concept"))
    if content == "not-present" and concepts:
        issues.append(Issue("error", "business-rule", "A CodeSystem with content 'not-present' holds no concepts",
                            [f"{expr}.concept"]))
    if content == "supplement" and "supplements" not in cs:
        issues.append(Issue("error", "business-rule", "A CodeSystem with content 'supplement' must name the code "
                            "system it supplements", [f"{expr}.supplements"]))
    if "supplements" in cs and content not in (None, "supplement"):
        issues.append(Issue("error", "business-rule", f"A supplement has content 'supplement', not '{content}'",
                            [f"{expr}.content"]))
    declared = {p.get("code") for p in _list(cs.get("property")) if type(p) is dict}
    total = 0
    pending = [(concepts, f"{expr}.concept")]
    while pending:
        items, where = pending.pop()
        for index, concept in enumerate(items):
            if type(concept) is not dict:
                continue
            total += 1
            here = f"{where}[{index}]"
            for p_index, prop in enumerate(_list(concept.get("property"))):
                if type(prop) is dict and isinstance(prop.get("code"), str) and prop["code"] not in declared:
                    issues.append(Issue("error", "business-rule", f"The property '{prop['code']}' is not declared "
                                        "in CodeSystem.property", [f"{here}.property[{p_index}].code"]))
            pending.append((_list(concept.get("concept")), f"{here}.concept"))
    count = cs.get("count")
    if content == "complete" and type(count) is int and concepts and count != total:
        issues.append(Issue("warning", "business-rule", f"count is {count} but the CodeSystem defines {total} "
                            "concepts", [f"{expr}.count"]))
    return issues


def _search_parameter(sp: dict[str, Any], expr: str) -> list[Issue]:
    issues: list[Issue] = []
    places = [(sp.get("expression"), f"{expr}.expression")]
    places += [(c.get("expression"), f"{expr}.component[{i}].expression")
               for i, c in enumerate(_list(sp.get("component"))) if type(c) is dict]
    for text, where in places:
        if not isinstance(text, str):
            continue
        syntax = fp.syntax_error(text)
        if syntax is not None:
            issues.append(Issue("error", "invalid", f"The expression is not valid FHIRPath ({syntax})", [where]))
            continue
        problem = fp.compile_problem(text)
        if problem is not None:
            issues.append(Issue("information", "informational", "The expression could not be compiled by this "
                                f"server's FHIRPath engine, so it was not checked further ({problem})", [where]))
    return issues


def _parameters(parameters: list[Any], where: str, issues: list[Issue]) -> None:
    seen: Counter[tuple[Any, Any]] = Counter()
    for index, parameter in enumerate(parameters):
        if type(parameter) is not dict:
            continue
        here = f"{where}[{index}]"
        key = (parameter.get("name"), parameter.get("use"))
        seen[key] += 1
        if seen[key] == 2:
            issues.append(Issue("warning", "business-rule", f"The parameter '{key[0]}' is declared twice for use "
                                f"'{key[1]}'", [f"{here}.name"]))
        low, high = parameter.get("min"), parameter.get("max")
        if type(low) is int and isinstance(high, str) and high != "*":
            if not high.isdigit():
                issues.append(Issue("error", "value", f"max must be '*' or a number, not '{high}'", [f"{here}.max"]))
            elif int(high) < low:
                issues.append(Issue("error", "business-rule", f"max {high} is below min {low}", [f"{here}.max"]))
        _parameters(_list(parameter.get("part")), f"{here}.part", issues)


def _operation_definition(od: dict[str, Any], expr: str) -> list[Issue]:
    issues: list[Issue] = []
    _parameters(_list(od.get("parameter")), f"{expr}.parameter", issues)
    return issues


def _capability_statement(cs: dict[str, Any], expr: str) -> list[Issue]:
    issues: list[Issue] = []
    for r_index, rest in enumerate(_list(cs.get("rest"))):
        if type(rest) is not dict:
            continue
        _unique_codes(_list(rest.get("interaction")), f"{expr}.rest[{r_index}].interaction", issues)
        for index, resource in enumerate(_list(rest.get("resource"))):
            if type(resource) is dict:
                _unique_codes(_list(resource.get("interaction")),
                              f"{expr}.rest[{r_index}].resource[{index}].interaction", issues)
    return issues


def _unique_codes(items: list[Any], where: str, issues: list[Issue]) -> None:
    seen: set[Any] = set()
    for index, item in enumerate(items):
        code = item.get("code") if type(item) is dict else None
        if code in seen:
            issues.append(Issue("warning", "business-rule", f"The interaction '{code}' is listed twice",
                                [f"{where}[{index}].code"]))
        seen.add(code)


def _value_set(vs: dict[str, Any], expr: str) -> list[Issue]:
    issues: list[Issue] = []
    raw = vs.get("compose")
    compose: dict[str, Any] = raw if type(raw) is dict else {}
    for part in ("include", "exclude"):
        for i_index, include in enumerate(_list(compose.get(part))):
            if type(include) is not dict:
                continue
            seen: set[Any] = set()
            for c_index, concept in enumerate(_list(include.get("concept"))):
                code = concept.get("code") if type(concept) is dict else None
                if code in seen:
                    issues.append(Issue("warning", "business-rule", f"The code '{code}' is listed twice",
                                        [f"{expr}.compose.{part}[{i_index}].concept[{c_index}].code"]))
                seen.add(code)
    return issues


_CHECKS = {
    "CodeSystem": _code_system,
    "SearchParameter": _search_parameter,
    "OperationDefinition": _operation_definition,
    "CapabilityStatement": _capability_statement,
    "ValueSet": _value_set,
}
