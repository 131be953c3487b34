"""Client JWTs (CDS Hooks 2.0 "Trusting CDS Clients"): accepted ES384/RS384, every refusal a bare 401, CORS."""
from __future__ import annotations

import logging
import time
import uuid

import jwt
import pytest

from tests.cds.conftest import ISSUER, JKU_ISSUER, cds_config, hook_request, mint
from tests.cds.validator import validate_discovery, validate_response

PATH = "/cds-services/lbp-patient-view-se"
AUD = "http://localhost" + PATH


def _post(cds_app, token, path=PATH, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return cds_app.test_client().post(path, json=body or hook_request("patient-view", "clean"), headers=headers)


def _refused(r):
    assert r.status_code == 401
    assert r.data == b""  # bare: no reason for a prober
    assert r.headers.get("WWW-Authenticate") == "Bearer"


@pytest.mark.parametrize("key", ["es", "rs"])
def test_es384_and_rs384_tokens_are_accepted(cds_app, keys, key):
    r = _post(cds_app, mint(keys, AUD, key=key))
    assert r.status_code == 200
    validate_response(r.get_json())


def test_expired_token_is_refused(cds_app, keys):
    _refused(_post(cds_app, mint(keys, AUD, exp_in=-120, iat_offset=-300)))


def test_replayed_jti_is_refused(cds_app, keys):
    token = mint(keys, AUD)
    assert _post(cds_app, token).status_code == 200
    _refused(_post(cds_app, token))


def test_wrong_audience_is_refused(cds_app, keys):
    _refused(_post(cds_app, mint(keys, "http://localhost/cds-services/lbp-order-sign-se")))


def test_unlisted_issuer_is_refused(cds_app, keys):
    _refused(_post(cds_app, mint(keys, AUD, iss="https://evil.example")))


def test_alg_none_is_refused(cds_app):
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "sub": "x", "aud": AUD, "exp": now + 60, "iat": now, "jti": uuid.uuid4().hex},
                       None, algorithm="none", headers={"kid": "es-1"})
    _refused(_post(cds_app, token))


def test_hs256_is_refused_even_with_the_public_key_as_secret(cds_app, keys):
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "x", "aud": AUD, "exp": now + 60, "iat": now, "jti": uuid.uuid4().hex}
    token = jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes!!", algorithm="HS256", headers={"kid": "es-1"})
    _refused(_post(cds_app, token))


def test_es256_and_unknown_kid_and_wrong_key_are_refused(cds_app, keys):
    _refused(_post(cds_app, mint(keys, AUD, kid="nope")))
    _refused(_post(cds_app, mint(keys, AUD, key="es_other")))  # signed by a key the issuer does not publish


def test_exp_too_far_ahead_and_missing_claims_are_refused(cds_app, keys):
    _refused(_post(cds_app, mint(keys, AUD, exp_in=3600)))
    now = int(time.time())
    no_jti = jwt.encode({"iss": ISSUER, "aud": AUD, "exp": now + 60, "iat": now}, keys.es, algorithm="ES384",
                        headers={"kid": "es-1"})
    _refused(_post(cds_app, no_jti))


def test_no_token_is_refused_on_every_endpoint(cds_app):
    client = cds_app.test_client()
    _refused(client.get("/cds-services"))
    _refused(client.post(PATH, json=hook_request("patient-view", "clean")))
    _refused(client.post(PATH + "/feedback", json={"feedback": []}))
    _refused(client.post(PATH, json={}, headers={"Authorization": "Basic abc"}))


def test_discovery_with_a_token(cds_app, keys):
    r = cds_app.test_client().get("/cds-services",
                                  headers={"Authorization": f"Bearer {mint(keys, 'http://localhost/cds-services')}"})
    assert r.status_code == 200
    validate_discovery(r.get_json())


def test_jku_on_the_allowlist_is_fetched_and_refreshed_on_an_unknown_kid(cds_app, keys, jwks_host):
    token = mint(keys, AUD, iss=JKU_ISSUER, headers={"jku": jwks_host.url})
    assert _post(cds_app, token).status_code == 200
    # the client rotates to its RSA key: the service refetches the JWKS on the unknown kid
    jwks_host.jwks = {"keys": [keys.jwk("es", "es-1"), keys.jwk("rs", "rs-1")]}
    hits = jwks_host.hits
    time.sleep(5.1)  # refetches are rate-limited per URL
    token = mint(keys, AUD, iss=JKU_ISSUER, key="rs", headers={"jku": jwks_host.url})
    assert _post(cds_app, token).status_code == 200
    assert jwks_host.hits == hits + 1


def test_jku_not_on_the_allowlist_is_refused(cds_app, keys):
    _refused(_post(cds_app, mint(keys, AUD, iss=JKU_ISSUER, headers={"jku": "https://attacker.example/jwks"})))
    # an issuer with an inline JWKS does not follow a jku either
    _refused(_post(cds_app, mint(keys, AUD, headers={"jku": "https://attacker.example/jwks"})))


