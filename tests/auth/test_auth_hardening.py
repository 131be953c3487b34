"""Regression tests for the holes an attack run found in authentication, authorisation and the audit trail."""
from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app import create_app
from app.auth.local import register_client
from tests.conftest import FHIR

TOKEN_URL = "http://localhost/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _bearer(app, scope: str, client_id: str = "narrow"):
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {app.extensions['lbp'].auth.tokens.mint(client_id, scope)}"
    return c


def _post(c, path: str, body: dict, **headers):
    return c.post(f"/fhir/{path}".rstrip("/"), json=body, content_type=FHIR, headers=headers)


def _patient(client, family: str = "Ankunding277", birth: str = "1929-03-21") -> str:
    r = _post(client, "Patient", {"resourceType": "Patient", "name": [{"family": family}], "birthDate": birth})
    assert r.status_code == 201
    return r.get_json()["id"]


def _audit_events(app, **params) -> list[dict]:
    app.extensions["lbp"].audit.flush()
    c = _bearer(app, "system/AuditEvent.rs", "auditor")
    query = "&".join(f"{k}={v}" for k, v in params.items())
    r = c.get(f"/fhir/AuditEvent?{query}&_count=500")
    assert r.status_code == 200, r.get_json()
    return [e["resource"] for e in r.get_json().get("entry", [])]


def _observation_tx(subject: str, kind: str = "transaction", **request) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pain"},
                     "subject": {"reference": subject}},
        "request": {"method": "POST", "url": "Observation", **request}}]}


# ------------------------------------------------------------------ D2: conditional lookups need the search scope

@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_conditional_reference_needs_search_scope_on_the_type_it_queries(app, client, kind):
    _patient(client)
    writer = _bearer(app, "system/Observation.cruds")
    for query in ("family=ankunding277&birthdate=1929-03-21", "family=nobody&birthdate=1900-01-01"):
        r = _post(writer, "", _observation_tx(f"Patient?{query}", kind))
        body = r.get_json()
        # the same answer whether or not a patient matches: the status is no longer an oracle
        status = r.status_code if kind == "transaction" else int(body["entry"][0]["response"]["status"][:3])
        assert status == 403, body
        outcome = body if kind == "transaction" else body["entry"][0]["response"]["outcome"]
        assert "Patient" in str(outcome["issue"][0])


def test_if_none_exist_and_conditional_update_need_search_scope(app, client):
    _patient(client)
    writer = _bearer(app, "system/Patient.cu", "patient-writer")
    r = _post(writer, "", {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Patient", "gender": "male"},
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "family=ankunding277"}}]})
    assert r.status_code == 403
    assert r.get_json()["issue"][0]["expression"] == ["Bundle.entry[0].request.ifNoneExist"]
    r = writer.put("/fhir/Patient?family=ankunding277", json={"resourceType": "Patient"}, content_type=FHIR)
    assert r.status_code == 403
    r = _post(writer, "Patient", {"resourceType": "Patient"}, **{"If-None-Exist": "family=ankunding277"})
    assert r.status_code == 403


def test_conditional_lookup_is_audited_under_the_patient_it_matched(app, client):
    pid = _patient(client)
    r = _post(client, "", _observation_tx("Patient?family=ankunding277&birthdate=1929-03-21"))
    assert r.status_code == 200
    events = _audit_events(app, entity=f"Patient/{pid}")
    queries = [base64.b64decode(e["query"]).decode() for ev in events for e in ev.get("entity", []) if "query" in e]
    assert "family=ankunding277&birthdate=1929-03-21" in queries


# ------------------------------------------------------------------ D3: audit trail append-only

def test_audit_events_cannot_be_deleted_forged_or_rewritten_with_a_wildcard_scope(app, client):
    pid = _patient(client)
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    event = _audit_events(app, entity=f"Patient/{pid}")[0]
    assert client.delete(f"/fhir/AuditEvent/{event['id']}").status_code == 403
    forged = dict(event, agent=[dict(event["agent"][0], altId="someone-else")])
    forged.pop("id")
    assert _post(client, "AuditEvent", forged).status_code == 403
    rewritten = dict(event, outcome="0")
    assert client.put(f"/fhir/AuditEvent/{event['id']}", json=rewritten, content_type=FHIR).status_code == 403
    r = _post(client, "", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}}]})
    assert r.get_json()["entry"][0]["response"]["status"].startswith("403")
    assert client.get(f"/fhir/AuditEvent/{event['id']}").status_code == 200


# ------------------------------------------------------------------ D4: the audit never fails open

def test_a_write_commits_together_with_its_audit_event(app, client, monkeypatch):
    """The event is in the database the moment the write is: a process killed before its audit writer ran
    (here: the writer's buffer is lost) still leaves the write's AuditEvent."""
    monkeypatch.setattr(app.extensions["lbp"].audit, "put", lambda event: None)
    before = _count_audit_rows(app)
    pid = _patient(client)
    store = app.extensions["lbp"].store
    with store.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT content FROM resources WHERE res_type = 'AuditEvent'").all()
    assert len(rows) == before + 1
    assert f"Patient/{pid}" in str(rows[-1][0])


