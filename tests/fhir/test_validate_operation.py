"""$validate at type and instance level, with mode and profile."""
from __future__ import annotations

from tests.conftest import FHIR


def _issues(r):
    return r.get_json()["issue"]


def test_type_level_validate_reports_errors_with_expressions(client):
    bad = {"resourceType": "Observation", "status": "done", "code": {"text": "NRS"}, "valueInteger": "seven"}
    r = client.post("/fhir/Observation/$validate", json=bad, content_type=FHIR)
    assert r.status_code == 200
    issues = _issues(r)
    exprs = {e for i in issues for e in i.get("expression", [])}
    assert "Observation.status" in exprs and "Observation.valueInteger" in exprs
    assert all({"severity", "code", "details"} <= set(i) for i in issues)


def test_valid_resource_gives_an_information_outcome(client):
    good = {"resourceType": "Patient", "birthDate": "1970-01-01"}
    r = client.post("/fhir/Patient/$validate", json=good, content_type=FHIR)
    issues = _issues(r)
    assert not [i for i in issues if i["severity"] in ("error", "fatal")]


def test_parameters_with_mode_and_profile(client):
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient"}},
        {"name": "mode", "valueCode": "update"},
    ]}
    issues = _issues(client.post("/fhir/Patient/$validate", json=params, content_type=FHIR))
    assert any(i["code"] == "required" and i["expression"] == ["Patient.id"] for i in issues)
    params["parameter"][1] = {"name": "profile", "valueUri": "http://example.org/StructureDefinition/unknown"}
    issues = _issues(client.post("/fhir/Patient/$validate", json=params, content_type=FHIR))
    assert any(i["code"] == "not-supported" for i in issues)
    params["parameter"][1] = {"name": "mode", "valueCode": "sideways"}
    r = client.post("/fhir/Patient/$validate", json=params, content_type=FHIR)
    assert r.status_code == 400 and _issues(r)[0]["expression"] == ["Parameters.parameter('mode')"]


def test_instance_level_validates_the_stored_resource_and_delete_mode(client):
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, content_type=FHIR)
    r = client.post("/fhir/Patient/p1/$validate")
    assert r.status_code == 200
    delete = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}
    assert client.post("/fhir/Patient/p1/$validate", json=delete, content_type=FHIR).status_code == 200
    assert client.post("/fhir/Patient/nope/$validate", json=delete, content_type=FHIR).status_code == 404


def test_type_mismatch_and_unknown_operation(client):
    r = client.post("/fhir/Patient/$validate", json={"resourceType": "Observation"}, content_type=FHIR)
    assert any(i["expression"] == ["Observation.resourceType"] for i in _issues(r))
    r = client.post("/fhir/Patient/$teleport", json={}, content_type=FHIR)
    assert r.status_code == 404 and _issues(r)[0]["code"] == "not-supported"


def test_capability_statement_lists_validate_and_indexed_search_params(client):
    cap = client.get("/fhir/metadata").get_json()
    patient = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Patient")
    names = {p["name"] for p in patient["searchParam"]}
    assert {"_id", "_lastUpdated", "name", "birthdate", "identifier"} <= names
    assert any(o["name"] == "validate" for o in patient["operation"])
    assert {"transaction", "batch"} <= {i["code"] for i in cap["rest"][0]["interaction"]}
