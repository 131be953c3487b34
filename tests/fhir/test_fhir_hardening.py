"""Regression tests: typed junk in bundles and operations, batches after a failure, include caps, storage
failures named, decimal precision and integer ranges."""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager

import pytest
from sqlalchemy.exc import OperationalError

from tests.conftest import FHIR


def _obs(value: object | None = None) -> dict:
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "pain"}}
    if value is not None:
        body["valueQuantity"] = {"value": value, "unit": "mg"}
    return body


def _bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _count(fhir, rtype: str) -> int:
    return fhir.search(f"{rtype}?_summary=count")["total"]


# ------------------------------------------------------------------ D8: typed junk is a 400 naming it

@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("field,value,where", [
    ("ifNoneExist", 7, "Bundle.entry[0].request.ifNoneExist"),
    ("ifMatch", 7, "Bundle.entry[0].request.ifMatch"),
    ("url", ["Observation"], "Bundle.entry[0].request.url"),
    ("method", True, "Bundle.entry[0].request.method"),
])
def test_non_string_request_fields_are_a_400_naming_them(fhir, kind, field, value, where):
    entry = {"resource": _obs(), "request": {"method": "POST", "url": "Observation", field: value}}
    r = fhir.post("", _bundle(kind, entry))
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["issue"][0]["expression"] == [where]


def test_delete_entry_with_a_non_object_resource_is_a_400(fhir):
    r = fhir.post("", _bundle("batch", {"resource": "x", "request": {"method": "DELETE", "url": "Observation/1"}}))
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["Bundle.entry[0].resource"]


def test_a_batch_never_answers_500_after_applying_entries(app, fhir, monkeypatch):
    from app.fhir import transaction

    real = transaction._execute
    calls = {"n": 0}

    def third_fails(e, tx):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyError("an unexpected failure in the third entry")
        return real(e, tx)

    monkeypatch.setattr(transaction, "_execute", third_fails)
    entry = {"resource": _obs(), "request": {"method": "POST", "url": "Observation"}}
    r = fhir.post("", _bundle("batch", entry, entry, entry))
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.get_json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("201") and statuses[2].startswith("500")
    assert _count(fhir, "Observation") == 2


@pytest.mark.parametrize("path,body", [
    ("PlanDefinition/$apply", {"resourceType": "Parameters", "parameter": [{"name": "url", "valueInteger": 3},
                                                                           {"name": "subject", "valueString": "x"}]}),
    ("ValueSet/$expand", {"resourceType": "Parameters", "parameter": [{"name": "url", "valueInteger": 3}]}),
    ("ValueSet/$validate-code", {"resourceType": "Parameters", "parameter": [{"name": "url", "valueDecimal": 3.5}]}),
    ("CodeSystem/$lookup", {"resourceType": "Parameters", "parameter": [{"name": "system", "valueUri": "urn:x"},
                                                                        {"name": "code", "valueBoolean": True}]}),
])
def test_operation_parameters_of_the_wrong_type_are_a_400_naming_them(fhir, path, body):
    r = fhir.post(path, body)
    assert r.status_code == 400, r.get_json()
    name = body["parameter"][0]["name"] if path != "CodeSystem/$lookup" else "code"
    assert r.get_json()["issue"][0]["expression"] == [f"Parameters.parameter('{name}')"]


def test_apply_url_as_a_list_in_the_query_is_not_a_500(client):
    r = client.get("/fhir/PlanDefinition/$apply?url=a&url=b&subject=Patient/x")
    assert r.status_code == 400


# ------------------------------------------------------------------ D10: includes capped

def test_revinclude_beyond_the_cap_is_refused(app, fhir):
    pid = fhir.create({"resourceType": "Patient"})["id"]
    for _ in range(4):
        fhir.create({**_obs(), "subject": {"reference": f"Patient/{pid}"}})
    app.config["MAX_INCLUDED"] = 3
    r = fhir.get("Patient?_revinclude=Observation:subject")
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["code"] == "too-costly"
    app.config["MAX_INCLUDED"] = 4
    assert len(fhir.search("Patient?_revinclude=Observation:subject")["entry"]) == 5


def test_a_search_page_larger_than_the_response_bound_is_refused(app, fhir):
    for _ in range(3):
        fhir.create({"resourceType": "Patient", "name": [{"text": "x" * 2000}]})
    app.config["MAX_RESPONSE_BYTES"] = 5000
    r = fhir.get("Patient")
    assert r.status_code == 400 and r.get_json()["issue"][0]["code"] == "too-costly"


# ------------------------------------------------------------------ D17: full disk, read-only database

@pytest.mark.parametrize("message,status,cause", [
    ("database or disk is full", 507, "disk is full"),
    ("attempt to write a readonly database", 503, "read-only"),
])
def test_storage_failures_are_named_for_client_and_operator(app, fhir, monkeypatch, caplog, message, status, cause):
    store = app.extensions["lbp"].store

    @contextmanager
    def failing():
        raise OperationalError("INSERT", {}, Exception(message))
        yield  # pragma: no cover

    monkeypatch.setattr(store, "transaction", failing)
    with caplog.at_level(logging.ERROR, logger="lbp"):
        r = fhir.post("Observation", _obs())
    assert r.status_code == status
    assert cause in r.get_json()["issue"][0]["details"]["text"]
    assert any(cause in rec.getMessage() for rec in caplog.records)


# ------------------------------------------------------------------ D19: decimals and integers

def test_decimals_keep_their_precision_on_read_and_search(fhir):
    r = fhir.c.post("/fhir/Observation", data=b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
                    b'"valueQuantity":{"value":1.50,"unit":"mg"},"component":[{"code":{"text":"y"},'
                    b'"valueQuantity":{"value":1.10000000000000000001}}]}', content_type=FHIR)
    assert r.status_code == 201
    oid = r.get_json()["id"]
    for raw in (fhir.get(f"Observation/{oid}").get_data(), fhir.get(f"Observation?_id={oid}").get_data()):
        assert re.search(rb'"value":\s*1\.50\b', raw) and b"1.10000000000000000001" in raw
    assert fhir.search("Observation?value-quantity=1.5")["total"] == 1


@pytest.mark.parametrize("value", [3000000000, -2147483649])
def test_integers_outside_32_bits_are_refused(fhir, value):
    r = fhir.post("Observation", {**_obs(), "valueInteger": value})
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["Observation.valueInteger"]
