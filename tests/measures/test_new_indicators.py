"""SE-1 (time on sick leave), SE-2 (efficiency) and DK-8 (Midtjylland monitoring) on cohorts worked out by hand."""
from __future__ import annotations

from datetime import date

import pytest

from app.measures import engine
from tests.measures.conftest import AARHUS, OBS, SCT, SKS, Rec, counts, evaluate, measure, score

HANDOVER = "https://lbp-pathway.org/fhir/CodeSystem/lbp-handover"


def run(kb, mid, recs, **kw):
    reports, _ = evaluate(kb, [mid], recs, **kw)
    return reports[mid][1]


def _certificate(r, start, end=None, icd="M54.5"):
    period = {"start": start} | ({"end": end} if end else {})
    return r.add("Observation", status="final", code={"coding": [{"system": OBS, "code": "sick-leave"}]},
                 effectivePeriod=period,
                 valueCodeableConcept={"coding": [{"system": "urn:oid:1.2.752.116.1.1.1.1.3", "code": icd}]})


def test_se1_mean_days_on_sick_leave_over_the_patients_with_a_certificate(kb):
    recs = [
        # 1-14 March and its extension 15-28 March: 28 days
        _certificate(_certificate(Rec("a"), "2026-03-01", "2026-03-14"), "2026-03-15", "2026-03-28"),
        # 10 days, another diagnosis: time on sick leave is not restricted to M54.4/M54.5
        _certificate(Rec("b"), "2026-03-01", "2026-03-10", icd="M51.1"),
        # still running on 31 December: counted from 1 December to the day the record is read, 31 days
        _certificate(Rec("c", visit="2026-11-20"), "2026-12-01"),
        # a certificate that ended before this episode's new visit belongs to an earlier episode
        _certificate(Rec("d", visit="2026-06-01"), "2026-01-10", "2026-01-20"),
        Rec("e").intake("2026-03-01", sick_leave=True),  # the intake says whether, not how long
    ]
    report = run(kb, "se1-sick-leave-days", recs)
    assert counts(report) == {"initial-population": 5, "measure-population": 3}
    assert score(report) == pytest.approx((28 + 10 + 31) / 3)


def test_se1_applies_to_the_swedish_variants_only(kb):
    assert "se1-sick-leave-days" in {m["id"] for m in engine.measures_for_variant(kb, "se")}
    assert "se1-sick-leave-days" in {m["id"] for m in engine.measures_for_variant(kb, "skane")}
    assert "se1-sick-leave-days" not in {m["id"] for m in engine.measures_for_variant(kb, "midtjylland")}


def test_se2_efficiency_is_the_imaging_and_opioid_measures_and_they_say_so():
    for mid in ("i0-imaging-with-indication", "m3-opioid-orders"):
        m = measure(mid)
        cited = [ra for ra in m["relatedArtifact"] if ra.get("label") == "SE-2"]
        assert cited and "effektivitet i vården" in cited[0]["citation"], mid
        assert "SE-2" in m["description"], mid


def _dk(pid, visit, referral_day, *, code=(HANDOVER, "hospital-back-centre"), priority="routine", **kw):
    r = Rec(pid, visit=visit, address=AARHUS, code=(SKS, "DM545"), **kw)
    return r.order(code[0], code[1], referral_day, priority=priority)


def test_dk8_share_of_non_urgent_hospital_referrals_before_eight_weeks(kb):
    recs = [
        _dk("a", "2026-03-01", "2026-03-20"),  # 19 days in the primary sector
        _dk("b", "2026-03-01", "2026-04-26"),  # day 56: eight weeks done
        _dk("c", "2026-03-01", "2026-04-25"),  # day 55: one day short
        _dk("d", "2026-03-01", "2026-03-10", code=(SCT, "183545006")),  # orthopaedics is a hospital specialty too
        _dk("e", "2026-03-01", "2026-03-05", priority="urgent"),  # acute: not a non-urgent referral
        _dk("f", "2026-03-01", "2026-03-05").red_flags("2026-03-01", RA1=True),  # acute sign: excluded
        Rec("g", visit="2026-03-01", address=AARHUS, code=(SKS, "DM545")),  # no referral
    ]
    report = run(kb, "dk8-hospital-referral-before-eight-weeks", recs)
    assert counts(report) == {"initial-population": 5, "denominator": 5, "denominator-exclusion": 1, "numerator": 3}
    assert score(report) == 0.75


def test_dk8_stratification_share_of_new_courses(kb):
    risk = {"coding": [{"system": "https://lbp-pathway.org/fhir/CodeSystem/lbp-risk-category", "code": "high"}]}
    recs = [
        Rec("a", address=AARHUS, code=(SKS, "DM545")).obs(OBS, "sbt-risk", "2026-03-01", valueCodeableConcept=risk),
        Rec("b", address=AARHUS, code=(SKS, "DM545")),
        Rec("c", address=AARHUS, code=(SKS, "DM544")),
    ]
    report = run(kb, "dk8-stratification-recorded", recs)
    assert counts(report) == {"initial-population": 3, "denominator": 3, "numerator": 1}
    assert score(report) == pytest.approx(1 / 3)


def test_midtjylland_report_lists_the_danish_measures_and_no_swedish_one(kb):
    ids = {m["id"] for m in engine.measures_for_variant(kb, "midtjylland")}
    assert ids == {"dk8-hospital-referral-before-eight-weeks", "dk8-stratification-recorded"}
    assert "dk8-hospital-referral-before-eight-weeks" not in {m["id"] for m in engine.measures_for_variant(kb, "se")}


def test_dk8_patient_in_sweden_is_not_in_the_danish_report(kb):
    recs = [_dk("a", "2026-03-01", "2026-03-20"), Rec("s").order(HANDOVER, "hospital-back-centre", "2026-03-20")]
    reports, _ = evaluate(kb, ["dk8-hospital-referral-before-eight-weeks"], recs, variant="midtjylland",
                          as_of=date(2026, 12, 31))
    assert reports["dk8-hospital-referral-before-eight-weeks"][0].subjects == ["a"]


def _vas(r, first, last):
    return r.obs(OBS, "eq-vas", "2026-03-01", valueInteger=first).obs(OBS, "eq-vas", "2026-06-01", valueInteger=last)


def test_q9c_mean_change_in_eq_vas_health_over_the_patients_measured_twice(kb):
    # BackUpp: "VAS Hälsa ökade från m 53" – the mean rise from the first to the latest EQ VAS
    recs = [_vas(Rec("a"), 50, 80), _vas(Rec("b"), 60, 50), Rec("c").obs(OBS, "eq-vas", "2026-03-01", valueInteger=40)]
    report = run(kb, "q9-eq-vas-change", recs)
    assert counts(report) == {"initial-population": 3, "measure-population": 2}
    assert score(report) == 10.0


def test_q9e_influence_on_the_treatment_is_a_share_without_a_target(kb):
    def asked(r, answer):
        return r.obs(OBS, "treatment-influence", "2026-06-01", valueBoolean=answer)

    recs = [asked(Rec("a"), True), asked(Rec("b"), True), asked(Rec("c"), False), Rec("d")]
    report = run(kb, "q9-influence-on-treatment", recs)
    assert counts(report) == {"initial-population": 4, "denominator": 4, "numerator": 2, "numerator?": 1}
    assert score(report) == pytest.approx(2 / 3)
    assert "extension" not in report["group"][0] or not any(
        e["url"].endswith("measure-target") for e in report["group"][0]["extension"])
