"""SMART Backend Services, scopes on every interaction, and the audit trail — all through HTTP."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from app.auth.local import client_assertion, generate_key, register_client, token_request
from tests.conftest import FHIR, get_token

TOKEN_URL = "http://localhost/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _register(app, client_id: str, scope: str, alg: str = "ES384") -> Path:
    return register_client(app.config["CLIENTS_FILE"], client_id, scope, app.config["TEST_KEY_DIR"], alg)


def _exchange(app, assertion: str, scope: str = "system/*.rs"):
    return app.test_client().post("/auth/token", data={
        "grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion})


def _signed(pem: Path, claims: dict, alg: str = "ES384", kid: str | None = None) -> str:
    key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    kid = kid or pem.with_suffix(".kid").read_text().split()[0]
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _claims(client_id: str, **over) -> dict:
    now = int(time.time())
    return {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 120, "jti": uuid.uuid4().hex,
            **over}


def _bearer(app, token: str):
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return c


# ------------------------------------------------------------------ token endpoint

def test_smart_configuration_is_published(anonymous):
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        conf = anonymous.get(path).get_json()
        assert conf["token_endpoint"] == TOKEN_URL
        assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
        assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"ES384", "RS384"}


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_token_flow_with_a_generated_key(app, alg):
    pem = _register(app, f"client-{alg}", "system/Patient.rs", alg)
    r = app.test_client().post("/auth/token", data=token_request(f"client-{alg}", pem, TOKEN_URL,
                                                                "system/Patient.rs"))
    assert r.status_code == 200
    body = r.get_json()
    assert body["token_type"] == "bearer" and body["expires_in"] <= 300 and body["scope"] == "system/Patient.rs"
    assert r.headers["Cache-Control"] == "no-store"
    c = _bearer(app, body["access_token"])
    assert c.get("/fhir/Patient").status_code == 200


def test_requested_scopes_are_narrowed_to_the_registration(app):
    pem = _register(app, "narrow", "system/Patient.rs")
    r = app.test_client().post("/auth/token", data=token_request("narrow", pem, TOKEN_URL,
                                                                "system/Patient.rs system/Observation.cruds"))
    assert r.get_json()["scope"] == "system/Patient.rs"
    r = app.test_client().post("/auth/token", data=token_request("narrow", pem, TOKEN_URL, "system/*.cruds"))
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_scope"


def test_expired_assertion_is_refused(app):
    pem = _register(app, "c1", "system/*.rs")
    r = _exchange(app, _signed(pem, _claims("c1", exp=int(time.time()) - 120)))
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_client"


def test_assertion_living_longer_than_five_minutes_is_refused(app):
    pem = _register(app, "c1", "system/*.rs")
    r = _exchange(app, _signed(pem, _claims("c1", exp=int(time.time()) + 3600)))
    assert r.status_code == 401


def test_replayed_assertion_is_refused(app):
    pem = _register(app, "c1", "system/*.rs")
    assertion = client_assertion("c1", pem, TOKEN_URL)
    assert _exchange(app, assertion).status_code == 200
    r = _exchange(app, assertion)
    assert r.status_code == 401 and "already used" in r.get_json()["error_description"]


def test_wrongly_signed_assertion_is_refused(app, tmp_path):
    _register(app, "c1", "system/*.rs")
    other = generate_key("ES384")
    pem = tmp_path / "other.pem"
    pem.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    kid = (Path(app.config["TEST_KEY_DIR"]) / "c1.kid").read_text().split()[0]
    r = _exchange(app, _signed(pem, _claims("c1"), kid=kid))
    assert r.status_code == 401


def test_alg_none_is_refused(app):
    _register(app, "c1", "system/*.rs")
    unsigned = jwt.encode(_claims("c1"), key=None, algorithm="none")
    assert _exchange(app, unsigned).status_code == 401


def test_hmac_assertion_is_refused(app):
    _register(app, "c1", "system/*.rs")
    kid = (Path(app.config["TEST_KEY_DIR"]) / "c1.kid").read_text().split()[0]
    secret = "a-shared-secret-long-enough-for-hs384-signatures-0123456789"
    forged = jwt.encode(_claims("c1"), key=secret, algorithm="HS384",
                        headers={"kid": kid})
    r = _exchange(app, forged)
    assert r.status_code == 401 and "ES384 or RS384" in r.get_json()["error_description"]


def test_wrong_audience_and_unknown_client_are_refused(app):
    pem = _register(app, "c1", "system/*.rs")
    assert _exchange(app, _signed(pem, _claims("c1", aud="http://elsewhere/token"))).status_code == 401
    assert _exchange(app, _signed(pem, _claims("nobody"))).status_code == 401


# ------------------------------------------------------------------ bearer tokens

def test_missing_or_bad_token_is_401_with_www_authenticate(app, anonymous):
    r = anonymous.get("/fhir/Patient")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.get_json()["issue"][0]["code"] == "login"
    r = _bearer(app, "not-a-token").get("/fhir/Patient")
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    expired = app.extensions["lbp"].auth.tokens.mint("test-admin", "system/*.cruds", seconds=-60)
    assert _bearer(app, expired).get("/fhir/Patient").status_code == 401


def test_knowledge_is_public_by_default_and_patient_data_never(anonymous):
    assert anonymous.get("/fhir/PlanDefinition").status_code == 200
    assert anonymous.get("/fhir/metadata").status_code == 200
    for t in ("Patient", "Observation", "QuestionnaireResponse", "AuditEvent"):
        assert anonymous.get(f"/fhir/{t}").status_code == 401
    r = anonymous.post("/fhir/PlanDefinition", json={"resourceType": "PlanDefinition", "status": "draft"},
                       content_type=FHIR)
    assert r.status_code == 401


def test_knowledge_can_be_closed(db_url, tmp_path):
    from app import create_app

    app = create_app({"DATABASE_URL": db_url, "LOAD_ARTIFACTS": False, "PUBLIC_KNOWLEDGE": False,
                      "CLIENTS_FILE": str(tmp_path / "none.json")})
    try:
        assert app.test_client().get("/fhir/PlanDefinition").status_code == 401
    finally:
        app.extensions["lbp"].store.dispose()


OPERATIONS = {
    "read": ("GET", "{t}/{id}", None),
    "search": ("GET", "{t}", None),
    "create": ("POST", "{t}", "body"),
    "update": ("PUT", "{t}/{id}", "body"),
    "delete": ("DELETE", "{t}/{id}", None),
    "operation": ("POST", "{t}/{id}/$validate", None),
}
BODIES = {
    "Patient": {"resourceType": "Patient", "gender": "female"},
    "Observation": {"resourceType": "Observation", "status": "final", "code": {"text": "NRS"}},
    "Condition": {"resourceType": "Condition", "subject": {"reference": "Patient/seed"}},
}
# scope -> {resource type: set of allowed operations}
SCOPE_TABLE = {
    "system/Patient.rs": {"Patient": {"read", "search", "operation"}},
    "system/Patient.r": {"Patient": {"read", "operation"}},
    "system/Observation.cud": {"Observation": {"create", "update", "delete"}},
    "system/*.s": {t: {"search"} for t in BODIES},
    "system/Patient.read": {"Patient": {"read", "search", "operation"}},  # SMART v1
    "system/Condition.write": {"Condition": {"create", "update", "delete"}},  # SMART v1
    "system/*.cruds": {t: set(OPERATIONS) for t in BODIES},
}


@pytest.mark.parametrize("scope", sorted(SCOPE_TABLE))
def test_each_scope_allows_exactly_its_interactions(app, client, scope):
    for t, body in BODIES.items():  # seed one resource of each type with the admin token
        assert client.put(f"/fhir/{t}/seed", json={**body, "id": "seed"}, content_type=FHIR).status_code in (200,
                                                                                                              201)
    token = app.extensions["lbp"].auth.tokens.mint("scoped", scope)
    c = _bearer(app, token)
    for t, body in BODIES.items():
        for name, (method, path, payload) in OPERATIONS.items():
            url = "/fhir/" + path.format(t=t, id="seed")
            data = {**body, "id": "seed"} if payload and method == "PUT" else (body if payload else None)
            r = c.open(url, method=method, json=data, content_type=FHIR) if data else c.open(url, method=method)
            expected = name in SCOPE_TABLE[scope].get(t, set())
            assert (r.status_code != 403) == expected, (scope, t, name, r.status_code)
            if not expected:
                assert r.get_json()["issue"][0]["code"] == "forbidden"
            if name == "delete" and expected:  # put it back for the next type/operation
                client.put(f"/fhir/{t}/seed", json={**body, "id": "seed"}, content_type=FHIR)


def test_include_does_not_leak_a_resource_the_scope_forbids(app, client):
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, content_type=FHIR)
    client.put("/fhir/Condition/c1", json={"resourceType": "Condition", "id": "c1",
                                           "subject": {"reference": "Patient/p1"}}, content_type=FHIR)
    c = _bearer(app, app.extensions["lbp"].auth.tokens.mint("cond-only", "system/Condition.rs"))
    b = c.get("/fhir/Condition?_include=Condition:subject").get_json()
    types = [e["resource"]["resourceType"] for e in b["entry"]]
    assert "Patient" not in types and "Condition" in types
    assert any(e["search"]["mode"] == "outcome" for e in b["entry"])
    b = c.get("/fhir/Condition?_revinclude=Condition:subject").get_json()  # nothing to leak, still fine
    assert b["total"] == 1


def test_transaction_with_one_forbidden_entry_writes_nothing(app, client):
    c = _bearer(app, app.extensions["lbp"].auth.tokens.mint("obs-writer", "system/Observation.c"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:o", "resource": {"resourceType": "Observation", "status": "final",
                                               "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}}]}
    r = c.post("/fhir", json=bundle, content_type=FHIR)
    assert r.status_code == 403
    assert r.get_json()["issue"][0]["expression"] == ["Bundle.entry[1].request"]
    assert client.get("/fhir/Observation?_summary=count").get_json()["total"] == 0
    assert client.get("/fhir/Patient?_summary=count").get_json()["total"] == 0


# ------------------------------------------------------------------ audit

def _audit(client, query: str) -> list[dict]:
    b = client.get(f"/fhir/AuditEvent?{query}&_count=200").get_json()
    return [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]


def test_audit_answers_who_read_this_patients_record_and_when(app, client):
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, content_type=FHIR)
    client.put("/fhir/Observation/o1", json={"resourceType": "Observation", "id": "o1", "status": "final",
                                             "code": {"text": "NRS"}, "subject": {"reference": "Patient/p1"}},
               content_type=FHIR)
    reader = _bearer(app, app.extensions["lbp"].auth.tokens.mint("journal-x", "system/*.rs"))
    reader.get("/fhir/Patient/p1")
    reader.get("/fhir/Observation/o1")
    reader.get("/fhir/Observation?patient=p1")
    events = _audit(client, "patient=p1&altid=journal-x")
    subtypes = sorted(e["subtype"][0]["code"] for e in events)
    assert subtypes == ["read", "read", "search-type"]
    assert all(e["outcome"] == "0" and e["recorded"] for e in events)
    assert all(e["agent"][0]["altId"] == "journal-x" for e in events)


def test_refused_requests_are_audited_too(app, anonymous, client):
    anonymous.get("/fhir/Patient/p1")
    c = _bearer(app, app.extensions["lbp"].auth.tokens.mint("nosy", "system/Observation.rs"))
    c.get("/fhir/Patient/p1")
    events = _audit(client, "entity=Patient/p1")
    outcomes = sorted((e["agent"][0]["altId"], e["outcome"], e["outcomeDesc"]) for e in events)
    assert ("anonymous", "4", "HTTP 401") in outcomes
    assert ("nosy", "4", "HTTP 403") in outcomes


def test_writes_and_transactions_are_audited(app, client):
    client.post("/fhir/Patient", json={"resourceType": "Patient"}, content_type=FHIR)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient"}, "request": {"method": "POST",
                                                                                      "url": "Patient"}}]}
    client.post("/fhir", json=bundle, content_type=FHIR)
    events = _audit(client, "altid=test-admin")
    subtypes = {e["subtype"][0]["code"] for e in events}
    assert {"create", "transaction"} <= subtypes
    actions = {e["action"] for e in events if e["subtype"][0]["code"] == "create"}
    assert actions == {"C"}


def test_audit_events_are_valid_fhir(app, client):
    from app.validation import validate_resource

    client.get("/fhir/Patient?name=x")
    for event in _audit(client, "altid=test-admin"):
        assert not [i for i in validate_resource(event) if i.is_error]


def test_tokens_and_patient_data_stay_out_of_the_log(app, client, caplog):
    token = get_token(app)
    c = _bearer(app, token)
    with caplog.at_level("DEBUG"):
        c.get("/fhir/Patient?name=Lindqvist&birthdate=1960-05-01")
        c.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Lindqvist"}]},
               content_type=FHIR)
    text = caplog.text
    assert "Lindqvist" not in text and token not in text and "1960" not in text


def test_disabled_authentication_is_loud(db_url, tmp_path, caplog):
    from app import create_app

    with caplog.at_level("WARNING"):
        app = create_app({"DATABASE_URL": db_url, "LOAD_ARTIFACTS": False, "AUTH_DISABLED": True,
                          "CLIENTS_FILE": str(tmp_path / "c.json")})
    try:
        assert "AUTHENTICATION IS DISABLED" in caplog.text
        cap = app.test_client().get("/fhir/metadata").get_json()
        assert "AUTHENTICATION IS DISABLED" in cap["rest"][0]["security"]["description"]
        assert app.test_client().get("/fhir/Patient").status_code == 200
    finally:
        app.extensions["lbp"].store.dispose()


def test_capability_statement_describes_smart(anonymous):
    security = anonymous.get("/fhir/metadata").get_json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    token_ext = security["extension"][0]["extension"][0]
    assert token_ext == {"url": "token", "valueUri": TOKEN_URL}
