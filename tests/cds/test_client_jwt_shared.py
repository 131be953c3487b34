"""Client JWTs have one verifier and one replay table: SMART client assertions and CDS Hooks calls agree."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest

from app import create_app
from app.auth.clients import ClientRegistry
from app.store.schema import metadata
from tests.cds.conftest import ISSUER, cds_config, hook_request, mint

PATH = "/cds-services/lbp-patient-view-se"
AUD = "http://localhost" + PATH
TOKEN_URL = "http://localhost/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def both_flows(tmp_path, keys, jwks_host):
    """An application where the EHR is a trusted CDS issuer and, with the same key, a SMART backend client."""
    application = create_app(cds_config(tmp_path, keys, jwks_host.url))
    ClientRegistry(application.config["CLIENTS_FILE"]).add(ISSUER, "system/*.rs", jwks=keys.jwks())
    yield application
    application.extensions["lbp"].store.dispose()


def _assertion(keys, jti: str, alg: str = "ES384", key=None) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": ISSUER, "aud": TOKEN_URL, "exp": now + 60, "iat": now, "jti": jti}
    return jwt.encode(claims, key if key is not None else keys.es, algorithm=alg, headers={"kid": "es-1"})


def _exchange(application, assertion: str):
    return application.test_client().post("/auth/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion, "scope": "system/Patient.rs"})


def _hook(application, token: str):
    return application.test_client().post(PATH, json=hook_request("patient-view", "clean"),
                                          headers={"Authorization": f"Bearer {token}"})


def test_a_jti_used_in_a_cds_call_cannot_be_replayed_as_a_client_assertion(both_flows, keys):
    jti = uuid.uuid4().hex
    assert _hook(both_flows, mint(keys, AUD, jti=jti)).status_code == 200
    r = _exchange(both_flows, _assertion(keys, jti))
    assert r.status_code == 401
    assert "already used" in r.get_json()["error_description"]


def test_a_jti_used_in_a_client_assertion_cannot_be_replayed_in_a_cds_call(both_flows, keys):
    jti = uuid.uuid4().hex
    assert _exchange(both_flows, _assertion(keys, jti)).status_code == 200
    assert _hook(both_flows, mint(keys, AUD, jti=jti)).status_code == 401
    assert _hook(both_flows, mint(keys, AUD)).status_code == 200  # a fresh jti is fine


def test_both_flows_refuse_hmac_before_looking_at_a_key(both_flows, keys):
    secret = b"a shared secret that no client should be able to use here"
    r = _exchange(both_flows, _assertion(keys, uuid.uuid4().hex, alg="HS384", key=secret))
    assert r.status_code == 401 and "ES384 or RS384" in r.get_json()["error_description"]
    now = int(time.time())
    hs = jwt.encode({"iss": ISSUER, "sub": "x", "aud": AUD, "exp": now + 60, "iat": now, "jti": uuid.uuid4().hex},
                    secret, algorithm="HS384", headers={"kid": "es-1"})
    assert _hook(both_flows, hs).status_code == 401


def test_one_verifier_and_one_replay_table(both_flows):
    lbp = both_flows.extensions["lbp"]
    assert lbp.auth.tokens.verifier is lbp.auth.client_jwt
    assert both_flows.extensions["lbp_cds"].verifier.client_jwt is lbp.auth.client_jwt
    assert [t for t in metadata.tables if "jti" in t] == ["client_jti"]
