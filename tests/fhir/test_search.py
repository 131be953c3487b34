"""Search: token, string, date, reference, uri, quantity, modifiers, paging, sorting, includes, summaries."""
from __future__ import annotations

import pytest

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"


@pytest.fixture
def record(fhir):
    p1 = fhir.create({"resourceType": "Patient", "name": [{"family": "Lindqvist", "given": ["Sven"]}],
                      "birthDate": "1960-05-01", "gender": "male",
                      "identifier": [{"system": "urn:pnr", "value": "196005019876"}]})["id"]
    p2 = fhir.create({"resourceType": "Patient", "name": [{"family": "Lind", "given": ["Åse"]}],
                      "birthDate": "1985-11-30", "gender": "female"})["id"]
    c1 = fhir.create({"resourceType": "Condition", "subject": {"reference": f"Patient/{p1}"},
                      "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                     "code": "active"}]},
                      "code": {"coding": [{"system": ICD10, "code": "M54.5"}]}, "onsetDateTime": "2026-09-01"})["id"]
    fhir.create({"resourceType": "Condition", "subject": {"reference": f"Patient/{p2}"},
                 "code": {"coding": [{"system": ICD10, "code": "C50.9"}]}, "onsetDateTime": "2019-02-10"})
    for i, v in enumerate([3, 7, 9]):
        fhir.create({"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{p1}"},
                     "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
                     "valueQuantity": {"value": v, "system": "http://unitsofmeasure.org", "code": "{score}"},
                     "effectiveDateTime": f"2026-10-0{i + 1}T10:00:00+02:00"})
    return {"p1": p1, "p2": p2, "c1": c1}


def ids(bundle):
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match")


def test_token_system_and_code(fhir, record):
    assert fhir.search(f"Condition?code={ICD10}|M54.5")["total"] == 1
    assert fhir.search("Condition?code=M54.5")["total"] == 1
    assert fhir.search(f"Condition?code={LOINC}|M54.5")["total"] == 0
    assert fhir.search(f"Condition?code={ICD10}|")["total"] == 2


def test_token_not_modifier(fhir, record):
    assert fhir.search(f"Condition?code:not={ICD10}|M54.5")["total"] == 1


def test_token_or_values(fhir, record):
    assert fhir.search("Condition?code=M54.5,C50.9")["total"] == 2


def test_token_in_a_stored_valueset(fhir, record):
    fhir.put("ValueSet/lbp", {"resourceType": "ValueSet", "id": "lbp", "url": "https://example.org/ValueSet/lbp",
                              "status": "active",
                              "expansion": {"timestamp": "2026-11-01T00:00:00Z",
                                            "contains": [{"system": ICD10, "code": "M54.5"}]}})
    assert ids(fhir.search("Condition?code:in=https://example.org/ValueSet/lbp")) == [record["c1"]]
    r = fhir.get("Condition?code:in=https://example.org/ValueSet/unknown")
    assert r.status_code == 404


def test_string_is_prefix_accent_and_case_insensitive(fhir, record):
    assert fhir.search("Patient?name=lind")["total"] == 2
    assert fhir.search("Patient?family=LINDQ")["total"] == 1
    assert fhir.search("Patient?given=ase")["total"] == 1
    assert fhir.search("Patient?family:exact=Lind")["total"] == 1
    assert fhir.search("Patient?name:contains=qvi")["total"] == 1


def test_date_prefixes(fhir, record):
    assert fhir.search("Patient?birthdate=1960-05-01")["total"] == 1
    assert fhir.search("Patient?birthdate=1960")["total"] == 1
    assert fhir.search("Patient?birthdate=gt1970")["total"] == 1
    assert fhir.search("Patient?birthdate=lt1970-01-01")["total"] == 1
    assert fhir.search("Patient?birthdate=ge1960-05-01&birthdate=le1985-11-30")["total"] == 2
    assert fhir.search("Patient?birthdate=ne1960-05-01")["total"] == 1
    assert fhir.search("Observation?date=ge2026-10-02")["total"] == 2
    assert fhir.search("Observation?date=sa2026-10-01")["total"] == 2
    r = fhir.get("Patient?birthdate=yesterday")
    assert r.status_code == 400 and r.get_json()["issue"][0]["expression"] == ["Patient?birthdate"]


