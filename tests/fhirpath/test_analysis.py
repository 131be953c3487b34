"""The static analysis finds each kind of wrong expression, says where it cannot decide, and leaves right ones alone."""

from __future__ import annotations

import pytest

from app.errors import FHIRError
from app.fhirpath import check_expression, compile_expression, static_of


def errors(text: str, focus: str | None = "Patient", **kwargs) -> list[str]:
    return [d.message for d in check_expression(text, focus=focus, **kwargs).errors]


def warnings(text: str, focus: str | None = "Patient", **kwargs) -> list[str]:
    return [d.message for d in check_expression(text, focus=focus, **kwargs).warnings]


def test_an_unknown_element_on_a_known_type_is_an_error():
    assert errors("Patient.nmae.given") == ["Patient has no element 'nmae'"]
    assert errors("name.given1")  # on the focus too
    assert errors("Encounter.status") == ["the input is Patient, never a Encounter"]
    assert not errors("Patient.name.given | Patient.contact.name.family")  # backbone elements


@pytest.mark.parametrize(
    "text", ["Patient.gender.ofType(strin)", "Patient.gender is Strng", "Patient.maritalStatus.as(Codng)"]
)
def test_an_unknown_type_name_is_an_error(text):
    assert any("unknown type" in m for m in errors(text))
    with pytest.raises(FHIRError, match="unknown type"):
        compile_expression(text)  # refused whatever the input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("iif('text', 1, 2)", "the criterion of iif() is String, not Boolean"),
        ("iif(Patient.name.exists() | true, 1, 2)", "the criterion of iif() may hold more than one item"),
        ("Patient.name.where(given)", "the criterion of where() is string (possibly several), not Boolean"),
        ("Patient.name.all(given.exists() | true)", "the criterion of all() may hold more than one item"),
        ("Patient.name.exists(family)", "the criterion of exists() is string, not Boolean"),
    ],
)
def test_a_criterion_that_is_not_one_boolean_is_an_error(text, message):
    assert message in errors(text)


def test_a_condition_must_be_one_boolean():
    assert errors("Patient.name", criterion="the applicability condition") == [
        "the applicability condition is HumanName (possibly several), not Boolean"
    ]
    assert errors("Patient.active.exists() | true", criterion="the applicability condition") == [
        "the applicability condition may hold more than one item"
    ]
    assert not errors("Patient.active = true", criterion="the applicability condition")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Patient.name and true", "the left operand of 'and' is HumanName (possibly several), not Boolean"),
        ("true or Patient.gender", "the right operand of 'or' is code, not Boolean"),
        ("Patient.gender implies true", "the left operand of 'implies' is code, not Boolean"),
        ("Patient.name.given.not()", "the input of not() is string (possibly several), not Boolean"),
        (
            "Patient.name.given.exists() xor Patient.telecom",
            "the right operand of 'xor' is ContactPoint (possibly several), not Boolean",
        ),
    ],
)
def test_a_logical_operand_that_is_not_one_boolean_is_an_error(text, message):
    assert message in errors(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Patient.birthDate > 5", "cannot be ordered"),
        ("Patient.maritalStatus = 'M'", "the types are incompatible"),
        ("Patient.name < 'x'", "cannot order"),
        ("Patient.birthDate + 'x'", "cannot combine"),
        ("'a' - 1", "cannot combine"),
        ("Patient.birthDate - 1 'mg' > 2", "cannot be ordered"),
        ("Patient.birthDate - 1 'mg' > @2000", ""),  # Date - Quantity is allowed: a wrong unit fails at run time
    ],
)
def test_comparison_or_arithmetic_of_incompatible_types_is_an_error(text, fragment):
    found = errors(text)
    if fragment:
        assert any(fragment in m for m in found), found
    else:
        assert not found


def test_an_undefined_variable_is_an_error_when_the_variables_are_declared():
    declared = {"inScope": static_of("boolean")}
    assert errors("%inScope and %redFlag", variables=declared) == ["%redFlag is not defined"]
    assert not errors("%inScope and %today > @2020-01-01 and %resource.active", variables=declared)
    assert not errors("%anything", variables=None)  # undeclared: accepted, typed unknown


def test_declared_variable_types_are_used():
    declared = {"names": static_of("HumanName", True), "flag": static_of("boolean")}
    assert errors("iif(%names.given, 1, 2)", variables=declared) == [
        "the criterion of iif() is string (possibly several), not Boolean"
    ]
    assert not errors("iif(%flag, 1, 2)", variables=declared)


def test_what_cannot_be_decided_is_a_warning():
    assert warnings("iif(%unknown, 1, 2)", variables=None) == [
        "cannot tell whether the criterion of iif() is one Boolean (items of unknown type)"
    ]
    assert warnings("Bundle.entry.resource.code", focus="Bundle") == [
        "cannot check 'code' on Resource (possibly several): any subtype may be there"
    ]
    assert warnings("Observation.valueQuantity.value", focus="Observation")  # a JSON name, not FHIRPath's
    assert errors("Observation.valueQuantity.value", focus="Observation", strict=True)


def test_right_expressions_pass():
    for text, focus in [
        ("Bundle.entry.resource.ofType(Condition).where(code.coding.where(system = 'x').exists())", "Bundle"),
        ("Observation.value.ofType(Quantity).value > 3", "Observation"),
        ("iif(Patient.birthDate.exists(), (%today - 18 years) >= Patient.birthDate, {})", "Patient"),
        ("Patient.name.select(given.first() + ' ' + family).join(', ')", "Patient"),
        ("Questionnaire.item.item.linkId", "Questionnaire"),  # contentReference
    ]:
        assert check_expression(text, focus=focus).errors == [], text


def test_a_syntax_error_is_one_error():
    assert errors("Patient.name.(") and errors("Patient.name.(")[0].startswith("syntax:")


def test_is_and_as_bind_tighter_than_union_and_comparison():
    from app.fhirpath import evaluate, make_environment

    def run(text):
        return evaluate(compile_expression(text), {"resourceType": "Patient"}, None, make_environment())

    assert run("(1 | 1 is Integer).count()") == [2]
    assert run("2 < 3 as Integer") == [True]
    with pytest.raises(FHIRError):
        compile_expression("1 > 2 is Boolean")  # 1 > (2 is Boolean): Integer against Boolean
