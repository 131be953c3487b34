"""$validate over HTTP reports every rule family with expression and the constraint or binding it broke."""
from __future__ import annotations

import pytest

from tests.conftest import FHIR

NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'}

CASES = {
    "invariant": (
        {"resourceType": "RiskAssessment", "text": NARRATIVE, "status": "final",
         "subject": {"reference": "Patient/p1"}, "prediction": [{"probabilityDecimal": 150}]},
        "error", "RiskAssessment.prediction[0]", "ras-2"),
    "invariant of a data type": (
        {"resourceType": "Encounter", "text": NARRATIVE, "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "period": {"start": "2024-03-02", "end": "2024-03-01"}},
        "error", "Encounter.period", "per-1"),
    "narrative": (
        {"resourceType": "Patient", "text": {"status": "generated", "div":
            '<div xmlns="http://www.w3.org/1999/xhtml"><script>x()</script>Anna</div>'}},
        "error", "Patient.text.div", "txt-1"),
    "binding": (
        {"resourceType": "Condition", "text": NARRATIVE, "subject": {"reference": "Patient/p1"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "cured"}]}},
        "error", "Condition.clinicalStatus", "http://hl7.org/fhir/ValueSet/condition-clinical"),
    "extension": (
        {"resourceType": "Patient", "text": NARRATIVE, "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueString": "Umeå"}]},
        "error", "Patient.extension[0]", "patient-birthPlace"),
    "unknown extension": (
        {"resourceType": "Patient", "text": NARRATIVE, "extension": [
            {"url": "http://unknown.example.net/ext", "valueString": "x"}]},
        "error", "Patient.extension[0]", "could not be found"),
    "bundle reference": (
        {"resourceType": "Bundle", "type": "transaction", "entry": [{
            "fullUrl": "urn:uuid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            "resource": {"resourceType": "Observation", "text": NARRATIVE, "status": "final",
                         "code": {"text": "NRS"},
                         "subject": {"reference": "urn:uuid:0b7c6a43-2f1e-4c1b-9d7e-5a3f9c2e1d00"}},
            "request": {"method": "POST", "url": "Observation"}}]},
        "error", "Bundle.entry[0].resource.subject.reference", "matches no fullUrl"),
    "conformance resource": (
        {"resourceType": "SearchParameter", "text": NARRATIVE, "url": "http://example.org/sp", "name": "pain",
         "status": "draft", "description": "d", "code": "pain", "base": ["Observation"], "type": "token",
         "expression": "Observation.code", "chain": ["name"]},
        "error", "SearchParameter", "spd-2"),
    "primitive": (
        {"resourceType": "Binary", "contentType": "text/plain", "data": "not base64!"},
        "error", "Binary.data", "ase64"),
}


@pytest.mark.parametrize("family", sorted(CASES))
def test_validate_reports_the_family_with_expression_and_rule(client, family):
    resource, severity, expression, named = CASES[family]
    r = client.post(f"/fhir/{resource['resourceType']}/$validate", json=resource, content_type=FHIR)
    assert r.status_code == 200
    issues = r.get_json()["issue"]
    found = [i for i in issues if i["severity"] == severity and i.get("expression") == [expression]
             and named in i["details"]["text"]]
    assert found, issues


def test_a_valid_resource_has_no_rule_findings(client):
    good = {"resourceType": "RiskAssessment", "text": NARRATIVE, "status": "final",
            "subject": {"reference": "Patient/p1"}, "prediction": [{"probabilityDecimal": 40}]}
    issues = client.post("/fhir/RiskAssessment/$validate", json=good, content_type=FHIR).get_json()["issue"]
    assert [i["severity"] for i in issues] == ["information"]


def test_invariant_issues_carry_key_and_expression_in_diagnostics(client):
    resource = CASES["invariant"][0]
    issues = client.post("/fhir/RiskAssessment/$validate", json=resource, content_type=FHIR).get_json()["issue"]
    [issue] = [i for i in issues if i["details"]["text"].startswith("ras-2:")]
    assert issue["code"] == "invariant"
    assert issue["diagnostics"].startswith("ras-2 (RiskAssessment.prediction): ")


def test_malformed_content_gets_an_outcome_not_a_server_error(client):
    malformed = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
                 "clinicalStatus": {"coding": True}, "extension": [{"url": 3, "valueString": "x"}],
                 "text": {"status": "generated", "div": 5}}
    r = client.post("/fhir/Condition/$validate", json=malformed, content_type=FHIR)
    assert r.status_code == 200
    assert any(i["severity"] == "error" and i.get("expression") for i in r.get_json()["issue"])
