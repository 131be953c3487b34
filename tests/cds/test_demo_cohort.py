"""The demo cohort's records give CDS cards: a red-flag patient of the demo gets the RF4 card, in its variant."""
from __future__ import annotations

import pytest

from app.measures.demo import demo_cohort
from tests.cds.conftest import PREFETCH_TYPES, TODAY
from tests.cds.validator import rules_of, validate_response


def _prefetch(resources):
    patient = resources[0]
    out = {"patient": patient}
    for t in PREFETCH_TYPES:
        out[t[0].lower() + t[1:]] = {"resourceType": "Bundle", "type": "searchset",
                                      "entry": [{"resource": r} for r in resources[1:] if r["resourceType"] == t]}
    return out


def _red_flag_patient(variant):
    resources = demo_cohort(variant, 200, 1)
    by_patient = {}
    for r in resources:
        if r["resourceType"] == "Patient":
            by_patient[r["id"]] = [r]
        elif r["resourceType"] != "Organization":
            by_patient[r["subject"]["reference"].removeprefix("Patient/")].append(r)
    for record in by_patient.values():
        conditions = [r for r in record if r["resourceType"] == "Condition"]
        visit = min(c["recordedDate"] for c in conditions)
        if visit <= TODAY.isoformat() and any(c["code"]["coding"][0]["code"].lstrip("D").startswith("C")
                                              for c in conditions):
            return record
    raise AssertionError("no red-flag patient in the demo cohort")


@pytest.mark.parametrize(("variant", "language"), [("skane", "sv"), ("midtjylland", "da")])
def test_demo_red_flag_patient_gets_the_previous_cancer_card(cds, variant, language):
    record = _red_flag_patient(variant)
    body = {"hook": "patient-view", "hookInstance": "5b2b6e4c-1a3f-4f8e-9f5e-0d3c2a1b4c5d",
            "context": {"patientId": record[0]["id"], "userId": "Practitioner/dr-1"}, "prefetch": _prefetch(record)}
    r = cds.post(f"/cds-services/lbp-patient-view-{variant}", body)
    assert r.status_code == 200, r.get_json()
    cards = validate_response(r.get_json())
    assert rules_of(cards).get("RF4") == "warning"
