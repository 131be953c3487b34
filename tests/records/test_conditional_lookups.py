"""Conditional lookups (If-None-Exist, conditional references) answer as the search with the same query does."""
from __future__ import annotations

import pytest

S1, S2 = "urn:oid:1.2.752.129.2.1.3.1", "http://example.org/mrn"


@pytest.fixture
def patients(fhir):
    def make(*identifiers, deleted=False):
        pid = fhir.create({"resourceType": "Patient", "identifier": [
            {"value": v} if s is None else {"system": s, "value": v} for s, v in identifiers]})["id"]
        if deleted:
            assert fhir.delete(f"Patient/{pid}").status_code in (200, 204)
        return pid

    return {"s1a": make((S1, "a")), "s2a": make((S2, "a")), "nob": make((None, "b")),
            "gone": make((S1, "c"), deleted=True), "both": make((S1, "d"), (S2, "d"))}


@pytest.mark.parametrize("query", [f"identifier={S1}|a", "identifier=a", "identifier=|b", f"identifier={S2}|b",
                                   f"identifier={S1}|c", f"identifier={S1}|d", "identifier=d", f"identifier={S1}|",
                                   "identifier=nothing", "gender=female", f"identifier={S1}|a,|b"])
def test_a_conditional_lookup_matches_what_the_search_finds(app, fhir, patients, query):
    from app.records import conditional_ids

    with app.test_request_context():
        found = conditional_ids("Patient", query)
    searched = [e["resource"]["id"] for e in fhir.search(f"Patient?{query}").get("entry", [])]
    assert len(searched) <= 2
    assert sorted(found) == sorted(searched)


def test_if_none_exist_with_one_identifier_finds_the_stored_patient(fhir, patients):
    r = fhir.post("Patient", {"resourceType": "Patient"}, headers={"If-None-Exist": f"identifier={S1}|a"})
    assert r.status_code == 200
    assert r.get_json()["id"] == patients["s1a"]
    r = fhir.post("Patient", {"resourceType": "Patient"}, headers={"If-None-Exist": "identifier=a"})
    assert r.status_code == 412
    r = fhir.post("Patient", {"resourceType": "Patient"}, headers={"If-None-Exist": f"identifier={S1}|c"})
    assert r.status_code == 201  # the only match is deleted