def _count_audit_rows(app) -> int:
    with app.extensions["lbp"].store.engine.connect() as c:
        return c.exec_driver_sql("SELECT count(*) FROM resources WHERE res_type = 'AuditEvent'").scalar_one()


def test_patient_read_is_refused_with_503_while_its_audit_event_cannot_be_stored(app, client, monkeypatch):
    pid = _patient(client)
    writer = app.extensions["lbp"].audit
    monkeypatch.setattr(writer, "_write", lambda events: False)
    r = client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 503
    body = r.get_json()
    assert body["resourceType"] == "OperationOutcome" and "Ankunding" not in r.get_data(as_text=True)
    r = client.get("/fhir/Patient?family=ankunding277")
    assert r.status_code == 503 and "Ankunding" not in r.get_data(as_text=True)
    monkeypatch.undo()
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200


# ------------------------------------------------------------------ D13: refusals under the patient

def test_refusal_with_a_garbage_token_is_found_under_the_patient(app, client):
    pid = _patient(client)
    bad = app.test_client()
    assert bad.get(f"/fhir/Patient/{pid}", headers={"Authorization": "Bearer garbage"}).status_code == 401
    assert bad.get(f"/fhir/Observation?subject=Patient/{pid}", headers={"Authorization": "Bearer x"}).status_code == 401
    events = [e for e in _audit_events(app, entity=f"Patient/{pid}") if e["outcome"] == "4"]
    assert len(events) >= 2


def test_refused_token_requests_are_audited(app):
    before = len(_audit_events(app))
    r = app.test_client().post("/auth/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": "not-a-jwt"})
    assert r.status_code in (400, 401)
    events = _audit_events(app)
    assert len(events) > before
    assert any("token refused" in (e.get("outcomeDesc") or "") for e in events)


# ------------------------------------------------------------------ D15: no caching of patient data

def test_patient_data_responses_carry_no_store(app, client):
    pid = _patient(client)
    for path in (f"/fhir/Patient/{pid}", "/fhir/Patient?family=ankunding277", f"/fhir/Patient/{pid}/_history"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers.get("Cache-Control") == "no-store", path


# ------------------------------------------------------------------ D5: aud from configuration, never Host

def _assertion(pem: Path, aud: str, **over) -> str:
    key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    kid = pem.with_suffix(".kid").read_text().split()[0]
    now = int(time.time())
    claims = {"iss": "aud-client", "sub": "aud-client", "aud": aud, "exp": now + 120, "iat": now,
              "jti": uuid.uuid4().hex, **over}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid})


def _token_post(app, assertion: str, host: str | None = None, scope: str = "system/*.rs"):
    return app.test_client().post("/auth/token", base_url=f"http://{host}" if host else "http://localhost", data={
        "grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion})


def test_token_endpoint_aud_does_not_follow_the_host_header(app):
    pem = register_client(app.config["CLIENTS_FILE"], "aud-client", "system/*.rs", app.config["TEST_KEY_DIR"])
    r = _token_post(app, _assertion(pem, "http://evil.example/auth/token"), host="evil.example")
    assert r.status_code == 401
    assert _token_post(app, _assertion(pem, TOKEN_URL)).status_code == 200


def test_configured_public_url_is_the_only_audience(tmp_path):
    clients = tmp_path / "clients.json"
    pem = register_client(clients, "aud-client", "system/*.rs", tmp_path / "keys")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "LOAD_ARTIFACTS": False,
                      "CLIENTS_FILE": str(clients), "PUBLIC_BASE_URL": "https://fhir.region.example"})
    try:
        assert _token_post(app, _assertion(pem, "http://localhost/auth/token")).status_code == 401
        ok = _token_post(app, _assertion(pem, "https://fhir.region.example/auth/token"))
        assert ok.status_code == 200
    finally:
        app.extensions["lbp"].store.dispose()


def test_production_mode_refuses_to_start_without_a_public_url(tmp_path):
    with pytest.raises(RuntimeError, match="PUBLIC_BASE_URL"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "LOAD_ARTIFACTS": False, "PRODUCTION": True,
                    "CLIENTS_FILE": str(tmp_path / "clients.json")})


# ------------------------------------------------------------------ D12, D16: lifetimes, iat, claim sizes

def test_access_token_with_a_long_lifetime_or_without_iat_is_refused(app):
    key, kid = app.extensions["lbp"].auth.tokens._signing_key()
    now = int(time.time())
    base = {"iss": "lbp-pathway", "sub": "x", "aud": "lbp-pathway", "scope": "system/*.cruds", "jti": "j"}
    ten_years = jwt.encode({**base, "iat": now, "exp": now + 10 * 365 * 86400}, key, algorithm="ES384",
                           headers={"kid": kid})
    no_iat = jwt.encode({**base, "exp": now + 60}, key, algorithm="ES384", headers={"kid": kid})
    for token in (ten_years, no_iat):
        r = app.test_client().get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


