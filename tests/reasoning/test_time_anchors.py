"""Time anchors: each pathway deadline counts from the record event its source names and a record event meets it
(T1 from the first contact, met by the recorded diagnosis; T2/T3 from the first contact; the BackUpp conference
from inclusion; T7 from the hospital referral), as the clinician page shows them."""
from __future__ import annotations

from datetime import timedelta

from app.reasoning.status import pathway_status
from tests.cds.patients import TODAY, Record, ago
from tests.reasoning.test_pathways import BASE, kb  # noqa: F401  (module fixture)

HANDOVER = "https://lbp-pathway.org/fhir/CodeSystem/lbp-handover"


def deadlines(kb, variant: str, record: Record) -> dict[str, dict]:  # noqa: F811
    status = pathway_status(kb, f"{BASE}/PlanDefinition/lbp-pathway-{variant}", record.resources, today=TODAY,
                            subject=f"Patient/{record.pid}")
    return {d["action"]: d for d in status.to_dict()["deadlines"]}


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def test_t1_counts_from_the_first_contact_and_the_recorded_diagnosis_meets_it(kb):  # noqa: F811
    record = Record("t1-met", 40).lbp(30).red_flags(days_ago=10).screening("low").nrs(5, 10)
    record.resources[1]["recordedDate"] = ago(9)
    t1 = deadlines(kb, "se", record)["medical-assessment-within-3-days"]
    assert (t1["from"], t1["due"], t1["metOn"], t1["overdue"]) == (_day(10), _day(7), _day(9), False)


def test_t1_is_overdue_only_when_no_assessment_is_recorded(kb):  # noqa: F811
    record = Record("t1-open", 40).lbp(30).red_flags(days_ago=10).screening("low").nrs(5, 10)
    t1 = deadlines(kb, "se", record)["medical-assessment-within-3-days"]
    assert t1["overdue"] is True and "metOn" not in t1 and t1["from"] == _day(10)
    fresh = Record("t1-fresh", 40).lbp(30).red_flags(days_ago=1)
    assert deadlines(kb, "se", fresh)["medical-assessment-within-3-days"]["overdue"] is False


def test_physiotherapy_within_two_weeks_counts_from_the_first_contact_not_from_today(kb):  # noqa: F811
    record = Record("t2", 40).lbp(30).red_flags(days_ago=12).screening("low").nrs(5, 12)
    t2 = deadlines(kb, "skane", record)["physiotherapist-first-contact"]
    assert (t2["from"], t2["due"]) == (_day(12), _day(-2))


def test_early_follow_up_is_met_by_a_later_contact(kb):  # noqa: F811
    record = Record("t3", 40).lbp(30).red_flags(days_ago=10).screening("low").nrs(5, 10).nrs(4, 3)
    t3 = deadlines(kb, "skane", record)["early-follow-up"]
    assert (t3["from"], t3["metOn"], t3["overdue"]) == (_day(10), _day(3), False)


def test_t7_counts_from_the_hospital_referral(kb):  # noqa: F811
    record = Record("t7", 40).lbp(200).red_flags(days_ago=150).screening("low")
    assert "hospital-effort-up-to-12-weeks" not in deadlines(kb, "midtjylland", record)
    record.resources.append({"resourceType": "ServiceRequest", "id": "t7-hospital", "status": "active",
                             "intent": "order", "subject": record.subject(), "authoredOn": ago(90),
                             "code": {"coding": [{"system": HANDOVER, "code": "hospital-back-centre"}]}})
    t7 = deadlines(kb, "midtjylland", record)["hospital-effort-up-to-12-weeks"]
    assert (t7["from"], t7["due"], t7["overdue"]) == (_day(90), _day(6), True)


def test_backupp_conference_counts_from_inclusion(kb):  # noqa: F811
    record = Record("t6", 45).lbp(60).red_flags(days_ago=25).screening("low")
    record.resources.append({"resourceType": "QuestionnaireResponse", "id": "t6-intake",
                             "questionnaire": f"{BASE}/Questionnaire/lbp-intake", "status": "completed",
                             "subject": record.subject(), "authored": ago(25),
                             "item": [{"linkId": "sick-leave", "answer": [{"valueBoolean": False}]}]})
    t6 = deadlines(kb, "skane", record)["team-conference-day-28"]
    assert (t6["from"], t6["due"]) == (_day(25), _day(-3))


def _orthopaedic_referral(record: Record, days_ago: int) -> dict:
    referral = {"resourceType": "ServiceRequest", "id": f"{record.pid}-ortho", "status": "active", "intent": "order",
                "subject": record.subject(), "authoredOn": ago(days_ago), "priority": "routine",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "183545006"}]}}
    record.resources.append(referral)
    return referral


def _encounter(record: Record, days_ago: int, **more) -> None:
    record.resources.append({"resourceType": "Encounter", "id": f"{record.pid}-enc-{days_ago}", "status": "finished",
                             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                             "subject": record.subject(), "period": {"start": ago(days_ago)}, **more})


def test_t4_orthopaedic_appointment_counts_from_the_referral_and_is_overdue_while_not_seen(kb):  # noqa: F811
    record = Record("t4-waiting", 50).lbp(200).red_flags(days_ago=150).screening("low")
    assert "orthopaedic-appointment-within-90-days" not in deadlines(kb, "skane", record)
    _orthopaedic_referral(record, 100)
    t4 = deadlines(kb, "skane", record)["orthopaedic-appointment-within-90-days"]
    assert (t4["from"], t4["due"], t4["overdue"]) == (_day(100), _day(10), True)
    assert "orthopaedic-appointment-within-90-days" not in deadlines(kb, "se", record)


def test_t4_is_met_by_the_orthopaedic_visit(kb):  # noqa: F811
    based_on = Record("t4-seen", 50).lbp(200).red_flags(days_ago=150).screening("low")
    referral = _orthopaedic_referral(based_on, 100)
    _encounter(based_on, 40, basedOn=[{"reference": f"ServiceRequest/{referral['id']}"}])
    t4 = deadlines(kb, "skane", based_on)["orthopaedic-appointment-within-90-days"]
    assert (t4["metOn"], t4["overdue"]) == (_day(40), False)
    # an orthopaedic visit the journal does not link to the referral meets it too; a visit before the referral does not
    by_service = Record("t4-service", 50).lbp(200).red_flags(days_ago=150).screening("low")
    _orthopaedic_referral(by_service, 100)
    orthopaedics = [{"coding": [{"system": "http://snomed.info/sct", "code": "394801008"}]}]
    _encounter(by_service, 120, serviceType=orthopaedics[0])
    assert "metOn" not in deadlines(kb, "skane", by_service)["orthopaedic-appointment-within-90-days"]
    _encounter(by_service, 30, serviceType=orthopaedics[0])
    assert deadlines(kb, "skane", by_service)["orthopaedic-appointment-within-90-days"]["metOn"] == _day(30)
