"""Bad requests get 400 with an OperationOutcome, an unknown service 404; one failing rule never fails the call."""
from __future__ import annotations

import pytest

from tests.cds.conftest import hook_request
from tests.cds.validator import validate_response

PV = "/cds-services/lbp-patient-view-se"
OS = "/cds-services/lbp-order-select-se"
SIGN = "/cds-services/lbp-order-sign-se"


def _outcome(r, status, expression=None):
    assert r.status_code == status, r.get_json()
    body = r.get_json()
    assert body["resourceType"] == "OperationOutcome"
    if expression:
        assert any(expression in e for i in body["issue"] for e in i.get("expression", [])), body


@pytest.mark.parametrize("missing", ["hook", "hookInstance", "context"])
def test_missing_required_field_is_400(cds, missing):
    body = hook_request("patient-view", "clean")
    del body[missing]
    _outcome(cds.post(PV, body), 400, missing)


def test_hook_the_service_does_not_serve_is_400(cds):
    _outcome(cds.post(PV, hook_request("order-sign", "clean", ["mri"])), 400, "hook")


def test_fhir_authorization_without_fhir_server_is_400(cds):
    body = hook_request("patient-view", "clean", fhirAuthorization={
        "access_token": "x", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "s"})
    _outcome(cds.post(PV, body), 400, "fhirAuthorization")


@pytest.mark.parametrize("draft_orders", [
    None,
    {"resourceType": "Parameters"},
    {"resourceType": "Bundle", "entry": "nope"},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "ServiceRequest"}}]},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "ServiceRequest", "id": "x"}}]},
    {"resourceType": "Bundle", "entry": [{"nothing": 1}]},
])
def test_malformed_draft_orders_are_400(cds, draft_orders):
    body = hook_request("order-sign", "clean", ["mri"])
    body["context"]["draftOrders"] = draft_orders
    _outcome(cds.post(SIGN, body), 400, "context.draftOrders")


def test_selection_not_among_draft_orders_is_400(cds):
    body = hook_request("order-select", "clean", ["mri"], selections=["ServiceRequest/elsewhere"])
    _outcome(cds.post(OS, body), 400, "context.selections")


def test_unknown_service_is_404(cds):
    _outcome(cds.post("/cds-services/no-such-service", hook_request("patient-view", "clean")), 404)


def test_patient_id_must_match_the_prefetched_patient(cds):
    body = hook_request("patient-view", "clean")
    body["context"]["patientId"] = "someone-else"
    _outcome(cds.post(PV, body), 400)


def test_a_card_that_cannot_be_built_does_not_cost_the_other_cards(cds, monkeypatch):
    from app.cds import cards as cards_module

    real = cards_module.to_card

    def failing(action, ctx):
        if action.get("id") == "pain-rating-missing":
            raise KeyError("broken artifact")
        return real(action, ctx)

    monkeypatch.setattr(cards_module, "to_card", failing)
    r = cds.post(PV, hook_request("patient-view", "unknown"))
    assert r.status_code == 200
    topics = [c["source"]["topic"]["code"] for c in validate_response(r.get_json())]
    assert "YF4" in topics and "A3" not in topics