def test_client_assertion_without_iat_or_with_a_huge_jti_is_refused(app):
    pem = register_client(app.config["CLIENTS_FILE"], "aud-client", "system/*.rs", app.config["TEST_KEY_DIR"])
    key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    kid = pem.with_suffix(".kid").read_text().split()[0]
    now = int(time.time())
    no_iat = jwt.encode({"iss": "aud-client", "sub": "aud-client", "aud": TOKEN_URL, "exp": now + 60,
                         "jti": uuid.uuid4().hex}, key, algorithm="ES384", headers={"kid": kid})
    assert _token_post(app, no_iat).status_code == 401
    # exp is within 5 minutes of now, but the assertion claims to live 6 minutes
    assert _token_post(app, _assertion(pem, TOKEN_URL, iat=now - 240, exp=now + 120)).status_code == 401
    assert _token_post(app, _assertion(pem, TOKEN_URL, jti="j" * 200_000)).status_code == 401
    assert _token_post(app, _assertion(pem, TOKEN_URL, jti="k" * 300)).status_code == 401
    with app.extensions["lbp"].store.engine.connect() as c:
        longest = c.exec_driver_sql("SELECT max(length(key)) FROM client_jti").scalar_one()
    assert longest is None or longest < 400


def test_signing_key_and_link_secret_can_come_from_files(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    secret_file = tmp_path / "link.secret"
    secret_file.write_text("s3cret-for-links\n")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}", "LOAD_ARTIFACTS": False,
                      "CLIENTS_FILE": str(tmp_path / "c.json"), "SIGNING_KEY_FILE": str(key_file),
                      "LINK_SECRET_FILE": str(secret_file)})
    try:
        token = app.extensions["lbp"].auth.tokens.mint("x", "system/*.rs")
        jwt.decode(token, key.public_key(), algorithms=["ES384"], audience="lbp-pathway")  # signed by the file's key
        with app.extensions["lbp"].store.engine.connect() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM auth_keys").scalar_one() == 0
        with app.test_request_context():
            from app.auth.links import secret_key

            assert secret_key() == b"s3cret-for-links"
    finally:
        app.extensions["lbp"].store.dispose()


# ------------------------------------------------------------------ D7: granular scopes never widened

GRANULAR = "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def test_granular_scope_is_refused_at_registration_and_at_the_token_endpoint(app, tmp_path):
    with pytest.raises(ValueError, match="granular"):
        register_client(app.config["CLIENTS_FILE"], "granular", GRANULAR, app.config["TEST_KEY_DIR"])
    pem = register_client(app.config["CLIENTS_FILE"], "aud-client", "system/Observation.rs",
                          app.config["TEST_KEY_DIR"])
    r = _token_post(app, _assertion(pem, TOKEN_URL), scope=GRANULAR)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_scope"


def test_a_granular_scope_in_a_token_grants_nothing(app, client):
    _post(client, "Observation", {"resourceType": "Observation", "status": "final",
                                  "code": {"text": "x"}, "category": [{"text": "vital-signs"}]})
    c = _bearer(app, GRANULAR, "granular")
    assert c.get("/fhir/Observation?category=vital-signs").status_code == 403


# ------------------------------------------------------------------ D17: read-only database at start-up

def test_start_up_on_a_read_only_database_fails_with_one_clear_line(tmp_path, caplog):
    db = tmp_path / "ro.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "LOAD_ARTIFACTS": False,
                      "CLIENTS_FILE": str(tmp_path / "c.json")})
    app.extensions["lbp"].store.dispose()
    with pytest.raises(SystemExit) as exit_info:
        create_app({"DATABASE_URL": f"sqlite:///file:{db}?mode=ro&uri=true", "LOAD_ARTIFACTS": False,
                    "CLIENTS_FILE": str(tmp_path / "c.json")})
    assert exit_info.value.code == 3
    lines = [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"]
    assert len(lines) == 1 and "read-only" in lines[0]


def test_an_oversized_bearer_token_is_refused_before_it_is_decoded(app):
    r = app.test_client().get("/fhir/Patient", headers={"Authorization": "Bearer " + "a" * 20_000})
    assert r.status_code == 401


def test_conditional_lookup_of_another_type_is_audited_under_its_patient(app, client):
    pid = _patient(client)
    r = _post(client, "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "pain"},
                                      "identifier": [{"system": "urn:x", "value": "obs-1"}],
                                      "subject": {"reference": f"Patient/{pid}"}})
    assert r.status_code == 201
    r = _post(client, "", {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pain"},
                     "subject": {"reference": f"Patient/{pid}"}},
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=urn:x|obs-1"}}]})
    assert r.status_code == 200
    events = _audit_events(app, entity=f"Patient/{pid}")
    queries = [base64.b64decode(e["query"]).decode() for ev in events for e in ev.get("entity", []) if "query" in e]
    assert "identifier=urn:x|obs-1" in queries
