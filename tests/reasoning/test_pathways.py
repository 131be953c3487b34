"""The engine over the project's real artifacts (plandefinitions/, questionnaires/, valuesets/): load, $apply per
variant for typical patients, the scoring fixtures, and agreement with fhirpathpy on the case-feature Library.

Skipped when the artifact folders are empty (the unit tests use tests/data/reasoning only).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import FP_DateTime
from fhirpathpy.models import models

from app.reasoning.apply import apply_plan_definition
from app.reasoning.features import evaluate_features, patient_context
from app.reasoning.knowledge import KnowledgeBase
from app.reasoning.populate import populate
from app.reasoning.scoring import complete_response, extract_observations, validate_response
from app.reasoning.status import pathway_status

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = [ROOT / "valuesets", ROOT / "questionnaires", ROOT / "plandefinitions"]
FILES = sorted(p for folder in FOLDERS if folder.is_dir() for p in folder.glob("*.json"))
BASE = "https://lbp-pathway.org/fhir"
LIBRARY = f"{BASE}/Library/lbp-case-features"
TODAY = date(2025, 3, 1)
ICD = "http://hl7.org/fhir/sid/icd-10"
KVA = "urn:oid:1.2.752.116.1.3.2.1.4"

@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase(json.loads(p.read_text(encoding="utf-8")) for p in FILES)


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def patient(birth: str = "1980-04-01") -> dict:
    return {"resourceType": "Patient", "id": "p1", "birthDate": birth, "gender": "male"}


def lbp(onset_days: int) -> dict:
    return {
        "resourceType": "Condition",
        "id": "lbp",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": ICD, "code": "M54.5"}]},
        "onsetDateTime": days_ago(onset_days),
    }


def diagnosis(id_: str, code: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": id_,
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": ICD, "code": code}]},
        "onsetDateTime": days_ago(2000),
    }


def red_flag_answers(**present: bool) -> dict:
    items = [
        {"linkId": f"RF{i}", "answer": [{"valueBoolean": present.get(f"RF{i}", False)}]} for i in range(1, 10)
    ]
    items += [
        {"linkId": f"RA{i}", "answer": [{"valueBoolean": present.get(f"RA{i}", False)}]} for i in range(1, 5)
    ]
    return {
        "resourceType": "QuestionnaireResponse",
        "id": "rf",
        "questionnaire": f"{BASE}/Questionnaire/lbp-red-flags",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "authored": days_ago(1),
        "item": items,
    }


def pain(id_: str, value: int, days: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "valueInteger": value,
        "effectiveDateTime": days_ago(days),
    }


def screening(risk: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": "sbt",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": f"{BASE}/CodeSystem/lbp-observation", "code": "sbt-risk"}]},
        "valueCodeableConcept": {
            "coding": [{"system": f"{BASE}/CodeSystem/lbp-risk-category", "code": risk}]
        },
        "effectiveDateTime": days_ago(20),
    }


def physiotherapy(days: int) -> dict:
    return {
        "resourceType": "Procedure",
        "id": "pt",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": KVA, "code": "GB021"}]},
        "performedDateTime": days_ago(days),
    }


PATIENTS = {
    "no-flags": [patient(), lbp(10), red_flag_answers(), pain("n1", 5, 9), screening("low")],
    "red-flag": [
        patient(),
        lbp(30),
        red_flag_answers(RF4=True),
        diagnosis("cancer", "C50.9"),
        pain("n1", 5, 9),
        screening("low"),
    ],
    "high-risk": [patient(), lbp(30), red_flag_answers(), pain("n1", 6, 25), screening("high")],
    "no-improvement": [
        patient(),
        lbp(70),
        red_flag_answers(),
        physiotherapy(60),
        pain("n1", 7, 62),
        pain("n2", 7, 2),
        screening("medium"),
    ],
    "acute-sign": [
        patient(),
        lbp(5),
        red_flag_answers(RA1=True),
        diagnosis("ces", "G83.4"),
        pain("n1", 8, 1),
    ],
}


def apply(kb, variant: str, record: list, **kwargs) -> tuple[dict, list]:
    return apply_plan_definition(
        kb,
        f"{BASE}/PlanDefinition/lbp-pathway-{variant}",
        subject="Patient/p1",
        record=record,
        today=TODAY,
        **kwargs,
    )


def applied(care_plan: dict) -> dict[str, dict]:
    """Applicable recommendations (actions with a priority) by id."""
    group = care_plan["contained"][0]
    found: dict[str, dict] = {}

    def walk(actions):
        for action in actions:
            if action.get("priority"):
                found[action["id"]] = action
            walk(action.get("action", []))

    walk(group.get("action", []))
    return found


def rule_codes(action: dict) -> set[str]:
    return {
        c["code"]
        for cc in action.get("code", [])
        for c in cc["coding"]
        if c["system"] == f"{BASE}/CodeSystem/lbp-rules"
    }


def rules(actions: dict[str, dict]) -> set[str]:
    return {code for action in actions.values() for code in rule_codes(action)}


def test_every_artifact_loads_and_cross_references_resolve(kb):
    assert kb.resources()
    assert [i.text for i in kb.check()] == []


@pytest.mark.parametrize("variant", ["se", "skane", "midtjylland"])
@pytest.mark.parametrize("case", list(PATIENTS))
def test_apply_runs_without_issues_for_every_variant_and_patient(kb, variant, case):
    care_plan, issues = apply(kb, variant, PATIENTS[case])
    assert [i.text for i in issues if i.is_error] == []
    assert care_plan["contained"][0]["resourceType"] == "RequestGroup"


@pytest.mark.parametrize("variant", ["se", "skane"])
def test_no_flags_means_no_urgent_card(kb, variant):
    found = applied(apply(kb, variant, PATIENTS["no-flags"])[0])
    assert not [a for a in found.values() if a["priority"] in ("urgent", "asap", "stat")]


@pytest.mark.parametrize("variant", ["se", "skane"])
def test_a_red_flag_gives_an_urgent_card_naming_it(kb, variant):
    found = applied(apply(kb, variant, PATIENTS["red-flag"])[0])
    red = [a for a in found.values() if "RF4" in rule_codes(a) and a["priority"] == "urgent"]
    assert red, sorted(found)
    assert "RF4" in red[0]["description"]


@pytest.mark.parametrize("variant, rule", [("se", "YF5"), ("skane", "YF5"), ("midtjylland", "YF6")])
def test_high_screening_risk(kb, variant, rule):
    assert rule in rules(applied(apply(kb, variant, PATIENTS["high-risk"])[0]))


@pytest.mark.parametrize("variant, rule", [("se", "R0"), ("skane", "I2"), ("midtjylland", "RD1")])
def test_eight_weeks_of_treatment_without_improvement(kb, variant, rule):
    assert rule in rules(applied(apply(kb, variant, PATIENTS["no-improvement"])[0]))


def test_an_acute_sign_gives_an_immediate_referral_in_skane(kb):
    care_plan, _ = apply(kb, "skane", PATIENTS["acute-sign"])
    found = applied(care_plan)
    acute = [a for a in found.values() if "RA1" in rule_codes(a)]
    assert acute and acute[0]["priority"] == "stat"
    referral = next(a for a in acute[0].get("action", []) if a.get("resource"))
    request = next(r for r in care_plan["contained"] if f"#{r['id']}" == referral["resource"]["reference"])
    assert request["resourceType"] == "ServiceRequest"


def test_order_select_on_an_mri_without_indication(kb):
    mri = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "24968-0"}]},
    }
    care_plan, issues = apply(
        kb,
        "se",
        PATIENTS["no-flags"],
        trigger="order-select",
        draft_orders=[mri],
        selections=["ServiceRequest/sr1"],
    )
    found = applied(care_plan)
    assert "I0" in rules(found)
    removals = [
        a
        for a in _all_actions(care_plan)
        if (a.get("type") or {}).get("coding", [{}])[0].get("code") == "remove"
    ]
    assert removals and removals[0]["resource"] == {"reference": "ServiceRequest/sr1"}


def _all_actions(care_plan: dict) -> list[dict]:
    out: list[dict] = []

    def walk(actions):
        for action in actions:
            out.append(action)
            walk(action.get("action", []))

    walk(care_plan["contained"][0].get("action", []))
    return out


def test_pathway_status_for_a_red_flag(kb):
    result = pathway_status(kb, f"{BASE}/PlanDefinition/lbp-pathway-skane", PATIENTS["red-flag"], today=TODAY)
    flags = {f["rule"]: f for f in result["flags"]}
    assert flags["RF4"]["type"] == "red"
    assert {e["reference"] for e in flags["RF4"]["evidence"]} == {
        "Condition/cancer",
        "QuestionnaireResponse/rf",
    }
    assert result["screening"]["risk"]["code"] == "low"
    assert result["nrs"]["latest"]["value"] == 5


# -- scoring fixtures (tests/data/scoring/*.json: {questionnaire, response, expected}) -------------------

SCORING = sorted((ROOT / "tests" / "data" / "scoring").glob("*.json"))


def _plain(value):
    if isinstance(value, dict) and "code" in value:
        return value["code"]
    if isinstance(value, Decimal):
        return float(value)
    return value


@pytest.mark.parametrize("case", SCORING, ids=[p.stem for p in SCORING])
def test_scoring_fixtures(kb, case):
    fixture = json.loads(case.read_text(encoding="utf-8"))
    reference = fixture["questionnaire"]
    questionnaire = (
        reference
        if isinstance(reference, dict)
        else kb.resolve(
            reference if "/" in reference else f"{BASE}/Questionnaire/{reference}", "Questionnaire"
        )
    )
    assert questionnaire is not None, reference
    completed = complete_response(questionnaire, fixture["response"], terminology=kb.terminology)
    answers = {}

    def walk(items):
        for item in items or []:
            values = [v for a in item.get("answer", []) for k, v in a.items() if k.startswith("value")]
            answers[item["linkId"]] = _plain(values[0]) if values else None
            walk(item.get("item"))
            for a in item.get("answer", []):
                walk(a.get("item"))

    walk(completed.get("item"))
    assert {link: answers.get(link) for link in fixture["expected"]} == fixture["expected"]
    if fixture["response"].get("status") == "completed":
        errors = [
            i.text
            for i in validate_response(questionnaire, fixture["response"], terminology=kb.terminology)
            if i.is_error
        ]
        expected_incomplete = any(v is None for v in fixture["expected"].values())
        assert bool(errors) == expected_incomplete, errors
        observations = extract_observations(questionnaire, fixture["response"], terminology=kb.terminology)
        assert all(o["status"] == "final" for o in observations)


# -- the engine agrees with fhirpathpy on the real case features ---------------------------------------


@pytest.mark.parametrize("case", list(PATIENTS))
def test_case_features_match_fhirpathpy(kb, case):
    record = PATIENTS[case]
    context = patient_context(record, today=TODAY, terminology=kb.terminology)
    ours = evaluate_features(kb, LIBRARY, context)
    assert ours.issues == []
    terminology = kb.terminology

    def member_of(inputs, url):
        return [terminology.member_of(getattr(i, "data", i), url) for i in inputs]

    options = {"userInvocationTable": {"memberOf": {"fn": member_of, "arity": {1: ["String"]}}}}
    env = {
        "patient": context.patient,
        "today": FP_DateTime(TODAY.isoformat()),
        "draftOrders": [],
        "selections": [],
    }
    differences = []
    for feature in ours.library.features:
        expected = fhirpathpy.evaluate(
            context.bundle, feature.expression.text, dict(env), models["r4"], options
        )
        env[feature.name] = expected
        normalised = [
            str(v) if isinstance(v, FP_DateTime) else (float(v) if isinstance(v, Decimal) else v)
            for v in expected
        ]
        if ours.value(feature.name) != normalised:
            differences.append((feature.name, ours.value(feature.name), normalised))
    assert differences == []


@pytest.mark.parametrize(
    "questionnaire", [p for p in FILES if p.name.startswith("Questionnaire-")], ids=lambda p: p.stem
)
def test_population_runs_over_every_questionnaire(kb, questionnaire):
    resource = json.loads(questionnaire.read_text(encoding="utf-8"))
    issues: list = []
    response = populate(
        resource,
        PATIENTS["red-flag"],
        subject="Patient/p1",
        today=TODAY,
        terminology=kb.terminology,
        issues=issues,
    )
    assert issues == []
    assert response["status"] == "in-progress"
    assert [i for i in validate_response(resource, response, terminology=kb.terminology) if i.is_error] == []
