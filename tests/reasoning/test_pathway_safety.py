"""Safety rules over the project's real artifacts: acute signs and red flags in every variant, Danish titles for
Midtjylland, and the Skåne physiotherapy/follow-up rules that must not apply with an acute sign."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from app.reasoning.apply import apply_plan_definition
from tests.reasoning.test_pathways import (
    BASE,
    PATIENTS,
    TODAY,
    applied,
    kb,  # noqa: F401  (module fixture)
    rule_codes,
)

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "patients"
REFERENCE_TODAY = date(2026, 11, 25)
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"

def reference_record(name: str) -> tuple[str, list[dict]]:
    bundle = json.loads((REFERENCE / f"{name}.json").read_text(encoding="utf-8"))
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return f"Patient/{patient['id']}", resources


def apply_reference(kb, variant: str, name: str) -> tuple[dict, list]:  # noqa: F811
    subject, record = reference_record(name)
    return apply_plan_definition(
        kb, f"{BASE}/PlanDefinition/lbp-pathway-{variant}", subject=subject, record=record, today=REFERENCE_TODAY
    )


@pytest.mark.parametrize("variant", ["se", "skane", "midtjylland"])
def test_reference_acute_sign_patient_gets_a_stat_ra1_card(kb, variant):  # noqa: F811
    care_plan, issues = apply_reference(kb, variant, "acute-sign")
    assert [i.text for i in issues if i.is_error] == []
    acute = [a for a in applied(care_plan).values() if "RA1" in rule_codes(a) and a["priority"] == "stat"]
    assert acute, sorted(applied(care_plan))
    referral = next(a for a in acute[0].get("action", []) if a.get("resource"))
    request = next(r for r in care_plan["contained"] if f"#{r['id']}" == referral["resource"]["reference"])
    assert request["resourceType"] == "ServiceRequest"


@pytest.mark.parametrize("variant", ["se", "midtjylland"])
def test_acute_sign_answered_in_the_questionnaire_gives_a_stat_card(kb, variant):  # noqa: F811
    care_plan, _ = apply_plan_definition(
        kb,
        f"{BASE}/PlanDefinition/lbp-pathway-{variant}",
        subject="Patient/p1",
        record=PATIENTS["acute-sign"],
        today=TODAY,
    )
    assert [a for a in applied(care_plan).values() if "RA1" in rule_codes(a) and a["priority"] == "stat"]


def test_midtjylland_red_flag_gives_an_urgent_card(kb):  # noqa: F811
    care_plan, _ = apply_plan_definition(
        kb, f"{BASE}/PlanDefinition/lbp-pathway-midtjylland", subject="Patient/p1", record=PATIENTS["red-flag"],
        today=TODAY,
    )
    assert [a for a in applied(care_plan).values() if "RF4" in rule_codes(a) and a["priority"] == "urgent"]


def test_no_flags_means_no_urgent_card_in_midtjylland(kb):  # noqa: F811
    care_plan, _ = apply_plan_definition(
        kb, f"{BASE}/PlanDefinition/lbp-pathway-midtjylland", subject="Patient/p1", record=PATIENTS["no-flags"],
        today=TODAY,
    )
    assert not [a for a in applied(care_plan).values() if a["priority"] in ("urgent", "asap", "stat")]


def _danish_title(resource: dict, action: dict) -> bool:
    if not action.get("title"):
        return False
    if resource.get("language") == "da":
        return True
    for ext in (action.get("_title") or {}).get("extension", []):
        parts = {e["url"]: e for e in ext.get("extension", [])}
        if ext.get("url") == TRANSLATION and parts.get("lang", {}).get("valueCode") == "da":
            return bool(parts.get("content", {}).get("valueString"))
    return False


def test_every_action_reachable_from_midtjylland_has_a_danish_title(kb):  # noqa: F811
    missing: list[str] = []
    seen: set[str] = set()

    def visit(url: str) -> None:
        if url in seen:
            return
        seen.add(url)
        resource = kb.resolve(url, "PlanDefinition")
        if resource is None:
            return

        def walk(actions):
            for action in actions:
                if not _danish_title(resource, action):
                    missing.append(f"{resource['id']}#{action.get('id')}")
                if action.get("definitionCanonical", "").startswith(f"{BASE}/PlanDefinition/"):
                    visit(action["definitionCanonical"])
                walk(action.get("action", []))

        walk(resource.get("action", []))

    visit(f"{BASE}/PlanDefinition/lbp-pathway-midtjylland")
    assert missing == []
    assert f"{BASE}/PlanDefinition/lbp-acute-referral" in seen and f"{BASE}/PlanDefinition/lbp-red-flags" in seen


@pytest.mark.parametrize("variant", ["se", "midtjylland"])
def test_safety_net_actions_are_marked_as_assumptions(kb, variant):  # noqa: F811
    pathway = kb.resolve(f"{BASE}/PlanDefinition/lbp-pathway-{variant}", "PlanDefinition")
    action = next(a for a in pathway["action"] if a["id"] == "lbp-acute-referral")
    assert any(e["url"] == f"{BASE}/StructureDefinition/assumption" for e in action.get("extension", []))


def _skane(kb, record):  # noqa: F811
    care_plan, issues = apply_plan_definition(
        kb, f"{BASE}/PlanDefinition/lbp-pathway-skane", subject="Patient/p1", record=record, today=TODAY
    )
    assert [i.text for i in issues if i.is_error] == []
    return applied(care_plan)


def test_physiotherapy_first_contact_and_early_follow_up_not_with_an_acute_sign(kb):  # noqa: F811
    found = _skane(kb, PATIENTS["acute-sign"])
    assert "physiotherapist-first-contact" not in found
    assert "early-follow-up" not in found


def test_physiotherapy_first_contact_and_early_follow_up_without_acute_signs(kb):  # noqa: F811
    found = _skane(kb, PATIENTS["no-flags"])
    assert "physiotherapist-first-contact" in found
    assert "early-follow-up" in found


def test_unknown_acute_signs_keep_early_follow_up(kb):  # noqa: F811
    # the red-flag form without RA1–RA4: acute signs unknown (absent is not negative), so the rule still applies
    record = [dict(r) for r in PATIENTS["no-flags"]]
    form = next(r for r in record if r["resourceType"] == "QuestionnaireResponse")
    form["item"] = [i for i in form["item"] if not i["linkId"].startswith("RA")]
    found = _skane(kb, record)
    assert "early-follow-up" in found


def test_flag_types_come_from_the_rules_codesystem_property(kb):  # noqa: F811
    from app.reasoning.status import flag_types

    rules = kb.resolve(f"{BASE}/CodeSystem/lbp-rules", "CodeSystem")
    assert any(p["code"] == "flag-type" and p["type"] == "code" for p in rules["property"])
    expected = {
        **{f"RF{i}": "red" for i in range(1, 10)},
        **{f"YF{i}": "yellow" for i in range(1, 4)},
        "BF1": "blue",
        **{f"RA{i}": "acute" for i in range(1, 5)},
    }
    declared = {
        c["code"]: p["valueCode"]
        for c in rules["concept"]
        for p in c.get("property", [])
        if p["code"] == "flag-type"
    }
    assert declared == expected
    assert flag_types(kb) == expected


def test_team_conference_is_anchored_at_day_28_of_backupp_inclusion(kb):  # noqa: F811
    # BackUpp counts from inclusion ("dag 1"), not from pain onset: the first contact is the intake 25 days ago
    from datetime import timedelta

    from app.validation import validate_resource

    intake = {
        "resourceType": "QuestionnaireResponse",
        "id": "intake",
        "questionnaire": f"{BASE}/Questionnaire/lbp-intake",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "authored": (TODAY - timedelta(days=25)).isoformat(),
        "item": [{"linkId": "sick-leave", "answer": [{"valueBoolean": False}]}],
    }
    # onset 30 days ago; the pain rating is left out so that the intake is the first contact
    record = [r for r in PATIENTS["high-risk"] if r["resourceType"] != "Observation"
                                       or r["code"]["coding"][0]["code"] != "72514-3"] + [intake]
    care_plan, issues = apply_plan_definition(
        kb, f"{BASE}/PlanDefinition/lbp-pathway-skane", subject="Patient/p1", record=record, today=TODAY
    )
    assert [i.text for i in issues] == []
    assert "team-conference-day-28" in applied(care_plan)
    [request] = [
        r for r in care_plan["contained"]
        if r.get("instantiatesCanonical", [""])[0].startswith(f"{BASE}/ActivityDefinition/team-conference")
    ]
    assert request["occurrenceTiming"]["event"] == [(TODAY - timedelta(days=25) + timedelta(days=28)).isoformat()]
    # the request names its participants as a CareTeam beside it; standing alone (as a card sends it) it carries it
    team = [r for r in care_plan["contained"] if {"reference": f"#{r['id']}"} in request.get("performer", [])]
    assert [i.text for i in validate_resource({**request, "contained": team}) if i.is_error] == []


def test_no_team_conference_when_inclusion_was_only_days_ago(kb):  # noqa: F811
    # onset 30 days ago, but included (first contact) 2 days ago: day 28 of BackUpp is weeks away
    from datetime import timedelta

    intake = {
        "resourceType": "QuestionnaireResponse", "id": "intake", "questionnaire": f"{BASE}/Questionnaire/lbp-intake",
        "status": "completed", "subject": {"reference": "Patient/p1"},
        "authored": (TODAY - timedelta(days=2)).isoformat(),
        "item": [{"linkId": "sick-leave", "answer": [{"valueBoolean": False}]}],
    }
    found = _skane(kb, [r for r in PATIENTS["high-risk"] if r["resourceType"] != "Observation"
                                       or r["code"]["coding"][0]["code"] != "72514-3"] + [intake])
    assert "team-conference-day-28" not in found
