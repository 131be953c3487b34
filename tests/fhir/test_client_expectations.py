"""What FHIR clients expect: chains and _has filter (or 400), _pretty, _summary/_elements on read, PATCH,
Patient/$everything, CORS."""
from __future__ import annotations

import pytest

from tests.conftest import FHIR, get_token


def _put(client, resource):
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                   headers={"Content-Type": FHIR})
    assert r.status_code in (200, 201), r.get_json()
    return r.get_json()


@pytest.fixture
def people(client):
    _put(client, {"resourceType": "Patient", "id": "ann", "name": [{"family": "Andersson", "given": ["Ann"]}],
                  "identifier": [{"system": "urn:pnr", "value": "111"}], "gender": "female",
                  "birthDate": "1950-01-01", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann</div>"}})
    _put(client, {"resourceType": "Patient", "id": "bo", "name": [{"family": "Berg", "given": ["Bo"]}],
                  "identifier": [{"system": "urn:pnr", "value": "222"}], "gender": "male"})
    for pid, code in (("ann", "M54.5"), ("bo", "J45")):
        _put(client, {"resourceType": "Condition", "id": f"c-{pid}", "subject": {"reference": f"Patient/{pid}"},
                      "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]}})
    _put(client, {"resourceType": "Observation", "id": "o-ann", "status": "final",
                  "subject": {"reference": "Patient/ann"}, "code": {"text": "pain"}, "valueInteger": 6})
    return client


def _ids(bundle):
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match")


def test_chain_with_type_modifier_filters(people):
    r = people.get("/fhir/Condition?subject:Patient.identifier=urn:pnr|111")
    assert r.status_code == 200
    assert _ids(r.get_json()) == ["c-ann"]


def test_chain_without_modifier_filters(people):
    assert _ids(people.get("/fhir/Condition?patient.name=Berg").get_json()) == ["c-bo"]


def test_chain_on_subject_without_modifier_follows_the_core_parameter(people):
    # Condition.subject targets Patient and Group in R4 core; `name` is a Patient parameter only
    assert _ids(people.get("/fhir/Condition?subject.name=Andersson").get_json()) == ["c-ann"]


def test_chain_matching_nothing_returns_nothing(people):
    bundle = people.get("/fhir/Condition?patient.name=Nobody").get_json()
    assert bundle["total"] == 0 and _ids(bundle) == []


def test_has_filters(people):
    r = people.get("/fhir/Patient?_has:Condition:subject:code=M54.5")
    assert r.status_code == 200
    assert _ids(r.get_json()) == ["ann"]
    assert _ids(people.get("/fhir/Patient?_has:Condition:subject:code=XXX").get_json()) == []


@pytest.mark.parametrize("prefer", [None, "handling=lenient", "handling=strict"])
@pytest.mark.parametrize("query", ["Condition?subject.organization.name=x", "Patient?_has:Condition:subject:_has:x=1",
                                   "Condition?code.name=x", "Patient?_has:Condition:nonsense:code=1"])
def test_unsupported_chains_are_400_in_every_mode(people, query, prefer):
    headers = {"Prefer": prefer} if prefer else {}
    r = people.get(f"/fhir/{query}", headers=headers)
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"]


def test_chain_needs_scope_on_the_other_type(app, people):
    c = app.test_client()
    from app.auth.local import register_client

    register_client(app.config["CLIENTS_FILE"], "cond-only", "system/Condition.rs", app.config["TEST_KEY_DIR"])
    token = get_token(app, "cond-only", "system/Condition.rs")
    r = c.get("/fhir/Condition?subject:Patient.name=Berg", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_pretty(people):
    r = people.get("/fhir/Patient/ann?_pretty=true")
    assert b"\n  " in r.data and r.get_json()["id"] == "ann"
    assert b"\n" not in people.get("/fhir/Patient/ann").data.strip()


def test_summary_and_elements_on_read(people):
    full = people.get("/fhir/Patient/ann").get_json()
    assert "text" in full
    summary = people.get("/fhir/Patient/ann?_summary=true").get_json()
    assert "text" not in summary and summary["name"] and summary["birthDate"] == "1950-01-01"
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    data = people.get("/fhir/Patient/ann?_summary=data").get_json()
    assert "text" not in data and data["gender"] == "female"
    text = people.get("/fhir/Patient/ann?_summary=text").get_json()
    assert set(text) == {"resourceType", "id", "meta", "text"}
    elements = people.get("/fhir/Patient/ann?_elements=gender").get_json()
    assert set(elements) == {"resourceType", "id", "meta", "gender"}
    bad = people.get("/fhir/Patient/ann?_summary=count")
    assert bad.status_code == 400 and bad.get_json()["issue"][0]["expression"] == ["_summary"]


def test_json_patch_with_if_match(people):
    r = people.patch("/fhir/Patient/ann", json=[{"op": "replace", "path": "/gender", "value": "other"}],
                     headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["gender"] == "other" and r.headers["ETag"] == 'W/"2"'
    assert people.get("/fhir/Patient/ann").get_json()["gender"] == "other"
    stale = people.patch("/fhir/Patient/ann", json=[{"op": "replace", "path": "/gender", "value": "male"}],
                         headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    bad = people.patch("/fhir/Patient/ann", json=[{"op": "replace", "path": "/gender", "value": "nonsense"}],
                       headers={"Content-Type": "application/json-patch+json"})
    assert bad.status_code in (400, 422) and bad.get_json()["issue"][0]["expression"]
    failed_test = people.patch("/fhir/Patient/ann", json=[{"op": "test", "path": "/gender", "value": "male"}],
                               headers={"Content-Type": "application/json-patch+json"})
    assert failed_test.status_code == 422


def _op(kind, path, **parts):
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        key, val = value
        part.append({"name": name, key: val})
    return {"name": "operation", "part": part}


def test_fhirpath_patch(people):
    body = {"resourceType": "Parameters", "parameter": [
        _op("replace", "Patient.birthDate", value=("valueDate", "1951-02-03")),
        _op("add", "Patient", name=("valueString", "telecom"),
            value=("valueContactPoint", {"system": "phone", "value": "123"})),
        _op("insert", "Patient.identifier", index=("valueInteger", 0),
            value=("valueIdentifier", {"system": "urn:x", "value": "9"})),
        _op("delete", "Patient.identifier.where(system='urn:pnr')"),
        _op("replace", "Patient.name.given", value=("valueString", "Anna")),
    ]}
    r = people.patch("/fhir/Patient/ann", json=body, headers={"Content-Type": FHIR, "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.get_json()
    stored = people.get("/fhir/Patient/ann").get_json()
    assert stored["birthDate"] == "1951-02-03"
    assert stored["telecom"] == [{"system": "phone", "value": "123"}]
    assert stored["identifier"] == [{"system": "urn:x", "value": "9"}]
    assert stored["name"][0]["given"] == ["Anna"]
    bad = people.patch("/fhir/Patient/ann", json={"resourceType": "Parameters", "parameter": [
        _op("replace", "Patient.name.family.where(", value=("valueString", "x"))]}, headers={"Content-Type": FHIR})
    assert bad.status_code in (400, 422) and bad.get_json()["issue"][0]["expression"]


def _parts(**elements):
    """A complex value as FHIRPath Patch parts: ("valueX", v) pairs, nested dicts, lists for repeats."""
    out = []
    for name, given in elements.items():
        for one in given if isinstance(given, list) else [given]:
            out.append({"name": name, "part": _parts(**one)} if isinstance(one, dict)
                       else {"name": name, one[0]: one[1]})
    return out


def _with_parts(kind, path, value, **more):
    op = _op(kind, path, **more)
    op["part"].append({"name": "value", "part": _parts(**value)})
    return op


def test_fhirpath_patch_values_given_as_parts(people):
    marital = {"coding": {"system": ("valueUri", "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"),
                          "code": ("valueCode", "M")}, "text": ("valueString", "Married")}
    body = {"resourceType": "Parameters", "parameter": [
        _with_parts("add", "Patient", marital, name=("valueString", "maritalStatus")),
        _with_parts("add", "Patient", {"name": {"family": ("valueString", "Berg")},
                                       "telecom": {"system": ("valueCode", "phone"), "value": ("valueString", "5")}},
                    name=("valueString", "contact")),
        _with_parts("insert", "Patient.identifier", {
            "system": ("valueUri", "urn:x"), "value": ("valueString", "9"),
            "type": {"coding": {"system": ("valueUri", "http://terminology.hl7.org/CodeSystem/v2-0203"),
                                "code": ("valueCode", "MR")}}}, index=("valueInteger", 0)),
        _with_parts("replace", "Patient.name", {"family": ("valueString", "Andersson"),
                                                "given": [("valueString", "Ann"), ("valueString", "Maria")]}),
    ]}
    r = people.patch("/fhir/Patient/ann", json=body, headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.get_json()
    stored = people.get("/fhir/Patient/ann").get_json()
    assert stored["maritalStatus"] == {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                                   "code": "M"}], "text": "Married"}
    assert stored["contact"] == [{"name": {"family": "Berg"}, "telecom": [{"system": "phone", "value": "5"}]}]
    assert stored["identifier"][0] == {"system": "urn:x", "value": "9", "type": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}
    assert stored["name"] == [{"family": "Andersson", "given": ["Ann", "Maria"]}]
    # a replace by expression takes parts too
    replaced = people.patch("/fhir/Patient/ann", json={"resourceType": "Parameters", "parameter": [
        _with_parts("replace", "Patient.identifier.where(system='urn:x')",
                    {"system": ("valueUri", "urn:y"), "value": ("valueString", "10")})]},
        headers={"Content-Type": FHIR})
    assert replaced.status_code == 200, replaced.get_json()
    assert people.get("/fhir/Patient/ann").get_json()["identifier"][0] == {"system": "urn:y", "value": "10"}
    unknown = people.patch("/fhir/Patient/ann", json={"resourceType": "Parameters", "parameter": [
        _with_parts("add", "Patient", {"coding": {"colour": ("valueString", "red")}},
                    name=("valueString", "maritalStatus"))]}, headers={"Content-Type": FHIR})
    assert unknown.status_code == 422
    issue = unknown.get_json()["issue"][0]
    assert "Coding has no element 'colour'" in issue["details"]["text"]
    assert issue["expression"] == ["Parameters.parameter[0].part('value').part[0].part[0].name"]
    empty = people.patch("/fhir/Patient/ann", json={"resourceType": "Parameters", "parameter": [
        _op("add", "Patient", name=("valueString", "maritalStatus"))]}, headers={"Content-Type": FHIR})
    assert empty.status_code == 400 and empty.get_json()["issue"][0]["expression"]


def test_everything_is_scoped_paged_and_filtered(people):
    bundle = people.get("/fhir/Patient/ann/$everything").get_json()
    assert _ids(bundle) == ["ann", "c-ann", "o-ann"]
    typed = people.get("/fhir/Patient/ann/$everything?_type=Observation").get_json()
    assert _ids(typed) == ["o-ann"]
    page = people.get("/fhir/Patient/ann/$everything?_count=2").get_json()
    assert len(_ids(page)) == 2 and page["total"] == 3
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = people.get(nxt[nxt.index("/fhir/"):]).get_json()
    assert len(_ids(rest)) == 1
    future = people.get("/fhir/Patient/ann/$everything?_since=2999-01-01")
    assert future.status_code == 200 and _ids(future.get_json()) == []
    past = people.get("/fhir/Patient/ann/$everything?_since=2000-01-01")
    assert past.status_code == 200 and _ids(past.get_json()) == ["ann", "c-ann", "o-ann"]
    bad = people.get("/fhir/Patient/ann/$everything?_since=yesterday")
    assert bad.status_code == 400 and bad.get_json()["issue"][0]["expression"] == ["_since"]
    assert people.get("/fhir/Patient/nobody/$everything").status_code == 404


def test_everything_pages_one_at_a_time_in_order(people):
    seen, url, pages = [], "/fhir/Patient/ann/$everything?_count=1", 0
    while url:
        bundle = people.get(url).get_json()
        assert bundle["total"] == 3 and len(_ids(bundle)) == 1
        seen += _ids(bundle)
        pages += 1
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0][nxt[0].index("/fhir/"):] if nxt else None
    assert seen == ["ann", "c-ann", "o-ann"] and pages == 3
    empty = people.get("/fhir/Patient/ann/$everything?_count=0").get_json()
    assert empty["total"] == 3 and _ids(empty) == []


def test_everything_follows_the_patient_compartment_definition(app, people):
    # Observation is in the compartment by `subject` or `performer` (R4 CompartmentDefinition/patient)
    _put(people, {"resourceType": "Observation", "id": "o-by-ann", "status": "final", "code": {"text": "gait"},
                  "subject": {"reference": "Patient/bo"}, "performer": [{"reference": "Patient/ann"}]})
    _put(people, {"resourceType": "Observation", "id": "o-both", "status": "final", "code": {"text": "pain"},
                  "subject": {"reference": "Patient/ann"}, "performer": [{"reference": "Patient/ann"}]})
    # a Task is not in the Patient compartment, whatever its `for`
    _put(people, {"resourceType": "Task", "id": "t-ann", "status": "requested", "intent": "order",
                  "for": {"reference": "Patient/ann"}})
    bundle = people.get("/fhir/Patient/ann/$everything").get_json()
    assert _ids(bundle) == ["ann", "c-ann", "o-ann", "o-both", "o-by-ann"]
    assert bundle["total"] == 5  # o-both matches by both parameters and is counted once
    assert _ids(people.get("/fhir/Patient/bo/$everything?_type=Observation").get_json()) == ["o-by-ann"]
    refused = people.get("/fhir/Patient/ann/$everything?_type=Task")
    assert refused.status_code == 400
    assert refused.get_json()["issue"][0]["expression"] == ["_type"]


def test_every_compartment_parameter_is_searchable(app):
    from app.fhir.operations.everything import compartment_params

    store = app.extensions["lbp"].store
    params = compartment_params()
    assert params["Observation"] == ("subject", "performer") and params["Encounter"] == ("patient",)
    for res_type, names in params.items():
        known = store.search_params.params_for(res_type)
        for name in names:
            assert known[name].type == "reference", f"{res_type}.{name}"
            assert "Patient" in known[name].target or "Any" in known[name].target, f"{res_type}.{name}"


def test_everything_leaves_out_unscoped_types(app, people):
    from app.auth.local import register_client

    register_client(app.config["CLIENTS_FILE"], "pat-cond", "system/Patient.r system/Condition.r",
                    app.config["TEST_KEY_DIR"])
    token = get_token(app, "pat-cond", "system/Patient.r system/Condition.r")
    bundle = app.test_client().get("/fhir/Patient/ann/$everything",
                                   headers={"Authorization": f"Bearer {token}"}).get_json()
    assert _ids(bundle) == ["ann", "c-ann"]
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "Observation" in outcome[0]["resource"]["issue"][0]["details"]["text"]


def test_everything_is_audited(app, people):
    people.get("/fhir/Patient/ann/$everything")
    app.extensions["lbp"].audit.flush()
    events = people.get("/fhir/AuditEvent?_count=200").get_json()
    assert any("Observation/o-ann" in str(e["resource"].get("entity")) for e in events.get("entry", []))


def test_cors_on_the_fhir_api(app, people):
    pre = app.test_client().options("/fhir/Patient", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, if-match"})
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] in ("*", "https://app.example")
    assert "PATCH" in pre.headers["Access-Control-Allow-Methods"]
    got = people.get("/fhir/Patient/ann", headers={"Origin": "https://app.example"})
    assert got.headers["Access-Control-Allow-Origin"] in ("*", "https://app.example")
    assert "ETag" in got.headers["Access-Control-Expose-Headers"]


def test_cors_restricted_to_configured_origins(db_url, tmp_path):
    from app import create_app

    restricted = create_app({"DATABASE_URL": db_url, "LOAD_ARTIFACTS": False, "TESTING": True,
                             "FHIR_CORS_ORIGINS": "https://ehr.example", "CLIENTS_FILE": str(tmp_path / "c.json")})
    c = restricted.test_client()
    allowed = c.get("/fhir/metadata", headers={"Origin": "https://ehr.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example"
    refused = c.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    restricted.extensions["lbp"].store.dispose()