def test_reference_forms(fhir, record):
    p1 = record["p1"]
    assert fhir.search(f"Observation?subject=Patient/{p1}")["total"] == 3
    assert fhir.search(f"Observation?patient={p1}")["total"] == 3
    assert fhir.search(f"Observation?subject:Patient={p1}")["total"] == 3
    assert fhir.search(f"Condition?patient={p1}&code=M54.5")["total"] == 1


def test_quantity_and_number(fhir, record):
    assert fhir.search("Observation?value-quantity=gt5")["total"] == 2
    assert fhir.search("Observation?value-quantity=7|http://unitsofmeasure.org|{score}")["total"] == 1


def test_id_and_last_updated(fhir, record):
    assert ids(fhir.search(f"Patient?_id={record['p1']}")) == [record["p1"]]
    assert fhir.search("Patient?_lastUpdated=gt2000-01-01")["total"] == 2
    assert fhir.search("Patient?_lastUpdated=lt2000-01-01")["total"] == 0


def test_count_and_next_links_page_through_everything(fhir, record):
    first = fhir.search("Observation?_count=2")
    assert first["total"] == 3 and len(first["entry"]) == 2
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = fhir.search(nxt.split("/fhir/", 1)[1])
    assert len(second["entry"]) == 1
    assert not any(link["relation"] == "next" for link in second["link"])
    seen = {e["resource"]["id"] for e in first["entry"] + second["entry"]}
    assert len(seen) == 3


def test_sort(fhir, record):
    values = [e["resource"]["valueQuantity"]["value"] for e in fhir.search("Observation?_sort=-date")["entry"]]
    assert values == [9, 7, 3]
    values = [e["resource"]["valueQuantity"]["value"] for e in fhir.search("Observation?_sort=date")["entry"]]
    assert values == [3, 7, 9]
    fams = [e["resource"]["name"][0]["family"] for e in fhir.search("Patient?_sort=family")["entry"]]
    assert fams == ["Lind", "Lindqvist"]


def test_include_and_revinclude(fhir, record):
    b = fhir.search(f"Condition?_id={record['c1']}&_include=Condition:subject")
    modes = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in b["entry"])
    assert modes == [("Condition", "match"), ("Patient", "include")]
    b = fhir.search(f"Patient?_id={record['p1']}&_revinclude=Observation:subject")
    assert sum(1 for e in b["entry"] if e["search"]["mode"] == "include") == 3
    assert b["total"] == 1


def test_summary_count_and_elements(fhir, record):
    b = fhir.search("Observation?_summary=count")
    assert b["total"] == 3 and "entry" not in b
    b = fhir.search("Patient?_elements=birthDate")
    res = b["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "birthDate"}
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])


def test_unknown_parameter_lenient_warns_strict_fails(fhir, record):
    b = fhir.search("Patient?shoe-size=42")
    assert b["total"] == 2
    outcome = [e for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    r = fhir.get("Patient?shoe-size=42", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["Patient?shoe-size"]


def test_post_search(client, record):
    r = client.post("/fhir/Patient/_search", data={"family": "lindqvist"})
    assert r.status_code == 200 and r.get_json()["total"] == 1


def test_missing_modifier(fhir, record):
    assert fhir.search("Condition?onset-date:missing=false")["total"] == 2
    assert fhir.search("Patient?gender:missing=true")["total"] == 0


def test_canonical_url_and_version(fhir):
    for v in ("1.0.0", "2.0.0"):
        fhir.put(f"PlanDefinition/pd-{v[0]}", {"resourceType": "PlanDefinition", "id": f"pd-{v[0]}",
                                                "url": "https://example.org/PlanDefinition/pd", "version": v,
                                                "status": "active"})
    assert fhir.search("PlanDefinition?url=https://example.org/PlanDefinition/pd")["total"] == 2
    assert fhir.search("PlanDefinition?url=https://example.org/PlanDefinition/pd&version=2.0.0")["total"] == 1