def test_preflight_needs_no_token_and_allows_the_headers(cds_app):
    r = cds_app.test_client().options(PATH, headers={"Origin": "https://ehr.example",
                                                     "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
    assert "content-type" in r.headers["Access-Control-Allow-Headers"].lower()


def test_cors_restricted_to_configured_origins(tmp_path, keys, jwks_host):
    from app import create_app

    restricted = create_app(cds_config(tmp_path, keys, jwks_host.url, LOAD_ARTIFACTS=False, FHIR_CORS_ORIGINS="",
                                       CDS_CORS_ORIGINS="https://ehr.example https://pas.example"))
    c = restricted.test_client()
    pre = c.options(PATH, headers={"Origin": "https://pas.example", "Access-Control-Request-Method": "POST",
                                   "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://pas.example"
    assert "Origin" in pre.headers["Vary"]
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    discovery = c.get("/cds-services", headers={"Origin": "https://ehr.example",
                                                "Authorization": f"Bearer {mint(keys, 'http://localhost/cds-services')}"})
    assert discovery.status_code == 200
    assert discovery.headers["Access-Control-Allow-Origin"] == "https://ehr.example"
    # a refusal carries the header too, so the browser app can read the 401
    unsigned = c.post(PATH, json=hook_request("patient-view", "clean"), headers={"Origin": "https://ehr.example"})
    assert unsigned.status_code == 401
    assert unsigned.headers["Access-Control-Allow-Origin"] == "https://ehr.example"
    # an origin is matched whole: a prefix of an allowed one is not allowed
    for origin in ("https://ehr.ex", "https://evil.example"):
        refused = c.options(PATH, headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in refused.headers
        assert "Access-Control-Allow-Methods" not in refused.headers
    restricted.extensions["lbp"].store.dispose()


def test_tokens_and_patient_data_stay_out_of_the_log(cds_app, keys, caplog):
    caplog.set_level(logging.DEBUG)
    token = mint(keys, AUD)
    _post(cds_app, token)
    _post(cds_app, token)  # the replay is logged as refused, without the token
    text = caplog.text
    assert token not in text and token.split(".")[1] not in text
    assert "clean" not in text and "Patient/" not in text


def test_dev_switch_disables_checks_loudly(tmp_path, keys, jwks_host, caplog):
    from app import create_app
    from tests.cds.conftest import cds_config

    caplog.set_level(logging.WARNING)
    app = create_app(cds_config(tmp_path, keys, jwks_host.url, CDS_AUTH_DISABLED=True, LOAD_ARTIFACTS=False))
    try:
        assert "AUTHENTICATION IS DISABLED" in caplog.text
        assert app.test_client().get("/cds-services").status_code == 200
    finally:
        app.extensions["lbp"].store.dispose()


def test_refusal_reason_is_logged_at_warning_with_the_issuer_never_the_token(cds_app, keys, caplog):
    token = mint(keys, AUD, exp_in=-120, iat_offset=-300)
    with caplog.at_level(logging.WARNING, logger="lbp.cds"):
        _refused(_post(cds_app, token))
    refusals = [r for r in caplog.records if "CDS call refused" in r.getMessage()]
    assert refusals and refusals[0].levelno == logging.WARNING
    message = refusals[0].getMessage()
    assert ISSUER in message and "xpired" in message and token not in message


def test_debug_mode_returns_the_reason_and_is_off_by_default(cds_app, keys):
    assert cds_app.config["CDS_DEBUG_REFUSALS"] is False
    cds_app.config["CDS_DEBUG_REFUSALS"] = True
    try:
        r = _post(cds_app, mint(keys, AUD, iss="https://unknown.example"))
    finally:
        cds_app.config["CDS_DEBUG_REFUSALS"] = False
    assert r.status_code == 401
    assert r.get_json() == {"error": "invalid_token", "error_description": "iss not trusted",
                            "iss": "https://unknown.example"}
    assert 'error_description="iss not trusted"' in r.headers["WWW-Authenticate"]


def test_issuers_file_is_reread_when_it_changes(tmp_path, keys, jwks_host):
    import json
    import os

    from app import create_app
    from tests.cds.conftest import cds_config

    issuers_file = tmp_path / "issuers.json"
    issuers_file.write_text(json.dumps({"issuers": []}))
    config = cds_config(tmp_path, keys, jwks_host.url, CDS_TRUSTED_ISSUERS=None,
                        CDS_TRUSTED_ISSUERS_FILE=str(issuers_file), LOAD_ARTIFACTS=False)
    application = create_app(config)
    try:
        client = application.test_client()
        aud = "http://localhost/cds-services"
        assert client.get("/cds-services", headers={"Authorization": f"Bearer {mint(keys, aud)}"}).status_code == 401
        issuers_file.write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": keys.jwks()}]}))
        later = time.time() + 5
        os.utime(issuers_file, (later, later))
        assert client.get("/cds-services", headers={"Authorization": f"Bearer {mint(keys, aud)}"}).status_code == 200
    finally:
        application.extensions["lbp"].store.dispose()
