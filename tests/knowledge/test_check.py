"""The static analysis of the shipped artifacts: no faults; every kind caught by `lbp validate` and on write."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from app.cli import main
from app.knowledge.check import check_artifacts
from app.reasoning.features import evaluate_features, patient_context
from app.reasoning.knowledge import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("plandefinitions", "questionnaires", "valuesets")
FILES = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.json"))
LIBRARY = "https://lbp-pathway.org/fhir/Library/lbp-case-features"
FEATURE = "https://lbp-pathway.org/fhir/StructureDefinition/case-feature"
ICD = "http://hl7.org/fhir/sid/icd-10"


def shipped() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in FILES]


def test_the_shipped_artifacts_have_no_analysis_errors():
    found = check_artifacts(shipped())
    assert [str(d) for d in found if d.severity == "error"] == []
    # what cannot be decided is said, with its place
    assert all(d.artifact and d.element and d.expression for d in found)


def _library(*features: tuple[str, str, str, str]) -> dict:
    """A Library of (name, expression, declared type, declared max) case features."""
    return {
        "resourceType": "Library",
        "id": "demo",
        "url": "https://example.org/Library/demo",
        "status": "draft",
        "type": {"coding": [{"code": "logic-library"}]},
        "extension": [
            {"url": FEATURE, "valueExpression": {"name": n, "language": "text/fhirpath", "expression": e}}
            for n, e, _, _ in features
        ],
        "parameter": [{"name": n, "use": "out", "min": 0, "max": m, "type": t} for n, _, t, m in features],
    }


def test_a_feature_contradicting_its_declaration_is_an_error():
    library = _library(
        ("conditions", "entry.resource.ofType(Condition)", "Condition", "*"),
        ("flag", "%conditions.code.text", "boolean", "1"),
        ("onset", "%conditions.onset.ofType(dateTime)", "dateTime", "1"),
        ("count", "%conditions.count()", "decimal", "1"),  # an Integer is a decimal
    )
    messages = {d.message for d in check_artifacts([library]) if d.severity == "error"}
    assert messages == {
        "case feature flag is declared max 1 but may yield several items (string (possibly several))",
        "case feature flag is declared boolean but yields string (possibly several)",
        "case feature onset is declared max 1 but may yield several items (dateTime (possibly several))",
    }


def test_later_features_and_rules_read_the_declared_types():
    library = _library(("names", "entry.resource.ofType(Patient).name", "HumanName", "*"))
    plan = {
        "resourceType": "PlanDefinition",
        "id": "demo-plan",
        "status": "draft",
        "library": [library["url"]],
        "action": [
            {"id": "a", "condition": [{"kind": "applicability",
                                       "expression": {"language": "text/fhirpath", "expression": "%names.given"}}]},
            {"id": "b", "condition": [{"kind": "applicability",
                                       "expression": {"language": "text/fhirpath", "expression": "%nope = true"}}]},
        ],
    }
    found = [(d.element, d.message) for d in check_artifacts([library, plan]) if d.severity == "error"]
    assert found == [
        ("PlanDefinition.action[0].condition[0].expression.expression",
         "the applicability condition is string (possibly several), not Boolean"),
        ("PlanDefinition.action[1].condition[0].expression.expression", "%nope is not defined"),
    ]


BROKEN = {
    "unknown element": ("%patient.birthdate.exists()", "Patient has no element 'birthdate'"),
    "unknown type": ("%conditions.ofType(Conditon).exists()", "unknown type Conditon"),
    "iif criterion": ("iif(%conditions.code, true, false)", "the criterion of iif() is CodeableConcept"),
    "several items": ("%conditions.where(code.coding.code = 'x') | true", "may hold more than one item"),
    "and operand": ("%patient.gender and true", "the left operand of 'and' is code, not Boolean"),
    "comparison": ("%patient.birthDate > 3", "cannot be ordered"),
    "arithmetic": ("(%patient.birthDate + 'x').exists()", "cannot combine"),
    "variable": ("%redFlagRf10 = true", "%redFlagRf10 is not defined"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_lbp_validate_reports_a_wrong_expression_with_artifact_element_and_expression(kind, tmp_path, capsys):
    expression, message = BROKEN[kind]
    library = next(r for r in shipped() if r.get("url") == LIBRARY)
    plan = {
        "resourceType": "PlanDefinition",
        "id": "broken",
        "url": "https://example.org/PlanDefinition/broken",
        "status": "draft",
        "library": [LIBRARY],
        "action": [{"id": "rule", "title": "A rule", "condition": [
            {"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": expression}}
        ]}],
    }
    (tmp_path / "Library-lbp-case-features.json").write_text(json.dumps(library))
    (tmp_path / "PlanDefinition-broken.json").write_text(json.dumps(plan))
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("PlanDefinition/broken: error:"))
    assert "PlanDefinition.action[0].condition[0].expression.expression" in line
    assert message in line and line.endswith(expression)


def test_lbp_validate_passes_the_shipped_artifacts(capsys):
    assert main(["validate", *(str(ROOT / f) for f in FOLDERS)]) == 0
    out = capsys.readouterr().out
    assert " 0 errors" in out.splitlines()[-1]


def test_a_faulty_artifact_is_refused_when_written(client):
    plan = {
        "resourceType": "PlanDefinition",
        "id": "faulty",
        "status": "draft",
        "action": [{"id": "rule", "condition": [
            {"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": "%patient.name"}}
        ]}],
    }
    r = client.put("/fhir/PlanDefinition/faulty", json=plan, content_type="application/fhir+json")
    assert r.status_code == 400
    issue = r.get_json()["issue"][0]
    assert issue["expression"] == ["PlanDefinition.action[0].condition[0].expression.expression"]
    assert "the applicability condition is HumanName (possibly several), not Boolean" in issue["details"]["text"]
    assert issue["diagnostics"] == "%patient.name"
    plan["action"][0]["condition"][0]["expression"]["expression"] = "%patient.active = true"
    assert client.put("/fhir/PlanDefinition/faulty", json=plan, content_type="application/fhir+json").status_code in (
        200, 201
    )


def test_a_recorded_weight_loss_condition_raises_rf8_without_an_evaluation_error():
    kb = KnowledgeBase(shipped())
    condition = {
        "resourceType": "Condition", "id": "wl", "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": ICD, "code": "R63.4"}]},
    }
    record = [{"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}, condition]
    context = patient_context(record, subject="Patient/p1", today=date(2025, 3, 1), terminology=kb.terminology)
    values = evaluate_features(kb, LIBRARY, context, only=["redFlagRf8Record"])
    assert values.issues == []
    assert values.value("redFlagRf8Record") == [True]


def _expression(text: str, name: str | None = None) -> dict:
    return {"language": "text/fhirpath", "expression": text, **({"name": name} if name else {})}


def test_questionnaire_expressions_are_checked_over_the_response_with_their_variables():
    sdc = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
    questionnaire = {
        "resourceType": "Questionnaire",
        "id": "demo-form",
        "status": "draft",
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/variable",
                       "valueExpression": _expression("%resource.item.where(linkId = 'a').answer.value", "answers")}],
        "item": [
            {"linkId": "a", "type": "boolean", "text": "A"},
            {"linkId": "b", "type": "string", "text": "B", "extension": [
                {"url": sdc + "sdc-questionnaire-enableWhenExpression", "valueExpression": _expression("%answers")},
            ]},
            {"linkId": "c", "type": "integer", "text": "C", "extension": [
                {"url": sdc + "sdc-questionnaire-calculatedExpression",
                 "valueExpression": _expression("%resource.item.answer.valueInteger.sum()")},
                {"url": sdc + "sdc-questionnaire-initialExpression",
                 "valueExpression": _expression("%patient.birthDate.toString()")},
            ]},
        ],
    }
    found = {(d.severity, d.element, d.message) for d in check_artifacts([questionnaire])}
    assert ("error", "Questionnaire.item[1].extension[0].valueExpression.expression",
            "the enableWhenExpression may hold more than one item") in found
    assert ("warning", "Questionnaire.item[2].extension[0].valueExpression.expression",
            "valueInteger is the JSON name of a choice element; FHIRPath names it by the element") in found
    assert not [d for d in found if d[1].startswith("Questionnaire.item[2].extension[1]")]


def test_measure_criteria_are_checked_with_the_library_features():
    library = _library(("inScope", "true", "boolean", "1"), ("score", "1.5", "decimal", "1"))
    measure = {
        "resourceType": "Measure",
        "id": "demo-measure",
        "status": "draft",
        "library": [library["url"]],
        "group": [{"population": [
            {"code": {"coding": [{"code": "initial-population"}]}, "criteria": _expression("%inScope")},
            {"code": {"coding": [{"code": "denominator"}]}, "criteria": _expression("%score")},
            {"code": {"coding": [{"code": "measure-observation"}]}, "criteria": _expression("%score")},
        ]}],
    }
    found = [(d.element, d.message) for d in check_artifacts([library, measure]) if d.severity == "error"]
    assert found == [("Measure.group[0].population[1].criteria.expression",
                      "the population criterion is decimal, not Boolean")]
