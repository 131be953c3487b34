"""$populate of Region Midtjylland's standardised referral: CPR, diagnosis, the course and the vulnerability marker
come from the record; what the record does not tell is left for the clinician."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from app.reasoning.populate import populate
from app.reasoning.scoring import validate_response
from tests.reasoning.test_pathways import kb  # noqa: F401  (module fixture)

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 25)
SKS = "urn:oid:1.2.208.176.2.4"
OBS = "https://lbp-pathway.org/fhir/CodeSystem/lbp-observation"
RISK = "https://lbp-pathway.org/fhir/CodeSystem/lbp-risk-category"


def _record(risk: str | None) -> list[dict]:
    patient = {"resourceType": "Patient", "id": "dk-1", "birthDate": "1980-05-01",
               "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0105801234"}],
               "name": [{"family": "Jensen", "given": ["Mette"]}]}
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/dk-1"},
                 "code": {"coding": [{"system": SKS, "code": "DM545", "display": "Lændesmerter"}]},
                 "onsetDateTime": "2026-09-20", "recordedDate": "2026-09-25"}
    out = [patient, condition]
    if risk:
        out.append({"resourceType": "Observation", "id": "o1", "status": "final",
                    "subject": {"reference": "Patient/dk-1"}, "effectiveDateTime": "2026-09-25",
                    "code": {"coding": [{"system": OBS, "code": "sbt-risk"}]},
                    "valueCodeableConcept": {"coding": [{"system": RISK, "code": risk}]}})
    return out


def _filled(kb, record):  # noqa: F811
    q = json.loads((ROOT / "questionnaires" / "Questionnaire-referral-midtjylland.json").read_text(encoding="utf-8"))
    issues: list = []
    response = populate(q, record, subject="Patient/dk-1", today=TODAY, terminology=kb.terminology, issues=issues)
    assert [i.text for i in issues] == []
    assert [i.text for i in validate_response(q, response, terminology=kb.terminology) if i.is_error] == []
    out: dict[str, list] = {}

    def walk(items):
        for item in items or []:
            if "answer" in item:
                out[item["linkId"]] = item["answer"]
            walk(item.get("item"))

    walk(response.get("item"))
    return out


def test_cpr_diagnosis_course_and_high_risk_marker_are_filled_from_the_record(kb):  # noqa: F811
    filled = _filled(kb, _record("high"))
    assert filled["cpr"] == [{"valueString": "0105801234"}]
    assert filled["name"] == [{"valueString": "Mette Jensen"}]
    assert filled["diagnosis"] == [{"valueString": "DM545 Lændesmerter"}]
    assert filled["primary-sector-start"] == [{"valueDate": "2026-09-25"}]
    assert filled["vulnerable"] == [{"valueBoolean": True}]
    assert filled["stratification"][0]["valueCoding"]["code"] == "high"


def test_a_low_risk_is_no_answer_about_vulnerability(kb):  # noqa: F811
    # yellow flags are the clinician's judgement too: only a high STarT risk pre-fills the marker
    filled = _filled(kb, _record("low"))
    assert "vulnerable" not in filled
    assert filled["stratification"][0]["valueCoding"]["code"] == "low"
    assert "vulnerable" not in _filled(kb, _record(None)) and "stratification" not in _filled(kb, _record(None))
