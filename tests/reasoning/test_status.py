"""Pathway status over the test artifacts: step, flags with evidence, risk, NRS, deadlines, what is missing."""

from __future__ import annotations

import pytest

from app.reasoning.status import StatusConventions, flag_types, pathway_status

from .conftest import TODAY, B, condition, load, medication, nrs, patient

PATHWAY = f"{B}/PlanDefinition/test-pathway"
CONVENTIONS = StatusConventions(
    step_system=f"{B}/CodeSystem/test-step",
    rules_system=f"{B}/CodeSystem/test-rules",
    flag_type_system=f"{B}/CodeSystem/test-flag-type",
    risk_system=f"{B}/CodeSystem/test-risk",
    pain_questionnaire=f"{B}/Questionnaire/test-score",
    pain_item="nrs",
)


def status(kb, record):
    return pathway_status(kb, PATHWAY, record, today=TODAY, conventions=CONVENTIONS)


def risk_observation(code: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": "risk1",
        "status": "final",
        "code": {"coding": [{"system": f"{B}/CodeSystem/test-observation", "code": "test-risk"}]},
        "valueCodeableConcept": {"coding": [{"system": f"{B}/CodeSystem/test-risk", "code": code}]},
        "effectiveDateTime": "2025-02-01",
    }


def test_flag_types_come_from_the_artifacts(kb):
    # Y1–Y2 are named by the flag-type CodeSystem but are not rules of the rules CodeSystem
    assert flag_types(kb, CONVENTIONS) == {"R1": "red"}
    rules = load("CodeSystem-test-rules")
    rules["concept"][1]["property"].append({"code": "flag-type", "valueCode": "yellow"})
    kb.add(rules)
    assert flag_types(kb, CONVENTIONS) == {"R2": "yellow"}  # the rules CodeSystem wins when it says


def test_a_red_flag_with_the_entries_it_came_from(kb):
    record = [
        patient("1960-06-01"),
        condition("c1", "M54.5", onset="2025-02-20"),
        condition("c2", "C50.9", onset="2015-01-01"),
        condition("c3", "J45"),
        medication("m1", "N02BE01"),
        nrs("o1", 6, "2025-02-21"),
    ]
    result = status(kb, record)
    assert result["step"]["code"] == "assessment" and result["step"]["because"] == "red-flag"
    [flag] = result["flags"]
    assert flag["rule"] == "R1" and flag["type"] == "red" and flag["display"] == "Red flag found"
    assert flag["features"] == ["red_flag"]
    # only the cancer diagnosis makes the flag; the other entries do not
    assert [e["reference"] for e in flag["evidence"]] == ["Condition/c2"]


def test_steroids_are_evidence_too(kb):
    record = [
        patient("1960-06-01"),
        condition("c1", "M54.5", onset="2025-02-20"),
        medication("m1", "H02AB06"),
        medication("m2", "N02BE01"),
    ]
    [flag] = status(kb, record)["flags"]
    assert [e["reference"] for e in flag["evidence"]] == ["MedicationStatement/m1"]


def test_no_flags_and_the_next_step(kb):
    record = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01"), nrs("o1", 6, "2025-01-02")]
    result = status(kb, record)
    assert result["flags"] == []
    assert result["step"]["code"] == "screening" and result["step"]["because"] == "long-pain"
    assert [s["code"] for s in result["steps"]] == ["assessment", "screening"]
    assert result["collect"] == [
        {"questionnaire": f"{B}/Questionnaire/test-score", "title": "Test score", "because": ["long-pain"]}
    ]


def test_screening_risk_and_nrs(kb):
    record = [
        patient("1960-06-01"),
        condition("c1", "M54.5", onset="2025-02-20"),
        risk_observation("high"),
        nrs("o1", 7, "2025-01-10"),
        nrs("o2", 4, "2025-02-25"),
        nrs("o3", 5, "2025-01-20"),
    ]
    result = status(kb, record)
    assert result["screening"]["risk"] == {
        "system": f"{B}/CodeSystem/test-risk",
        "code": "high",
        "display": "High risk",
    }
    assert result["screening"]["feature"] == "risk_category"
    assert [e["reference"] for e in result["screening"]["evidence"]] == ["Observation/risk1"]
    assert result["nrs"]["first"] == {"value": 7, "date": "2025-01-10", "reference": "Observation/o1"}
    assert result["nrs"]["latest"] == {"value": 4, "date": "2025-02-25", "reference": "Observation/o2"}
    assert result["nrs"]["count"] == 3


def test_deadlines_from_the_timing_of_actions(kb):
    started = {
        "resourceType": "CarePlan",
        "id": "cp1",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "instantiatesCanonical": [PATHWAY],
        "period": {"start": "2025-02-26"},
    }
    record = [
        patient("1960-06-01"),
        condition("c1", "M54.5", onset="2025-01-01"),
        nrs("o1", 6, "2025-01-02"),
        started,
    ]
    deadlines = {d["action"]: d for d in status(kb, record)["deadlines"]}
    milestone = deadlines["assessment-within-3-days"]
    assert (milestone["from"], milestone["fromSource"], milestone["due"], milestone["overdue"]) == (
        "2025-02-26",
        "CarePlan/cp1",
        "2025-03-01",
        False,
    )
    assert milestone["rules"] == ["T1"]
    recommendation = deadlines["long-pain"]
    assert (recommendation["from"], recommendation["due"]) == ("2025-03-01", "2025-03-15")


def test_an_overdue_milestone(kb):
    started = {
        "resourceType": "CarePlan",
        "id": "cp1",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "instantiatesCanonical": [f"{PATHWAY}|0.1.0"],
        "created": "2025-02-01",
    }
    deadlines = {d["action"]: d for d in status(kb, [patient(), started])["deadlines"]}
    assert deadlines["assessment-within-3-days"]["overdue"] is True


def test_what_is_missing_to_decide(kb):
    record = [patient(None), condition("c1", "M54.5", onset="2025-01-01")]
    result = status(kb, record)
    missing = {m["feature"]: m for m in result["missing"]}
    assert "age_years" in missing
    assert missing["age_years"]["description"] == "Age in whole years"
    assert missing["age_years"]["blocks"] == [{"action": "rules", "rules": []}]
    assert result["step"] is None or result["step"]["code"] == "screening"


@pytest.mark.parametrize("today", [TODAY])
def test_status_reports_the_pathway_and_date(kb, today):
    result = pathway_status(kb, PATHWAY, [patient()], today=today, conventions=CONVENTIONS)
    assert result["pathway"] == {"url": PATHWAY, "version": "0.1.0", "title": "Test pathway"}
    assert result["date"] == "2025-03-01"
    assert result["subject"] == {"reference": "Patient/p1"}
    assert result["issues"] == []
