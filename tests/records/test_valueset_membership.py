"""ValueSet membership has one implementation: search `:in`/`:not-in`, memberOf(), $validate-code and $expand agree."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.reasoning import compile_expression, evaluate, make_environment

ROOT = Path(__file__).resolve().parents[2]
CONDITIONS = "https://lbp-pathway.org/fhir/ValueSet/lbp-conditions"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
SKS = "urn:oid:1.2.208.176.2.4"
# (system, code, member of lbp-conditions?): sub-codes and undotted forms of M54.5, the Danish SKS form,
# and a code outside low back pain.
CODES = [
    (ICD10, "M54.50", True),
    (ICD10, "M545", True),
    (SKS, "DM5450", True),
    (ICD10, "M54.5", True),
    (ICD10, "C50.9", False),
]


@pytest.fixture
def conditions(fhir, app):
    valueset = json.loads((ROOT / "valuesets" / "ValueSet-lbp-conditions.json").read_text(encoding="utf-8"))
    r = fhir.put(f"ValueSet/{valueset['id']}", valueset)
    assert r.status_code in (200, 201), r.get_json()
    pid = fhir.create({"resourceType": "Patient", "birthDate": "1970-01-01"})["id"]
    ids = {}
    for system, code, _ in CODES:
        ids[(system, code)] = fhir.create({
            "resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": system, "code": code}]}})["id"]
    return ids


def _found(fhir, query):
    bundle = fhir.search(query)
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def _member_of(app, system, code):
    kb = app.extensions["lbp"].knowledge.base
    condition = {"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code}]}}
    compiled = compile_expression(f"Condition.code.memberOf('{CONDITIONS}')")
    result = evaluate(compiled, condition, {}, make_environment(terminology=kb.terminology))
    return result == [True]


def _validate_code(fhir, system, code):
    r = fhir.get(f"ValueSet/$validate-code?url={CONDITIONS}&system={system}&code={code}")
    assert r.status_code == 200, r.get_json()
    return next(p["valueBoolean"] for p in r.get_json()["parameter"] if p["name"] == "result")


def test_search_in_finds_what_member_of_accepts(fhir, app, conditions):
    found = _found(fhir, f"Condition?code:in={CONDITIONS}")
    not_found = _found(fhir, f"Condition?code:not-in={CONDITIONS}")
    for system, code, member in CODES:
        rid = conditions[(system, code)]
        with app.app_context():
            assert _member_of(app, system, code) is member, (system, code)
        assert (rid in found) is member, (system, code)
        assert (rid in not_found) is not member, (system, code)
        assert _validate_code(fhir, system, code) is member, (system, code)


def test_search_in_finds_the_prefix_codes_the_rules_accept(fhir, conditions):
    found = _found(fhir, f"Condition?code:in={CONDITIONS}")
    assert {conditions[(ICD10, "M54.50")], conditions[(ICD10, "M545")], conditions[(SKS, "DM5450")]} <= found


def test_expand_filter_lists_only_members(fhir, conditions):
    r = fhir.get(f"ValueSet/$expand?url={CONDITIONS}&filter=M54")
    assert r.status_code == 200, r.get_json()
    listed = [(c.get("system"), c["code"]) for c in r.get_json()["expansion"].get("contains", [])]
    assert listed, "the filter finds the M54 categories"
    assert all(code.upper().replace(".", "").lstrip("D").startswith("M54") for _, code in listed)


def test_search_in_an_unknown_valueset_is_a_clear_error(fhir, conditions):
    r = fhir.get("Condition?code:in=https://example.org/ValueSet/none")
    assert r.status_code == 404
    assert r.get_json()["issue"][0]["expression"] == ["Condition?code"]
