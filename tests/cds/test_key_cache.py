"""Parsed CDS client keys are cached per (issuer, kid, JWKS source, alg): rotation, expiry and withdrawal still hold."""
from __future__ import annotations

import time

import pytest

from app.auth.client_jwt import ClientJWTVerifier, ReplayCache
from app.cds.auth import Issuer, IssuersFile, Unauthorized, Verifier
from app.store.db import Store
from tests.cds.conftest import ISSUER, JKU_ISSUER, JWKSHost, mint

AUD = "http://cds.test/cds-services/lbp-order-sign-se"


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'jti.db'}")
    yield s
    s.dispose()


@pytest.fixture
def host(keys):
    h = JWKSHost({"keys": [keys.jwk("es", "es-1")]})
    yield h
    h.close()


def _verifier(store: Store, issuers: dict[str, Issuer] | IssuersFile, **kwargs) -> Verifier:
    return Verifier(ClientJWTVerifier(ReplayCache(store)), issuers, timeout=2.0, **kwargs)


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def test_a_key_is_fetched_once_and_parsed_once_for_many_calls(store, keys, host):
    verifier = _verifier(store, {JKU_ISSUER: Issuer(JKU_ISSUER, jwks_url=host.url)})
    for _ in range(5):
        assert verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER)), [AUD]).iss == JKU_ISSUER
    assert host.hits == 1
    assert len(verifier._parsed) == 1


def test_a_new_kid_fetches_the_jwks_again(store, keys, host):
    verifier = _verifier(store, {JKU_ISSUER: Issuer(JKU_ISSUER, jwks_url=host.url)})
    verifier.jwks.min_refresh = 0.0  # the rate limit of refetches is not what this test is about
    assert verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER)), [AUD])
    host.jwks = {"keys": [keys.jwk("es", "es-1"), keys.jwk("es_other", "es-2")]}  # the client rotates
    caller = verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER, key="es_other", kid="es-2")), [AUD])
    assert caller.iss == JKU_ISSUER
    assert host.hits == 2
    # and the old key, still published, is still accepted from the cache
    assert verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER)), [AUD])
    assert host.hits == 2


def test_an_expired_entry_is_refreshed_and_a_withdrawn_key_is_then_refused(store, keys, host):
    verifier = _verifier(store, {JKU_ISSUER: Issuer(JKU_ISSUER, jwks_url=host.url)}, jwks_ttl=0.3)
    verifier.jwks.min_refresh = 0.0
    assert verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER)), [AUD])
    assert verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER)), [AUD])
    assert host.hits == 1
    time.sleep(0.4)
    assert verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER)), [AUD])
    assert host.hits == 2  # the entry expired with its JWKS: fetched again
    host.jwks = {"keys": [keys.jwk("es_other", "es-2")]}  # es-1 withdrawn (compromised)
    time.sleep(0.4)
    with pytest.raises(Unauthorized, match="unknown kid"):
        verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER)), [AUD])


def test_an_unknown_kid_is_refused_and_not_cached(store, keys, host):
    verifier = _verifier(store, {JKU_ISSUER: Issuer(JKU_ISSUER, jwks_url=host.url)})
    with pytest.raises(Unauthorized, match="unknown kid"):
        verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER, key="es_other", kid="es-9")), [AUD])
    assert verifier._parsed == {}


def test_a_cached_key_does_not_outlive_its_issuer_entry(tmp_path, store, keys):
    """An issuers file that drops a key (or the issuer) takes effect on the next call, cache or not."""
    import json
    import os

    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": keys.jwks()}]}))
    verifier = _verifier(store, IssuersFile(None, str(path)))
    assert verifier.verify(_bearer(mint(keys, AUD)), [AUD]).iss == ISSUER
    assert verifier.verify(_bearer(mint(keys, AUD)), [AUD]).iss == ISSUER
    path.write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": {"keys": [keys.jwk("rs", "rs-1")]}}]}))
    later = time.time() + 5
    os.utime(path, (later, later))
    with pytest.raises(Unauthorized, match="unknown kid"):
        verifier.verify(_bearer(mint(keys, AUD)), [AUD])
    assert verifier.verify(_bearer(mint(keys, AUD, key="rs")), [AUD]).iss == ISSUER
    path.write_text(json.dumps({"issuers": []}))
    os.utime(path, (later + 5, later + 5))
    with pytest.raises(Unauthorized, match="iss not trusted"):
        verifier.verify(_bearer(mint(keys, AUD, key="rs")), [AUD])


def test_the_jku_allowlist_is_checked_before_the_cache(store, keys, host):
    verifier = _verifier(store, {JKU_ISSUER: Issuer(JKU_ISSUER, jku=(host.url,))})
    assert verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER, headers={"jku": host.url})), [AUD])
    verifier.issuers = {JKU_ISSUER: Issuer(JKU_ISSUER, jku=("https://elsewhere.test/jwks",))}
    with pytest.raises(Unauthorized, match="jku not on the issuer's allowlist"):
        verifier.verify(_bearer(mint(keys, AUD, iss=JKU_ISSUER, headers={"jku": host.url})), [AUD])


def test_a_cached_key_still_checks_signature_alg_audience_and_replay(store, keys):
    verifier = _verifier(store, {ISSUER: Issuer(ISSUER, jwks=keys.jwks())})
    assert verifier.verify(_bearer(mint(keys, AUD)), [AUD])  # es-1 now cached
    forged = mint(keys, AUD, key="es_other", kid="es-1")  # right kid, wrong key
    with pytest.raises(Unauthorized, match="InvalidSignatureError"):
        verifier.verify(_bearer(forged), [AUD])
    with pytest.raises(Unauthorized, match="InvalidAudienceError"):
        verifier.verify(_bearer(mint(keys, "http://cds.test/other")), [AUD])
    with pytest.raises(Unauthorized, match="the key does not suit alg"):  # an RSA signature under the EC kid
        verifier.verify(_bearer(mint(keys, AUD, key="rs", kid="es-1")), [AUD])
    token = mint(keys, AUD, jti="once")
    assert verifier.verify(_bearer(token), [AUD])
    with pytest.raises(Unauthorized, match="jti was already used"):
        verifier.verify(_bearer(token), [AUD])
