"""read, vread, create, update, delete, conditional create, ETag / If-Match, content types."""
from __future__ import annotations

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": "197001022384"}],
    "name": [{"family": "Öberg", "given": ["Åsa"]}],
    "gender": "female",
    "birthDate": "1970-01-02",
}


def test_create_assigns_id_and_version_and_returns_location(fhir):
    r = fhir.post("Patient", PATIENT)
    assert r.status_code == 201
    body = r.get_json()
    assert body["id"] and body["meta"]["versionId"] == "1" and body["meta"]["lastUpdated"].endswith("Z")
    assert r.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Content-Type"].startswith("application/fhir+json")


def test_read_has_etag_and_last_modified(fhir):
    pid = fhir.create(PATIENT)["id"]
    r = fhir.get(f"Patient/{pid}")
    assert r.status_code == 200
    assert r.get_json()["name"][0]["family"] == "Öberg"
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Last-Modified"].endswith("GMT")


def test_read_unknown_is_404_with_outcome(fhir):
    r = fhir.get("Patient/does-not-exist")
    assert r.status_code == 404
    issue = r.get_json()["issue"][0]
    assert issue["code"] == "not-found" and issue["expression"] == ["Patient.id"]


def test_update_with_client_id_is_upsert(fhir):
    r = fhir.put("Patient/p1", {**PATIENT, "id": "p1"})
    assert r.status_code == 201
    r = fhir.put("Patient/p1", {**PATIENT, "id": "p1", "gender": "other"})
    assert r.status_code == 200
    assert r.get_json()["meta"]["versionId"] == "2"
    assert fhir.get("Patient/p1").get_json()["gender"] == "other"


def test_vread_returns_old_versions(fhir):
    fhir.put("Patient/p1", {**PATIENT, "id": "p1"})
    fhir.put("Patient/p1", {**PATIENT, "id": "p1", "gender": "other"})
    assert fhir.get("Patient/p1/_history/1").get_json()["gender"] == "female"
    assert fhir.get("Patient/p1/_history/2").get_json()["gender"] == "other"
    assert fhir.get("Patient/p1/_history/3").status_code == 404


def test_if_match_mismatch_is_412_and_changes_nothing(fhir):
    fhir.put("Patient/p1", {**PATIENT, "id": "p1"})
    r = fhir.put("Patient/p1", {**PATIENT, "id": "p1", "gender": "male"}, headers={"If-Match": 'W/"7"'})
    assert r.status_code == 412
    assert fhir.get("Patient/p1").get_json()["gender"] == "female"
    r = fhir.put("Patient/p1", {**PATIENT, "id": "p1", "gender": "male"}, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200


def test_delete_then_read_is_410_and_history_keeps_versions(fhir):
    fhir.put("Patient/p1", {**PATIENT, "id": "p1"})
    assert fhir.delete("Patient/p1", headers={"If-Match": 'W/"9"'}).status_code == 412
    assert fhir.delete("Patient/p1").status_code == 200
    assert fhir.get("Patient/p1").status_code == 410
    hist = fhir.get("Patient/p1/_history").get_json()
    assert hist["type"] == "history" and hist["total"] == 2
    assert hist["entry"][0]["request"]["method"] == "DELETE"
    assert fhir.search("Patient?_id=p1")["total"] == 0


def test_conditional_create_if_none_exist(fhir):
    first = fhir.post("Patient", PATIENT, headers={"If-None-Exist": "identifier=197001022384"})
    assert first.status_code == 201
    again = fhir.post("Patient", PATIENT, headers={"If-None-Exist": "identifier=197001022384"})
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert fhir.search("Patient?_summary=count")["total"] == 1


def test_type_history_lists_all_versions(fhir):
    fhir.put("Patient/a", {**PATIENT, "id": "a"})
    fhir.put("Patient/a", {**PATIENT, "id": "a", "gender": "male"})
    fhir.put("Patient/b", {**PATIENT, "id": "b"})
    hist = fhir.get("Patient/_history").get_json()
    assert hist["total"] == 3
    system = fhir.get("_history?_count=100").get_json()
    patients = [e for e in system["entry"] if e["fullUrl"].split("/fhir/")[1].startswith("Patient/")]
    assert len(patients) == 3  # the rest is the audit trail of these very requests


def test_id_mismatch_between_url_and_body_is_400(fhir):
    r = fhir.put("Patient/p1", {**PATIENT, "id": "p2"})
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["Patient.id"]


def test_type_mismatch_is_400(fhir):
    r = fhir.post("Observation", PATIENT)
    assert r.status_code == 400


def test_unknown_type_is_404(fhir):
    r = fhir.get("Spaceship/1")
    assert r.status_code == 404
    assert r.get_json()["resourceType"] == "OperationOutcome"


def test_wrong_content_type_is_415(client):
    r = client.post("/fhir/Patient", data=b"<Patient/>", content_type="application/xml")
    assert r.status_code == 415
    assert r.get_json()["issue"][0]["expression"] == ["Content-Type"]


def test_malformed_json_is_400_and_nothing_written(fhir, client):
    r = client.post("/fhir/Patient", data=b'{"resourceType": "Patient",', content_type="application/fhir+json")
    assert r.status_code == 400
    assert fhir.search("Patient?_summary=count")["total"] == 0


def test_deeply_nested_json_is_refused(client):
    deep = '{"resourceType":"Patient","extension":' + "[" * 300 + "]" * 300 + "}"
    r = client.post("/fhir/Patient", data=deep.encode(), content_type="application/fhir+json")
    assert r.status_code == 400
    assert r.get_json()["resourceType"] == "OperationOutcome"


def test_oversized_body_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    r = client.post("/fhir/Patient", data=b'{"resourceType":"Patient","text":"' + b"x" * 5000 + b'"}',
                    content_type="application/fhir+json")
    assert r.status_code == 413
    assert r.get_json()["issue"][0]["code"] == "too-costly"


def test_format_json_honoured_and_xml_refused(fhir, client):
    pid = fhir.create(PATIENT)["id"]
    assert client.get(f"/fhir/Patient/{pid}?_format=json").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}?_format=application/fhir+json").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}?_format=xml").status_code == 406


def test_invalid_resource_is_refused_with_expression(fhir):
    r = fhir.post("Patient", {**PATIENT, "birthDate": "02/01/1970"})
    assert r.status_code == 400
    issues = r.get_json()["issue"]
    assert any("Patient.birthDate" in e for i in issues for e in i.get("expression", []))
    assert fhir.search("Patient?_summary=count")["total"] == 0


def test_prefer_return_minimal(fhir):
    r = fhir.post("Patient", PATIENT, headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.data == b"" and r.headers["Location"]
