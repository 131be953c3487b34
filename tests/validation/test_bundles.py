"""Bundle references resolved against fullUrls; searchset and history rules."""
from __future__ import annotations

from app.validation import validate_resource

NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'}
PATIENT_URN = "urn:uuid:0b7c6a43-2f1e-4c1b-9d7e-5a3f9c2e1d00"


def observation(subject):
    return {"resourceType": "Observation", "text": NARRATIVE, "status": "final", "code": {"text": "NRS"},
            "subject": {"reference": subject}}


def bundle(bundle_type, *entries, **more):
    return {"resourceType": "Bundle", "type": bundle_type, "entry": list(entries), **more}


def reference_issues(resource):
    return [(i.severity, i.expression[0]) for i in validate_resource(resource, check_rules=True)
            if i.code == "not-found"]


def test_urn_references_must_match_a_full_url_of_the_bundle():
    patient = {"fullUrl": PATIENT_URN, "resource": {"resourceType": "Patient", "text": NARRATIVE},
               "request": {"method": "POST", "url": "Patient"}}
    entry = {"fullUrl": "urn:uuid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "resource": observation(PATIENT_URN),
             "request": {"method": "POST", "url": "Observation"}}
    assert reference_issues(bundle("transaction", patient, entry)) == []
    assert reference_issues(bundle("transaction", entry)) == [
        ("error", "Bundle.entry[0].resource.subject.reference")]


def test_relative_references_resolve_against_the_base_of_a_restful_full_url():
    patient = {"fullUrl": "http://server.example.org/fhir/Patient/p1",
               "resource": {"resourceType": "Patient", "id": "p1", "text": NARRATIVE}}
    entry = {"fullUrl": "http://server.example.org/fhir/Observation/o1", "resource": observation("Patient/p1")}
    composition = {"fullUrl": "http://server.example.org/fhir/Composition/c1", "resource": {
        "resourceType": "Composition", "id": "c1", "text": NARRATIVE, "status": "final",
        "type": {"text": "note"}, "date": "2024-03-01", "title": "Note", "author": [{"reference": "Patient/p1"}],
        "subject": {"reference": "Patient/p2"}}}
    identifier = {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1e0f9a8b-7c6d-4a3b-8c2d-9a8b7c6d5e4f"}
    document = bundle("document", composition, patient, entry, timestamp="2024-03-01T10:00:00Z",
                      identifier=identifier)
    assert reference_issues(document) == [("warning", "Bundle.entry[0].resource.subject.reference")]


def test_searchset_total_counts_every_match_and_entries_carry_full_urls():
    match = {"fullUrl": "http://server.example.org/fhir/Patient/p1",
             "resource": {"resourceType": "Patient", "id": "p1", "text": NARRATIVE}, "search": {"mode": "match"}}
    searchset = bundle("searchset", match, dict(match, fullUrl="http://server.example.org/fhir/Patient/p2"),
                       total=1)
    issues = validate_resource(searchset, check_rules=True)
    assert [(i.severity, i.expression) for i in issues if "total" in i.text] == [("error", ["Bundle.total"])]
    del match["fullUrl"]
    issues = validate_resource(bundle("searchset", match, total=1), check_rules=True)
    assert [(i.severity, i.expression) for i in issues if "fullUrl" in i.text] == [("warning", ["Bundle.entry[0]"])]


def test_history_delete_entries_carry_no_resource():
    deleted = {"fullUrl": "http://server.example.org/fhir/Patient/p1",
               "request": {"method": "DELETE", "url": "Patient/p1"}, "response": {"status": "204"}}
    history = bundle("history", deleted)
    assert not [i for i in validate_resource(history, check_rules=True) if i.is_error]
    deleted["resource"] = {"resourceType": "Patient", "id": "p1", "text": NARRATIVE}
    issues = validate_resource(history, check_rules=True)
    assert [(i.severity, i.expression) for i in issues if "DELETE" in i.text] == [
        ("error", ["Bundle.entry[0].resource"])]
