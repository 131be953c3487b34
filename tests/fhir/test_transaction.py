"""Transactions (all or nothing) and batches (independent entries)."""
from __future__ import annotations

from tests.conftest import FHIR

PRACTITIONER = {"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi",
                                                                 "value": "9999914239"}],
                "name": [{"family": "Hilll"}]}


def tx(*entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(full_url, resource, **request):
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"], **request}}


def count(fhir, rtype):
    return fhir.search(f"{rtype}?_summary=count")["total"]


def test_transaction_rewrites_urn_uuid_and_conditional_references(fhir):
    fhir.create(PRACTITIONER)
    bundle = tx(
        post("urn:uuid:11111111-1111-1111-1111-111111111111",
             {"resourceType": "Patient", "name": [{"family": "Berg"}]}),
        post("urn:uuid:22222222-2222-2222-2222-222222222222",
             {"resourceType": "Encounter", "status": "finished",
              "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
              "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
              "participant": [{"individual": {
                  "reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999914239"}}]}),
    )
    r = fhir.post("", bundle)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    assert all(e["response"]["etag"] == 'W/"1"' and e["response"]["location"] for e in body["entry"])
    patient_id = body["entry"][0]["response"]["location"].split("/")[1]
    enc = fhir.search(f"Encounter?subject=Patient/{patient_id}")["entry"][0]["resource"]
    assert enc["subject"]["reference"] == f"Patient/{patient_id}"
    assert enc["participant"][0]["individual"]["reference"].startswith("Practitioner/")


def test_transaction_rolls_back_when_one_entry_fails(fhir):
    bundle = tx(
        post("urn:uuid:a", {"resourceType": "Patient", "name": [{"family": "Berg"}]}),
        post("urn:uuid:b", {"resourceType": "Observation", "status": "not-a-status",
                            "code": {"text": "x"}, "subject": {"reference": "urn:uuid:a"}}),
    )
    r = fhir.post("", bundle)
    assert r.status_code == 400
    issue = r.get_json()["issue"][0]
    assert any(e.startswith("Bundle.entry[1]") for e in issue["expression"])
    assert count(fhir, "Patient") == 0 and count(fhir, "Observation") == 0


def test_transaction_with_unresolvable_conditional_reference_writes_nothing(fhir):
    bundle = tx(
        post("urn:uuid:a", {"resourceType": "Patient"}),
        post("urn:uuid:b", {"resourceType": "Encounter", "status": "finished",
                            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                            "subject": {"reference": "Patient?identifier=urn:nobody|0"}}),
    )
    r = fhir.post("", bundle)
    assert r.status_code == 404
    assert r.get_json()["issue"][0]["expression"][0].startswith("Bundle.entry[1]")
    assert count(fhir, "Patient") == 0


def test_transaction_with_dangling_urn_uuid_is_refused(fhir):
    bundle = tx(post("urn:uuid:b", {"resourceType": "Encounter", "status": "finished",
                                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                              "code": "AMB"},
                                    "subject": {"reference": "urn:uuid:nowhere"}}))
    r = fhir.post("", bundle)
    assert r.status_code == 404 and count(fhir, "Encounter") == 0


def test_transaction_if_none_exist_and_if_match(fhir):
    fhir.put("Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "female"})
    bundle = tx(
        post("urn:uuid:prac", PRACTITIONER, ifNoneExist="identifier=http://hl7.org/fhir/sid/us-npi|9999914239"),
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "male"},
         "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"1"'}},
    )
    r = fhir.post("", bundle)
    assert [e["response"]["status"] for e in r.get_json()["entry"]] == ["201 Created", "200 OK"]
    r = fhir.post("", bundle)  # the practitioner exists now and the patient is at version 2
    assert r.status_code == 412
    assert count(fhir, "Practitioner") == 1
    assert fhir.get("Patient/p1").get_json()["meta"]["versionId"] == "2"


def test_transaction_delete_and_get_entries(fhir):
    fhir.put("Patient/gone", {"resourceType": "Patient", "id": "gone"})
    fhir.put("Patient/stay", {"resourceType": "Patient", "id": "stay"})
    bundle = tx({"request": {"method": "DELETE", "url": "Patient/gone"}},
                {"request": {"method": "GET", "url": "Patient/stay"}})
    body = fhir.post("", bundle).get_json()
    assert body["entry"][0]["response"]["status"] == "204 No Content"
    assert body["entry"][1]["resource"]["id"] == "stay"
    assert fhir.get("Patient/gone").status_code == 410


def test_batch_entries_are_independent(fhir):
    bundle = tx(
        post("urn:uuid:a", {"resourceType": "Patient", "gender": "female"}),
        post("urn:uuid:b", {"resourceType": "Patient", "gender": "not-a-gender"}),
        kind="batch",
    )
    r = fhir.post("", bundle)
    assert r.status_code == 200
    entries = r.get_json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "400"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert count(fhir, "Patient") == 1


def test_bundle_size_limit(app, fhir):
    app.config["MAX_BUNDLE_ENTRIES"] = 2
    bundle = tx(*[post(f"urn:uuid:{i}", {"resourceType": "Patient"}) for i in range(3)])
    r = fhir.post("", bundle)
    assert r.status_code == 413
    assert r.get_json()["issue"][0]["expression"] == ["Bundle.entry"]
    assert count(fhir, "Patient") == 0


def test_entry_without_request_is_refused(fhir):
    r = fhir.post("", tx({"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient"}}))
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]


def test_post_to_base_needs_transaction_or_batch(client):
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}, content_type=FHIR)
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["Bundle.type"]


def test_duplicate_full_url_is_refused(fhir):
    r = fhir.post("", tx(post("urn:uuid:a", {"resourceType": "Patient"}),
                         post("urn:uuid:a", {"resourceType": "Patient"})))
    assert r.status_code == 400 and count(fhir, "Patient") == 0
