"""Prefetch as the spec says, end to end over HTTP: the fhirServer is this project's own FHIR server with the
test patients loaded (tests/data/cds/), the CDS client signs a JWT for every call."""
from __future__ import annotations

from tests.cds.conftest import full_prefetch, hook_request
from tests.cds.validator import rules_of, validate_response

PV = "/cds-services/lbp-patient-view-se"
SIGN = "/cds-services/lbp-order-sign-skane"


def _server(live, **auth):
    return {"fhirServer": f"{live.base}/fhir",
            "fhirAuthorization": {"access_token": live.fhir_token(), "token_type": "Bearer", "expires_in": 300,
                                  "scope": "system/*.rs", "subject": "cds-service", **auth}}


def test_without_prefetch_everything_is_fetched_from_the_fhir_server(live):
    r = live.post(PV, hook_request("patient-view", "cancer", prefetch=None, **_server(live)))
    assert r.status_code == 200, r.text
    assert rules_of(validate_response(r.json())).get("RF4") == "warning"


def test_fetched_and_prefetched_give_the_same_cards(live):
    for patient, orders in (("oldmri", ["referral"]), ("clean", ["xray"]), ("cauda", [])):
        hook = "order-sign" if orders else "patient-view"
        path = SIGN if orders else "/cds-services/lbp-patient-view-skane"
        fetched = live.post(path, hook_request(hook, patient, orders, prefetch=None, **_server(live)))
        sent = live.post(path, hook_request(hook, patient, orders))
        assert fetched.status_code == sent.status_code == 200
        assert rules_of(validate_response(fetched.json())) == rules_of(validate_response(sent.json()))


def test_null_prefetch_means_known_empty_and_is_not_fetched(live):
    prefetch = full_prefetch("cancer")
    prefetch["condition"] = None  # the client says: no conditions
    r = live.post(PV, hook_request("patient-view", "cancer", prefetch=prefetch))  # no fhirServer needed
    assert r.status_code == 200
    assert "RF4" not in rules_of(validate_response(r.json()))


def test_operation_outcome_or_missing_key_is_fetched(live):
    prefetch = full_prefetch("cancer")
    prefetch["condition"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "timeout", "diagnostics": "the EHR gave up"}]}
    del prefetch["observation"]
    r = live.post(PV, hook_request("patient-view", "cancer", prefetch=prefetch, **_server(live)))
    assert r.status_code == 200
    assert rules_of(validate_response(r.json())).get("RF4") == "warning"  # the fetched cancer diagnosis counts


def test_missing_prefetch_without_fhir_server_is_412(live):
    prefetch = full_prefetch("cancer")
    del prefetch["condition"]
    r = live.post(PV, hook_request("patient-view", "cancer", prefetch=prefetch))
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"


def test_unreachable_or_refusing_fhir_server_is_412(live):
    body = hook_request("patient-view", "cancer", prefetch=None, fhirServer="http://127.0.0.1:9/fhir")
    assert live.post(PV, body).status_code == 412
    body = hook_request("patient-view", "cancer", prefetch=None, **_server(live, access_token="not-a-token"))
    assert live.post(PV, body).status_code == 412


def test_live_discovery_lists_prefetch_templates_from_the_library(live):
    r = live.get("/cds-services")
    assert r.status_code == 200
    services = {s["id"]: s for s in r.json()["services"]}
    templates = services["lbp-order-sign-se"]["prefetch"]
    assert templates["patient"] == "Patient/{{context.patientId}}"
    assert templates["condition"].startswith("Condition?patient={{context.patientId}}")
    assert {"observation", "procedure", "diagnosticReport", "questionnaireResponse"} <= set(templates)


def test_one_batch_or_parallel_reads_give_the_same_cards(live):
    app = live.app
    body = hook_request("order-sign", "oldmri", ["referral"], prefetch=None, **_server(live))
    batched = live.post(SIGN, body)
    app.config["CDS_FETCH_BATCH"] = False
    try:
        body = hook_request("order-sign", "oldmri", ["referral"], prefetch=None, **_server(live))
        reads = live.post(SIGN, body)
    finally:
        app.config["CDS_FETCH_BATCH"] = True
    assert batched.status_code == reads.status_code == 200
    assert rules_of(validate_response(batched.json())) == rules_of(validate_response(reads.json()))
    assert rules_of(batched.json()["cards"]).get("I6") == "warning"


def test_expired_fhir_authorization_is_named_in_the_412(live, cds_app):
    with cds_app.app_context():
        expired = cds_app.extensions["lbp"].auth.tokens.mint("cds-service", "system/*.rs", -60)
    r = live.post(PV, hook_request("patient-view", "cancer", prefetch=None, **_server(live, access_token=expired)))
    assert r.status_code == 412
    issue = r.json()["issue"][0]
    assert issue["details"]["text"].startswith("fhirAuthorization has expired (HTTP 401")
    assert issue["expression"] == ["fhirAuthorization.access_token"]


def test_refused_fhir_authorization_is_named_in_the_412(live):
    r = live.post(PV, hook_request("patient-view", "cancer", prefetch=None,
                                   **_server(live, access_token="not-a-token")))
    assert r.status_code == 412
    assert r.json()["issue"][0]["details"]["text"].startswith("fhirAuthorization was refused by fhirServer (HTTP 401")
