"""Regression tests for the CDS Hooks holes: audiences, paging origin, prefetch deadline, fhirServer policy,
patient links tied to the calling issuer, and hook requests checked as each hook defines them."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from werkzeug.serving import make_server

from tests.cds.conftest import ISSUER, full_prefetch, hook_request, mint

PV = "/cds-services/lbp-patient-view-se"
SIGN = "/cds-services/lbp-order-sign-skane"


class FakeFHIR:
    """A FHIR server that misbehaves on purpose: paging links to another origin, or answers one byte at a time."""

    def __init__(self, mode: str, other_origin: str = ""):
        self.mode = mode
        self.other_origin = other_origin
        self.requests: list[tuple[str, str | None]] = []

        def wsgi(environ, start_response):
            self.requests.append((environ["PATH_INFO"], environ.get("HTTP_AUTHORIZATION")))
            if environ["REQUEST_METHOD"] == "POST":  # no batch: the service falls back to reads
                start_response("400 Bad Request", [("Content-Type", "application/fhir+json")])
                return [b'{"resourceType":"OperationOutcome","issue":[]}']
            if self.mode == "drip":
                start_response("200 OK", [("Content-Type", "application/fhir+json")])
                return self._drip()
            body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
            if "/Patient/" in environ["PATH_INFO"]:
                body = {"resourceType": "Patient", "id": environ["PATH_INFO"].rsplit("/", 1)[-1]}
            elif self.mode == "invalid" and "/Condition" in environ["PATH_INFO"]:
                body["entry"] = [{"resource": {"resourceType": "Condition", "id": "c1",
                                               "subject": {"reference": "Patient/clean"},
                                               "onsetDateTime": "last spring"}, "search": {"mode": "match"}}]
            elif self.other_origin:
                body["link"] = [{"relation": "next", "url": f"{self.other_origin}/collect?page=2"}]
            data = orjson.dumps(body)
            start_response("200 OK", [("Content-Type", "application/fhir+json"), ("Content-Length", str(len(data)))])
            return [data]

        self.server = make_server("127.0.0.1", 0, wsgi, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _drip():
        yield b'{"resourceType":"Bundle","type":"searchset","entry":['
        for _ in range(40):
            time.sleep(0.25)
            yield b" "
        yield b"]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def configured(app, **values):
    old = {k: app.config.get(k) for k in values}
    app.config.update(values)
    try:
        yield
    finally:
        app.config.update(old)


def _fetching(patient: str, server: str, hook: str = "patient-view") -> dict:
    return hook_request(hook, patient, prefetch=None, fhirServer=server,
                        fhirAuthorization={"access_token": "EHR-ACCESS-TOKEN", "token_type": "Bearer",
                                           "expires_in": 300, "scope": "patient/*.read", "subject": "cds"})


# ------------------------------------------------------------------ D5: aud never from the Host header

def test_cds_jwt_for_another_host_is_refused_even_with_that_host_header(cds_app, keys):
    path = PV
    for public in (None, "https://cds.region.example"):
        with configured(cds_app, CDS_PUBLIC_BASE_URL=public):
            token = mint(keys, "http://other-cds.example" + path)
            r = cds_app.test_client().post(path, json=hook_request("patient-view", "clean"),
                                           base_url="http://other-cds.example",
                                           headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
    with configured(cds_app, CDS_PUBLIC_BASE_URL="https://cds.region.example"):
        token = mint(keys, "https://cds.region.example" + path)
        r = cds_app.test_client().post(path, json=hook_request("patient-view", "clean"),
                                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200


# ------------------------------------------------------------------ D6: paging stays on the fhirServer's origin

def test_paging_next_link_to_another_origin_is_not_followed(cds, cds_app):
    collector = FakeFHIR("plain")
    fake = FakeFHIR("plain", other_origin=collector.base)
    try:
        r = cds.post(PV, _fetching("clean", f"{fake.base}/fhir"))
        assert r.status_code == 412
        assert collector.requests == []  # the EHR's token never went to the other origin
    finally:
        fake.close()
        collector.close()


# ------------------------------------------------------------------ D9: one deadline for the whole prefetch

def test_a_slow_fhir_server_is_cut_off_at_the_prefetch_deadline(cds, cds_app):
    fake = FakeFHIR("drip")
    try:
        with configured(cds_app, CDS_PREFETCH_DEADLINE=1.0):
            started = time.monotonic()
            r = cds.post(PV, _fetching("clean", f"{fake.base}/fhir"))
            elapsed = time.monotonic() - started
        assert r.status_code == 412
        assert elapsed < 6  # the drip runs 10 s; without a deadline the call waits for all of it
    finally:
        fake.close()


def test_prefetch_deadline_defaults_to_at_most_five_seconds(cds_app):
    from app.cds import CONFIG_DEFAULTS

    assert 0 < CONFIG_DEFAULTS["CDS_PREFETCH_DEADLINE"] <= 5


# ------------------------------------------------------------------ D18: fhirServer policy

def test_loopback_fhir_server_is_refused_unless_configured(cds, cds_app):
    with configured(cds_app, CDS_ALLOW_LOCAL_FHIR_SERVER=False):
        for server in ("http://127.0.0.1:9/fhir", "http://localhost:9/fhir", "http://169.254.169.254/latest"):
            r = cds.post(PV, _fetching("clean", server))
            assert r.status_code == 400, server
            assert r.get_json()["issue"][0]["expression"] == ["fhirServer"]


def test_the_servers_own_fhir_api_at_its_configured_public_url_is_not_refused(cds, cds_app):
    # the service reading this server's own FHIR API is not a request forgery; another port on loopback still is
    with configured(cds_app, CDS_ALLOW_LOCAL_FHIR_SERVER=False, PUBLIC_BASE_URL="http://127.0.0.1:9"):
        r = cds.post(PV, _fetching("clean", "http://127.0.0.1:9/fhir"))
        assert r.status_code != 400 or r.get_json()["issue"][0]["expression"] != ["fhirServer"]
        r = cds.post(PV, _fetching("clean", "http://127.0.0.1:10/fhir"))
        assert r.status_code == 400 and r.get_json()["issue"][0]["expression"] == ["fhirServer"]


def test_fhir_server_allowlist_and_userinfo(cds, cds_app):
    with configured(cds_app, CDS_FHIR_SERVER_ALLOWLIST=["https://ehr.region.example/fhir"]):
        r = cds.post(PV, _fetching("clean", "https://elsewhere.example/fhir"))
        assert r.status_code == 400 and r.get_json()["issue"][0]["expression"] == ["fhirServer"]
    r = cds.post(PV, _fetching("clean", "http://a@127.0.0.1:9/fhir"))
    assert r.status_code == 400 and r.get_json()["issue"][0]["expression"] == ["fhirServer"]


# ------------------------------------------------------------------ D11: links tied to the calling issuer

def _questionnaire_links(response: dict) -> list[str]:
    return [link["url"] for card in response["cards"] for link in card.get("links", []) if "/q/" in link["url"]]


def test_links_from_cds_cards_record_the_issuer_and_can_be_revoked(cds, cds_app):
    from app.auth.links import read_token, revoke

    r = cds.post(PV, hook_request("patient-view", "unknown"))
    assert r.status_code == 200
    urls = _questionnaire_links(r.get_json())
    assert urls
    token = urls[0].rsplit("/q/", 1)[1]
    web = cds_app.test_client()
    with cds_app.test_request_context():
        link = read_token(token)
    assert link.issuer == ISSUER and link.patient_id == "unknown"
    assert web.get(f"/q/{token}").status_code == 200
    revoke(cds_app.extensions["lbp"].store, issuer=ISSUER)
    assert web.get(f"/q/{token}").status_code == 410
    # links minted after the revocation work again: the issuer is still trusted for new calls
    time.sleep(1.1)
    fresh = _questionnaire_links(cds.post(PV, hook_request("patient-view", "unknown")).get_json())[0]
    assert web.get("/q/" + fresh.rsplit("/q/", 1)[1]).status_code == 200


# ------------------------------------------------------------------ hook requests as the hooks define them

@pytest.mark.parametrize("hook,path,user", [
    ("patient-view", PV, "dr-1"),
    ("patient-view", PV, "Device/x"),
    ("order-sign", SIGN, "Patient/clean"),
])
def test_user_id_must_have_the_form_the_hook_defines(cds, hook, path, user):
    body = hook_request(hook, "clean", ["xray"] if hook != "patient-view" else [])
    body["context"]["userId"] = user
    r = cds.post(path, body)
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["context.userId"]


def test_a_malformed_draft_order_is_a_400_naming_it(cds):
    body = hook_request("order-sign", "clean", ["xray"])
    body["context"]["draftOrders"]["entry"][0]["resource"]["status"] = "not-a-status"
    r = cds.post(SIGN, body)
    assert r.status_code == 400
    expressions = [e for issue in r.get_json()["issue"] for e in issue.get("expression", [])]
    assert "context.draftOrders.entry[0].resource.status" in expressions


def test_a_malformed_prefetched_resource_is_a_400_naming_it(cds):
    prefetch = full_prefetch("cancer")
    prefetch["condition"]["entry"][0]["resource"]["onsetDateTime"] = "last spring"
    r = cds.post(PV, hook_request("patient-view", "cancer", prefetch=prefetch))
    assert r.status_code == 400
    expressions = [e for issue in r.get_json()["issue"] for e in issue.get("expression", [])]
    assert "prefetch.condition.entry[0].resource.onsetDateTime" in expressions


def test_an_invalid_resource_from_the_fhir_server_is_a_412_naming_it(cds):
    fake = FakeFHIR("invalid")
    try:
        r = cds.post(PV, _fetching("clean", f"{fake.base}/fhir"))
        assert r.status_code == 412
        expressions = [e for issue in r.get_json()["issue"] for e in issue.get("expression", [])]
        assert "prefetch.condition.entry[0].resource.onsetDateTime" in expressions
    finally:
        fake.close()
