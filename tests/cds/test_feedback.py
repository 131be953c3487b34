"""Feedback: stored once per card, outcome and timestamp; queryable by rule, indicator and outcome."""
from __future__ import annotations

from tests.cds.conftest import hook_request
from tests.cds.validator import validate_response

SIGN = "/cds-services/lbp-order-sign-se"


def _report(cds_app, query: str):
    token = cds_app.extensions["lbp"].auth.tokens.mint("ops", "system/cds-feedback.read")
    return cds_app.test_client().get(f"/cds-feedback?{query}", headers={"Authorization": f"Bearer {token}"})


def test_feedback_is_stored_once_and_counted_by_rule_and_indicator(cds_app, cds):
    cards = validate_response(cds.post(SIGN, hook_request("order-sign", "clean", ["opioid", "nsaid"])).get_json())
    opioid = next(c for c in cards if c["source"]["topic"]["code"] == "M3")
    nsaid = next(c for c in cards if c["source"]["topic"]["code"] == "M1")
    feedback = {"feedback": [
        {"card": opioid["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-25T10:00:00Z",
         "acceptedSuggestions": [{"id": opioid["suggestions"][0]["uuid"]}]},
        {"card": nsaid["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:05Z",
         "overrideReason": {"reason": nsaid["overrideReasons"][0], "userComment": "discussed"}},
    ]}
    r = cds.post(SIGN + "/feedback", feedback)
    assert r.status_code == 200 and r.get_json() == {"stored": 2, "duplicates": 0}
    again = cds.post(SIGN + "/feedback", feedback)
    assert again.status_code == 200 and again.get_json() == {"stored": 0, "duplicates": 2}

    warnings = _report(cds_app, "indicator=warning&rule=M3").get_json()
    assert [f["card"] for f in warnings["feedback"]] == [opioid["uuid"]]
    item = warnings["feedback"][0]
    assert item["outcome"] == "accepted" and item["acceptedSuggestions"] == [opioid["suggestions"][0]["uuid"]]
    overridden = _report(cds_app, "outcome=overridden&rule=M1").get_json()
    assert overridden["feedback"][0]["overrideReason"]["code"] == nsaid["overrideReasons"][0]["code"]
    assert overridden["feedback"][0]["userComment"] == "discussed"
    assert overridden["byRule"] == {"M1": {"accepted": 0, "overridden": 1}}


def test_bad_feedback_is_400_and_report_needs_a_token(cds_app, cds):
    r = cds.post(SIGN + "/feedback", {"feedback": [{"card": "x", "outcome": "ignored"}]})
    assert r.status_code == 400 and r.get_json()["resourceType"] == "OperationOutcome"
    assert cds.post("/cds-services/nope/feedback", {"feedback": []}).status_code == 404
    assert cds_app.test_client().get("/cds-feedback").status_code == 401


def test_feedback_report_needs_the_feedback_scope(cds_app):
    for scope in ("system/Observation.rs", "system/*.cruds"):
        token = cds_app.extensions["lbp"].auth.tokens.mint("ops", scope)
        r = cds_app.test_client().get("/cds-feedback", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
    token = cds_app.extensions["lbp"].auth.tokens.mint("ops", "system/cds-feedback.read")
    assert cds_app.test_client().get("/cds-feedback", headers={"Authorization": f"Bearer {token}"}).status_code == 200
