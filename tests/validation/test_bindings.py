"""Required and extensible bindings of CodeableConcept elements to core ValueSets."""
from __future__ import annotations

from app.validation import validate_resource

NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'}
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def condition(**changes):
    resource = {"resourceType": "Condition", "text": NARRATIVE, "subject": {"reference": "Patient/p1"},
                "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]}}
    resource.update(changes)
    return resource


def binding_issues(resource):
    return [i for i in validate_resource(resource, check_rules=True) if i.code == "code-invalid"]


def test_required_binding_of_a_codeable_concept_names_the_binding_and_value_set():
    assert binding_issues(condition()) == []
    bad = condition(clinicalStatus={"coding": [{"system": CLINICAL, "code": "cured"}]})
    [issue] = binding_issues(bad)
    assert issue.severity == "error" and issue.expression == ["Condition.clinicalStatus"]
    assert "required binding of Condition.clinicalStatus" in issue.text
    assert "http://hl7.org/fhir/ValueSet/condition-clinical|4.0.1" in issue.text


def test_a_code_from_another_system_does_not_satisfy_a_required_binding():
    bad = condition(clinicalStatus={"coding": [{"system": "http://snomed.info/sct", "code": "active"}]})
    assert [i.severity for i in binding_issues(bad)] == ["error"]


def test_extensible_binding_is_a_warning():
    category = {"coding": [{"system": "http://snomed.info/sct", "code": "439401001"}]}
    [issue] = binding_issues(condition(category=[category]))
    assert issue.severity == "warning" and issue.expression == ["Condition.category[0]"]
    assert "extensible binding of Condition.category" in issue.text
    good = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item"}]}
    assert binding_issues(condition(category=[good])) == []


def test_text_only_concepts_are_not_judged():
    assert binding_issues(condition(clinicalStatus={"text": "active"})) == []
