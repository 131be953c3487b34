"""Nothing clinical fails silently: a missing fact narrows, a failing feature becomes a card (docs/fail-safe.md)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app.reasoning.failures import FAILURES
from tests.cds.conftest import hook_request
from tests.cds.validator import rules_of, validate_response

EVALUATION = "org.lbp-pathway.evaluation"


@contextmanager
def failing(app, *features: str) -> Iterator[None]:
    """Force case features to fail in every CDS call made inside the block (fault injection)."""
    before = app.config.get("REASONING_FAIL_FEATURES")
    app.config["REASONING_FAIL_FEATURES"] = list(features)
    try:
        yield
    finally:
        app.config["REASONING_FAIL_FEATURES"] = before


def call(cds, variant: str, patient: str, hook: str = "patient-view") -> dict:
    r = cds.post(f"/cds-services/lbp-{hook}-{variant}", hook_request(hook, patient))
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    validate_response(body)
    return body


# ------------------------------------------------------------------ missing data narrows, never silences
@pytest.mark.parametrize("variant", ["se", "skane", "midtjylland"])
def test_a_patient_without_birth_date_still_gets_the_acute_sign_card_and_is_asked_for_the_age(cds, variant):
    cards = call(cds, variant, "nobirth")["cards"]
    # cauda equina syndrome in the record does not depend on age: the acute referral card is there
    assert rules_of(cards).get("RA1") == "critical"
    # the unknown age is asked for, once, as information, offering the questionnaire that collects RF1; with the
    # red flags not assessed either it is part of that card (one decision: the red-flag assessment)
    asks = [c for c in cards if c["source"]["topic"]["code"] == "S1"
            or "S1" in [r["code"] for r in (c.get("extension") or {}).get("org.lbp-pathway.rules", [])]]
    assert len(asks) == 1 and asks[0]["indicator"] == "info"
    expected = {"se": "Ålder okänd", "skane": "Ålder okänd", "midtjylland": "Alder ukendt"}[variant]
    assert asks[0]["summary"].startswith(expected) or expected in asks[0]["detail"]
    offered = json.dumps(asks[0].get("suggestions", []))
    assert "collect-lbp-red-flags" in offered or "lbp-red-flags" in offered


def test_the_same_patient_with_a_birth_date_is_not_asked_for_the_age(cds):
    cards = call(cds, "skane", "cauda")["cards"]
    assert "S1" not in rules_of(cards)


# ------------------------------------------------------------------ a failing feature is never silent
@pytest.mark.parametrize(
    ("variant", "label", "rule_text"),
    [
        ("skane", "Kunde inte bedömas", "Röd flagga: tidigare cancersjukdom"),
        ("se", "Kunde inte bedömas", "Röd flagga: tidigare cancersjukdom"),
        ("midtjylland", "Kunne ikke vurderes", "Rødt flag: tidligere kræftsygdom"),
    ],
)
def test_a_red_flag_feature_that_fails_gives_a_warning_could_not_be_evaluated_card(
    cds, cds_app, variant, label, rule_text
):
    FAILURES.reset()
    with failing(cds_app, "redFlagRf4"):
        body = call(cds, variant, "cancer")
    cards = body["cards"]
    failed = [c for c in cards if (c.get("extension") or {}).get(EVALUATION, {}).get("status") == "not-evaluated"]
    red = [c for c in failed if c["source"]["topic"]["code"].startswith("RF")]
    assert len(red) == 1, [c["summary"] for c in cards]
    card = red[0]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith(label)
    # names the rules and what to check by hand, in the variant's language only
    assert rule_text in card["detail"] and "RF4" in card["detail"]
    other = "Kunne ikke vurderes" if label.startswith("Kunde") else "Kunde inte bedömas"
    assert other not in card["detail"] and other not in card["summary"]
    evaluation = card["extension"][EVALUATION]
    assert "RF4" in evaluation["failedRules"] and evaluation["failedFeatures"] == ["redFlagRf4"]
    assert "suggestions" not in card  # nothing is proposed on a fact that could not be computed
    # the response as a whole says that it is incomplete, machine-readably
    assert body["extension"][EVALUATION]["status"] == "incomplete"
    assert "redFlagRf4" in body["extension"][EVALUATION]["failedFeatures"]
    # counted for metrics, by artifact and feature only
    counts = FAILURES.snapshot()
    assert counts["features"][("Library/lbp-case-features", "redFlagRf4")] >= 1
    assert counts["actions"][("PlanDefinition/lbp-red-flags", "red-flags-present")] >= 1


def test_a_rule_that_is_not_about_safety_that_fails_gives_an_info_card(cds, cds_app):
    with failing(cds_app, "screeningRecorded"):
        cards = call(cds, "se", "unknown")["cards"]
    failed = [c for c in cards if (c.get("extension") or {}).get(EVALUATION, {}).get("status") == "not-evaluated"]
    screening = [c for c in failed if c["source"]["topic"]["code"] == "YF4"]
    assert len(screening) == 1 and screening[0]["indicator"] == "info"


def test_the_failure_log_names_artifacts_and_features_never_patient_data(cds, cds_app, caplog):
    with caplog.at_level("WARNING"), failing(cds_app, "redFlagRf4"):
        call(cds, "skane", "cancer")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name in ("lbp.cds", "lbp.reasoning"))
    assert "Library/lbp-case-features redFlagRf4" in text
    assert "redFlagRf4" in text and "RF4" in text
    assert "cancer" not in text.replace("cancersjukdom", "")  # the patient id is not logged
    assert "C61" not in text  # nor a code of the record


def test_a_call_without_failures_is_not_marked_incomplete(cds):
    body = call(cds, "skane", "cancer")
    assert "extension" not in body
    assert all(EVALUATION not in (c.get("extension") or {}) for c in body["cards"])


@pytest.mark.parametrize(("variant", "words"), [("skane", "Bedömd på ofullständigt underlag"),
                                                ("midtjylland", "Vurderet på ufuldstændigt grundlag")])
def test_a_card_that_applies_despite_a_failed_input_says_its_evidence_is_incomplete(cds, cds_app, variant, words):
    with failing(cds_app, "redFlagRf4"):
        cards = call(cds, variant, "cancer")["cards"]
    incomplete = [c for c in cards if (c.get("extension") or {}).get(EVALUATION, {}).get("status") == "incomplete"]
    assert incomplete, [c["summary"] for c in cards]
    assert all(words in c["detail"] for c in incomplete)
    assert all(c["extension"][EVALUATION]["failedFeatures"] == ["redFlagRf4"] for c in incomplete)
