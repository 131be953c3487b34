"""Parameters searched through other parameters' index rows (`patient`, `combo-code`, `phonetic`) answer as their
own rows did, and those rows are no longer written."""
from __future__ import annotations

import pytest

from app.store.indexing import StoredAs, registry

LOINC = "http://loinc.org"


def _bp(subject: str, systolic: float, *, code: str = "85354-9") -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": subject},
            "component": [{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                           "valueQuantity": {"value": systolic, "unit": "mm[Hg]"}}]}


def _weight(subject: str, kg: float) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
            "subject": {"reference": subject}, "valueQuantity": {"value": kg, "unit": "kg"}}


def _ids(bundle: dict, rtype: str = "Observation") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == rtype}


def test_the_registry_finds_the_three_shapes():
    reg = registry()
    assert reg.stored_as("Observation", "patient") == StoredAs(("subject",), "Patient")
    assert reg.stored_as("Encounter", "practitioner") == StoredAs(("participant",), "Practitioner")
    assert reg.stored_as("Observation", "combo-code") == StoredAs(("code", "component-code"))
    assert reg.stored_as("Observation", "combo-value-quantity") == StoredAs(
        ("component-value-quantity", "value-quantity"))
    assert reg.stored_as("Practitioner", "phonetic") == StoredAs(("name",))
    assert reg.stored_as("Observation", "subject") is None
    assert reg.stored_as("Claim", "patient") is None  # Claim.patient is its own expression


@pytest.fixture
def observations(fhir):
    p1 = fhir.create({"resourceType": "Patient", "name": [{"family": "Lind"}]})["id"]
    group = fhir.create({"resourceType": "Group", "type": "person", "actual": True})["id"]
    made = {
        "bp": fhir.create(_bp(f"Patient/{p1}", 150))["id"],
        "weight": fhir.create(_weight(f"Patient/{p1}", 82))["id"],
        "group_bp": fhir.create(_bp(f"Group/{group}", 120))["id"],
        "absolute": fhir.create(_weight(f"http://elsewhere.example/fhir/Patient/{p1}", 70))["id"],
    }
    return p1, group, made


def test_patient_is_the_subject_restricted_to_patients(fhir, observations):
    p1, group, made = observations
    assert _ids(fhir.search(f"Observation?patient={p1}")) == {made["bp"], made["weight"], made["absolute"]}
    assert _ids(fhir.search(f"Observation?patient=Patient/{p1}")) == {made["bp"], made["weight"],
                                                                      made["absolute"]}
    assert _ids(fhir.search(f"Observation?patient={group}")) == set()
    assert _ids(fhir.search(f"Observation?subject={group}")) == {made["group_bp"]}
    assert _ids(fhir.search("Observation?patient:missing=true")) == {made["group_bp"]}
    assert _ids(fhir.search("Observation?patient:missing=false")) == {made["bp"], made["weight"],
                                                                      made["absolute"]}


def test_include_and_revinclude_through_a_derived_parameter(fhir, observations):
    p1, group, made = observations
    found = fhir.search(f"Observation?_id={made['bp']},{made['group_bp']}&_include=Observation:patient")
    assert _ids(found, "Patient") == {p1}
    assert _ids(found, "Group") == set()
    found = fhir.search(f"Patient?_id={p1}&_revinclude=Observation:patient")
    assert _ids(found) == {made["bp"], made["weight"], made["absolute"]}


def test_combo_parameters_read_the_code_and_component_rows(fhir, observations):
    p1, group, made = observations
    assert _ids(fhir.search(f"Observation?combo-code={LOINC}|8480-6")) == {made["bp"], made["group_bp"]}
    assert _ids(fhir.search("Observation?combo-code=29463-7")) == {made["weight"], made["absolute"]}
    assert _ids(fhir.search("Observation?code=8480-6")) == set()
    assert _ids(fhir.search("Observation?combo-value-quantity=gt100")) == {made["bp"], made["group_bp"]}
    assert _ids(fhir.search("Observation?combo-value-quantity=82")) == {made["weight"]}
    assert _ids(fhir.search("Observation?value-quantity=gt100")) == set()
    ordered = fhir.search("Observation?_sort=-combo-value-quantity")["entry"]
    assert [e["resource"]["id"] for e in ordered] == [made["bp"], made["group_bp"], made["weight"],
                                                      made["absolute"]]
    assert _ids(fhir.search("Observation?combo-code:missing=true")) == set()


def test_phonetic_reads_the_name_rows(fhir):
    pid = fhir.create({"resourceType": "Practitioner", "name": [{"family": "Åberg", "given": ["Ulla"]}]})["id"]
    assert _ids(fhir.search("Practitioner?phonetic=aberg"), "Practitioner") == {pid}
    assert _ids(fhir.search("Practitioner?phonetic=nobody"), "Practitioner") == set()


def test_derived_parameters_write_no_rows_of_their_own(app, fhir, observations):
    with app.extensions["lbp"].store.engine.connect() as c:
        params = {(t, p) for t, p in c.exec_driver_sql(
            "SELECT param, res_type FROM idx_reference UNION SELECT param, res_type FROM idx_token "
            "UNION SELECT param, res_type FROM idx_number")}
    assert ("subject", "Observation") in params and ("code", "Observation") in params
    assert ("patient", "Observation") not in params
    assert ("combo-code", "Observation") not in params
    assert ("combo-value-quantity", "Observation") not in params
