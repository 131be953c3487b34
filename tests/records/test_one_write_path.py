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


def _rmdq_case():
    from pathlib import Path

    scoring = Path(__file__).resolve().parents[1] / "data" / "scoring"
    case = next(json.loads(p.read_text()) for p in sorted(scoring.glob("*.json"))
                if "rmdq" in json.loads(p.read_text())["questionnaire"])
    root = Path(__file__).resolve().parents[2]
    questionnaire = json.loads((root / "questionnaires" / "Questionnaire-rmdq.json").read_text(encoding="utf-8"))
    return case, questionnaire


def test_a_response_in_a_transaction_is_scored_and_extracted_as_on_post(fhir):
    case, questionnaire = _rmdq_case()
    assert fhir.put(f"Questionnaire/{questionnaire['id']}", questionnaire).status_code == 201
    patient = fhir.create({"resourceType": "Patient"})["id"]
    response = dict(case["response"], subject={"reference": f"Patient/{patient}"})
    response.pop("id", None)
    rest = fhir.post("QuestionnaireResponse", response)
    bundle = fhir.post("", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:r1", "resource": response,
         "request": {"method": "POST", "url": "QuestionnaireResponse"}}]})
    assert rest.status_code == 201 and bundle.status_code == 200, bundle.get_json()
    via_bundle = bundle.get_json()["entry"][0]["response"]["location"].split("/_history")[0]

    def total(qr):
        return next(i["answer"][0]["valueInteger"] for i in qr["item"] if i["linkId"] == "rmdq-total")

    assert total(fhir.get(via_bundle).get_json()) == total(rest.get_json()) == case["expected"]["rmdq-total"]
    derived_rest = fhir.search(f"Observation?derived-from=QuestionnaireResponse/{rest.get_json()['id']}")
    derived_bundle = fhir.search(f"Observation?derived-from={via_bundle}")
    assert derived_rest["total"] == derived_bundle["total"] >= 1


def test_an_incomplete_response_refuses_the_whole_transaction(fhir):
    case, questionnaire = _rmdq_case()
    assert fhir.put(f"Questionnaire/{questionnaire['id']}", questionnaire).status_code == 201
    incomplete = dict(case["response"], item=case["response"]["item"][:3])
    incomplete.pop("id", None)
    before = fhir.search("Patient?_summary=count")["total"]
    r = fhir.post("", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": incomplete, "request": {"method": "POST", "url": "QuestionnaireResponse"}}]})
    assert r.status_code == 400 and r.get_json()["issue"][0]["code"] == "required"
    assert all(e.startswith("Bundle.entry[1].resource") for e in r.get_json()["issue"][0]["expression"])
    assert fhir.search("Patient?_summary=count")["total"] == before
