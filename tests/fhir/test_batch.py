"""Batch semantics with all entries in one database transaction: each entry stands or fails alone."""
from __future__ import annotations

from tests.fhir.test_transaction import count, post, tx

ORG_ID = "https://github.com/synthetichealth/synthea|org-1"


def _org(name: str) -> dict:
    return {"resourceType": "Organization", "name": name,
            "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "org-1"}]}


def _put(resource: dict) -> dict:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def test_a_failing_entry_in_the_middle_of_a_batch_fails_alone(fhir):
    bundle = tx(
        post("urn:uuid:a", {"resourceType": "Patient", "name": [{"family": "Alm"}]}),
        post("urn:uuid:b", {"resourceType": "Patient", "birthDate": "not-a-date"}),
        post("urn:uuid:c", {"resourceType": "Patient", "name": [{"family": "Ek"}]}),
        kind="batch",
    )
    r = fhir.post("", bundle)
    assert r.status_code == 200, r.get_json()
    entries = r.get_json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["201", "400", "201"]
    outcome = entries[1]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"][0].startswith("Bundle.entry[1].resource")
    assert count(fhir, "Patient") == 2
    families = {p["resource"]["name"][0]["family"] for p in fhir.search("Patient")["entry"]}
    assert families == {"Alm", "Ek"}
    for e in (entries[0], entries[2]):
        assert fhir.get(e["response"]["location"].split("/_history")[0]).status_code == 200


def test_what_a_failing_batch_entry_wrote_before_it_failed_is_undone(app, fhir, monkeypatch):
    """The entry's own SQL (an update moves the old version to history) is rolled back to its savepoint."""
    from app.fhir import transaction

    for pid in ("a", "b"):
        fhir.put(f"Patient/{pid}", {"resourceType": "Patient", "id": pid, "gender": "female"})
    real = transaction._execute

    def fail_after_writing_b(e, tx_):
        real(e, tx_)
        if e.res_id == "b":
            raise RuntimeError("a failure after the entry's update was executed")

    monkeypatch.setattr(transaction, "_execute", fail_after_writing_b)
    bundle = tx(_put({"resourceType": "Patient", "id": "a", "gender": "male"}),
                _put({"resourceType": "Patient", "id": "b", "gender": "male"}),
                post("urn:uuid:c", {"resourceType": "Patient", "gender": "other"}), kind="batch")
    r = fhir.post("", bundle)
    assert r.status_code == 200
    entries = r.get_json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "500", "201"]
    assert entries[1]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1]"]
    a, b = fhir.get("Patient/a").get_json(), fhir.get("Patient/b").get_json()
    assert (a["gender"], a["meta"]["versionId"]) == ("male", "2")
    assert (b["gender"], b["meta"]["versionId"]) == ("female", "1")
    assert fhir.get("Patient/b/_history/2").status_code == 404
    assert len(fhir.get("Patient/b/_history").get_json()["entry"]) == 1
    assert fhir.search("Patient?gender=male")["total"] == 1
    assert count(fhir, "Patient") == 3


def test_a_transaction_with_a_failing_entry_commits_nothing(fhir):
    fhir.put("Patient/kept", {"resourceType": "Patient", "id": "kept", "gender": "female"})
    bundle = tx(
        post("urn:uuid:a", {"resourceType": "Patient", "name": [{"family": "Alm"}]}),
        _put({"resourceType": "Patient", "id": "kept", "gender": "male"}),
        post("urn:uuid:b", {"resourceType": "Patient", "birthDate": "not-a-date"}),
    )
    r = fhir.post("", bundle)
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"][0].startswith("Bundle.entry[2].resource")
    assert count(fhir, "Patient") == 1
    kept = fhir.get("Patient/kept").get_json()
    assert (kept["gender"], kept["meta"]["versionId"]) == ("female", "1")


def test_if_none_exist_sees_an_earlier_entry_of_the_same_batch(fhir):
    """Entries are planned together, but the second one is planned again once the first has written."""
    bundle = tx(post("urn:uuid:a", _org("First"), ifNoneExist=f"identifier={ORG_ID}"),
                post("urn:uuid:b", _org("Second"), ifNoneExist=f"identifier={ORG_ID}"), kind="batch")
    entries = fhir.post("", bundle).get_json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["201", "200"]
    assert entries[0]["response"]["location"] == entries[1]["response"]["location"]
    assert count(fhir, "Organization") == 1
    assert fhir.search("Organization")["entry"][0]["resource"]["name"] == "First"


def test_if_none_exist_matching_a_stored_resource_writes_nothing(fhir):
    existing = fhir.create(_org("Stored"))
    bundle = tx(post("urn:uuid:a", _org("Again"), ifNoneExist=f"identifier={ORG_ID}"),
                post("urn:uuid:b", {"resourceType": "Patient"}), kind="batch")
    entries = fhir.post("", bundle).get_json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "201"]
    assert entries[0]["response"]["location"].startswith(f"Organization/{existing['id']}/")
    assert count(fhir, "Organization") == 1


def test_get_entries_of_a_batch_see_its_writes(fhir):
    fhir.put("Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "female"})
    bundle = tx({"request": {"method": "GET", "url": "Patient?gender=male"}},
                _put({"resourceType": "Patient", "id": "p1", "gender": "male"}), kind="batch")
    entries = fhir.post("", bundle).get_json()["entry"]
    assert entries[1]["response"]["status"].startswith("200")
    assert entries[0]["response"]["status"].startswith("200")
    assert entries[0]["resource"]["total"] == 1


def test_one_audit_event_records_every_entry_a_batch_wrote(app, fhir):
    def audit_events():
        with app.extensions["lbp"].store.engine.connect() as c:
            return [row[0] for row in c.exec_driver_sql(
                "SELECT res_id FROM resources WHERE res_type = 'AuditEvent'")]

    before = set(audit_events())
    bundle = tx(*[post(f"urn:uuid:{i}", {"resourceType": "Patient", "gender": "female"}) for i in range(3)],
                post("urn:uuid:bad", {"resourceType": "Patient", "gender": "no"}), kind="batch")
    entries = fhir.post("", bundle).get_json()["entry"]
    new = set(audit_events()) - before
    assert len(new) == 1
    event = fhir.get(f"AuditEvent/{new.pop()}").get_json()
    whats = {e["what"]["reference"] for e in event["entity"] if "what" in e}
    created = {e["response"]["location"].split("/_history")[0] for e in entries[:3]}
    assert created <= whats
    assert len([w for w in whats if w.startswith("Patient/")]) == 3
