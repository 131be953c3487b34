"""Runs the official FHIRPath R4 test suite (tests/data/fhirpath/tests-fhir-r4.xml) on the engine and judges each case.

A case passes when the engine gives the expected items (count, type when the suite names one, value),
or, for an `invalid` case, when compiling, analysing (over the input's resource type; strict where
the case says `mode="strict"`) or evaluating raises an error. The analysis also runs on every valid
case, so that a false error of the analysis fails a case. `predicate="true"` turns the result into
exists(); `ordered="false"` compares as a multiset. Dates compare by their text, `Z` as `+00:00`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from app.errors import FHIRError
from app.fhirpath import FHIRPathError, check_expression, compile_expression, evaluate, make_environment
from app.fhirpath.values import Node, Quantity, Temporal, value_of

DATA = Path(__file__).resolve().parents[1] / "data" / "fhirpath"
SUITE = DATA / "tests-fhir-r4.xml"
EXCLUSIONS = Path(__file__).with_name("suite_exclusions.txt")
TODAY = datetime.now().astimezone()
RESULTS: dict[str, tuple[bool, str]] = {}  # case id -> (passed, what happened), for the terminal summary


@dataclass(frozen=True)
class Case:
    id: str  # group/name
    expression: str
    inputfile: str | None
    invalid: str | None
    mode: str | None
    predicate: bool
    ordered: bool
    outputs: tuple[tuple[str | None, str], ...]


def cases() -> list[Case]:
    root = ET.parse(SUITE).getroot()
    found: list[Case] = []
    seen: set[str] = set()
    for group in root.iter("group"):
        for test in group.iter("test"):
            expression = test.find("expression")
            assert expression is not None and expression.text is not None
            case_id = f"{group.get('name')}/{test.get('name')}"
            if case_id in seen:  # the suite names one case twice (testEquivalent23)
                case_id += f"#{sum(c.id.startswith(case_id) for c in found) + 1}"
            seen.add(case_id)
            found.append(
                Case(
                    id=case_id,
                    expression=expression.text,
                    inputfile=test.get("inputfile"),
                    invalid=expression.get("invalid"),
                    mode=test.get("mode"),
                    predicate=test.get("predicate") == "true",
                    ordered=test.get("ordered") != "false",
                    outputs=tuple((o.get("type"), o.text or "") for o in test.findall("output")),
                )
            )
    return found


def exclusions() -> dict[str, str]:
    """Case id -> the reason it is not passed, from suite_exclusions.txt."""
    out = {}
    for line in EXCLUSIONS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            case, _, reason = line.partition(" ")
            out[case] = reason.strip()
    return out


_inputs: dict[str, dict[str, Any]] = {}


def _input(name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    stem = name.rsplit(".", 1)[0]
    if stem not in _inputs:
        _inputs[stem] = json.loads((DATA / "inputs" / f"{stem}.json").read_text())
    return _inputs[stem]


def _type_of(item: Any) -> str:
    if type(item) is Node:
        return item.type or "Element"
    if isinstance(item, bool):
        return "boolean"
    if isinstance(item, int):
        return "integer"
    if isinstance(item, Decimal):
        return "decimal"
    if isinstance(item, str):
        return "string"
    if isinstance(item, Temporal):
        return item.kind
    if isinstance(item, Quantity):
        return "Quantity"
    return type(item).__name__


def _text(item: Any) -> str:
    value = value_of(item) if type(item) is Node and item.type in ("date", "dateTime", "instant", "time") else item
    value = value.data if type(value) is Node else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Temporal):
        return ("@T" if value.kind == "time" else "@") + value.text
    if isinstance(value, Quantity):
        return value.text()
    return str(value)


def _same_value(item: Any, expected: str) -> bool:
    actual = _text(item)
    if actual == expected:
        return True
    if expected.startswith("@"):
        return actual.replace("+00:00", "Z") == expected.replace("+00:00", "Z")
    value = item.data if type(item) is Node else item
    if isinstance(value, (int, Decimal, float)) and not isinstance(value, bool):
        try:
            return Decimal(str(value)) == Decimal(expected)
        except InvalidOperation:
            return False
    if isinstance(value, Quantity) and "'" in expected:
        number, _, unit = expected.partition(" ")
        try:
            return value.value == Decimal(number) and value.unit == unit.strip("'")
        except InvalidOperation:
            return False
    return False


def _matches(result: list[Any], outputs: tuple[tuple[str | None, str], ...], ordered: bool) -> bool:
    if len(result) != len(outputs):
        return False

    def fits(item: Any, output: tuple[str | None, str]) -> bool:
        kind, text = output
        return (kind is None or _type_of(item) == kind) and _same_value(item, text)

    if ordered:
        return all(fits(i, o) for i, o in zip(result, outputs, strict=True))
    pending = list(outputs)
    for item in result:
        match = next((o for o in pending if fits(item, o)), None)
        if match is None:
            return False
        pending.remove(match)
    return True


def run(case: Case) -> tuple[bool, str]:
    """(passed, what happened)."""
    resource = _input(case.inputfile)
    try:
        compiled = compile_expression(case.expression)
        focus = resource.get("resourceType") if resource else None
        analysis = check_expression(case.expression, focus=focus, strict=case.mode == "strict", policy=False)
        if analysis.errors:
            raise FHIRPathError("; ".join(d.message for d in analysis.errors))
        result = evaluate(compiled, resource, None, make_environment(TODAY))
    except (FHIRError, FHIRPathError) as exc:
        if case.invalid:
            return True, f"error as expected: {exc}"
        return False, f"error: {exc}"
    if case.invalid:
        return False, f"no error; result {[_text(i) for i in result]}"
    if case.predicate:
        result = [bool(result)]
    if _matches(result, case.outputs, case.ordered):
        return True, "ok"
    got = [f"{_type_of(i)} {_text(i)}" for i in result]
    return False, f"got {got}, expected {[f'{k} {t}' for k, t in case.outputs]}"
