"""Every entry point writes through app.records: the REST API, a transaction Bundle and the knowledge loader
refuse the same resource with the same words, and a write is audited and visible to the knowledge at once."""
from __future__ import annotations

import json

from app.knowledge.loader import load_directories

BROKEN_PLAN = {
    "resourceType": "PlanDefinition", "id": "broken-plan", "url": "https://example.org/PlanDefinition/broken-plan",
    "status": "draft", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                                            "code": "eca-rule"}]},
    "action": [{"id": "a", "title": "A", "condition": [{"kind": "applicability", "expression": {
        "language": "text/fhirpath", "expression": "%age >"}}]}],
}
BAD_PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-13-45"}


def _issue(response):
    body = response.get_json()
    if body.get("resourceType") == "Bundle":  # a batch answers per entry
        body = body["entry"][0]["response"]["outcome"]
    return body["issue"][0]


def test_rest_and_transaction_refuse_a_broken_artifact_alike(fhir):
    rest = fhir.put("PlanDefinition/broken-plan", BROKEN_PLAN)
    bundle = fhir.post("", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": BROKEN_PLAN, "request": {"method": "PUT", "url": "PlanDefinition/broken-plan"}}]})
    assert rest.status_code == bundle.status_code == 400
    assert _issue(rest)["details"]["text"] == _issue(bundle)["details"]["text"]
    assert all(e.startswith("PlanDefinition") for e in _issue(rest)["expression"])
    assert all(e.startswith("Bundle.entry[0].resource") for e in _issue(bundle)["expression"])
    assert fhir.get("PlanDefinition/broken-plan").status_code == 404


def test_the_loader_refuses_the_same_artifact_with_the_same_words(app, fhir, tmp_path):
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "PlanDefinition-broken-plan.json").write_text(json.dumps(BROKEN_PLAN))
    rest_text = _issue(fhir.put("PlanDefinition/broken-plan", BROKEN_PLAN))["details"]["text"]
    with app.app_context():
        report = load_directories(app.extensions["lbp"], [str(folder)])
    assert report.loaded == 0
    assert len(report.failures) == 1 and rest_text in report.failures[0]


def test_rest_batch_and_transaction_refuse_an_invalid_patient_alike(fhir):
    rest = fhir.put("Patient/p1", BAD_PATIENT)
    batch = fhir.post("", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": BAD_PATIENT, "request": {"method": "PUT", "url": "Patient/p1"}}]})
    assert rest.status_code == 400 and batch.status_code == 200
    assert _issue(rest)["details"]["text"] == _issue(batch)["details"]["text"]
    assert _issue(batch)["expression"][0].startswith("Bundle.entry[0].resource")


def test_a_written_artifact_is_used_by_the_next_request(fhir, app):
    valueset = {"resourceType": "ValueSet", "id": "vs-new", "url": "https://example.org/ValueSet/vs-new",
                "status": "active", "compose": {"include": [{"system": "http://loinc.org",
                                                             "concept": [{"code": "72514-3"}]}]}}
    assert fhir.put("ValueSet/vs-new", valueset).status_code == 201
    r = fhir.get("ValueSet/$validate-code?url=https://example.org/ValueSet/vs-new&system=http://loinc.org"
                 "&code=72514-3")
    assert r.status_code == 200
    assert any(p["name"] == "result" and p["valueBoolean"] for p in r.get_json()["parameter"])
