"""Each Measure on a small cohort whose populations are worked out by hand; stratifiers, periods, variants."""
from __future__ import annotations

from datetime import date

import pytest

from app.errors import FHIRError
from app.measures import engine
from tests.measures.conftest import (
    AARHUS,
    ICD10_SE,
    LOINC,
    OBS,
    SCT,
    SKANE,
    STOCKHOLM,
    Rec,
    counts,
    evaluate,
    measure,
    score,
)

ATC = "http://www.whocc.no/atc"
KVA = "urn:oid:1.2.752.116.1.3.2.1.4"
SBT = {"coding": [{"system": "https://lbp-pathway.org/fhir/CodeSystem/lbp-risk-category", "code": "low"}]}


def run(kb, mid, recs, **kw):
    reports, ev = evaluate(kb, [mid], recs, **kw)
    return reports[mid][1]


def test_q2_counts_screened_new_visits_in_the_period_and_unknown_age_apart(kb):
    recs = [
        Rec("a", visit="2026-03-01").obs(OBS, "sbt-risk", "2026-03-01", valueCodeableConcept=SBT),
        Rec("b", visit="2026-04-01"),
        Rec("c", visit="2025-12-31").obs(OBS, "sbt-risk", "2025-12-31", valueCodeableConcept=SBT),  # before
        Rec("d", visit="2026-05-01", born="2010-01-01"),  # 16 years old
        Rec("e", visit="2026-05-01", born=None),  # age unknown
    ]
    report = run(kb, "q2-risk-screening-recorded", recs)
    assert counts(report) == {"initial-population": 2, "initial-population?": 1, "denominator": 2, "numerator": 1}
    assert score(report) == 0.5


def test_q1_mean_nrs_reduction_leaves_patients_without_two_ratings_out(kb):
    recs = [
        Rec("a").nrs("2026-03-01", 8).nrs("2026-05-01", 4),
        Rec("b").nrs("2026-03-01", 6).nrs("2026-04-01", 5),
        Rec("c").nrs("2026-03-01", 7),
    ]
    report = run(kb, "q1-pain-intensity-change", recs)
    assert counts(report) == {"initial-population": 3, "measure-population": 2}
    assert score(report) == 2.5


def test_q4_counts_only_kva_gb021(kb):
    recs = [
        Rec("a").add("Procedure", status="completed", code={"coding": [{"system": KVA, "code": "GB021"}]},
                     performedDateTime="2026-03-05"),
        Rec("b").add("Procedure", status="completed", code={"coding": [{"system": SCT, "code": "91251008"}]},
                     performedDateTime="2026-03-05"),
    ]
    report = run(kb, "q4-basic-treatment-gb021", recs)
    assert counts(report) == {"initial-population": 2, "denominator": 2, "numerator": 1}


def test_q6_sick_leave_that_the_record_does_not_tell_is_unknown_not_negative(kb):
    certificate = {"system": OBS, "code": "sick-leave"}
    recs = [
        Rec("a").add("Observation", status="final", code={"coding": [certificate]},
                     effectivePeriod={"start": "2026-03-01", "end": "2026-03-20"},
                     valueCodeableConcept={"coding": [{"system": ICD10_SE, "code": "M54.5"}]}),
        Rec("b").intake("2026-03-01", sick_leave=False),
        Rec("c"),
        Rec("d").add("Observation", status="final", code={"coding": [certificate]},
                     effectivePeriod={"start": "2026-03-01", "end": "2026-03-20"},
                     valueCodeableConcept={"coding": [{"system": ICD10_SE, "code": "M51.1"}]}),
    ]
    report = run(kb, "q6-sick-leave-m544-m545", recs)
    assert counts(report) == {"initial-population": 4, "denominator": 4, "numerator": 1, "numerator?": 1}
    assert score(report) == pytest.approx(1 / 3)


def test_q5_id0078_period_boundaries_and_waits_still_running(kb):
    def ordered(pid, day, done=None):
        r = Rec(pid, visit="2025-12-20").order(LOINC, "24968-0", day)
        return r.mri(done) if done else r

    recs = [
        ordered("a", "2026-01-01", "2026-01-20"),  # first day of the period, 19 days
        ordered("b", "2026-03-01", "2026-04-15"),  # 45 days
        ordered("c", "2026-06-20", "2026-07-05"),  # done after the period: still waiting at its end (10 days)
        ordered("d", "2026-07-01", "2026-07-10"),  # ordered after the period
        ordered("e", "2026-05-01"),  # 60 days without an MRI
    ]
    report = run(kb, "q5-id0078-mri-within-30-days", recs,
                 period=engine.Period(date(2026, 1, 1), date(2026, 6, 30)), as_of=date(2026, 6, 30))
    assert counts(report) == {"initial-population": 4, "denominator": 4, "numerator": 1, "numerator?": 1}
    assert score(report) == pytest.approx(1 / 3)


def _referred(pid, day, seen=None):
    r = Rec(pid, visit="2026-01-10").order(SCT, "183545006", day, priority="routine")
    if seen:
        r.encounter("AMB", seen, basedOn=[r.last_ref()])
    return r


ORTHO = [
    _referred("a", "2026-02-01", "2026-03-15"),  # 42 days
    _referred("b", "2026-03-01", "2026-05-15"),  # 75 days
    _referred("c", "2026-04-01", "2026-08-01"),  # 122 days
    _referred("d", "2026-12-01"),  # waiting 30 days at the end of the period
    _referred("e", "2026-09-01"),  # waiting 121 days
]


@pytest.mark.parametrize(("mid", "expected", "share"), [
    ("q5-id0069-seen-within-90-days",
     {"initial-population": 5, "denominator": 5, "numerator": 2, "numerator?": 1}, 0.5),
    ("q5-id0129-done-within-60-days",
     {"initial-population": 5, "denominator": 5, "numerator": 1, "numerator?": 1}, 0.25),
    ("q5-id0071-waiting-within-60-days", {"initial-population": 5, "denominator": 2, "numerator": 1}, 0.5),
])
def test_q5_orthopaedic_waits(kb, mid, expected, share):
    report = run(kb, mid, ORTHO)
    assert counts(report) == expected
    assert score(report) == share
    assert report["group"][0]["code"]["coding"][0]["code"] == measure(mid)["identifier"][0]["value"]


def test_q5_id0076_physician_visit_within_7_days_of_the_first_contact(kb):
    recs = [
        Rec("a").encounter("VR", "2026-03-01").encounter("AMB", "2026-03-05"),
        Rec("b").encounter("VR", "2026-03-01").encounter("AMB", "2026-03-12"),
        Rec("c", visit="2026-12-28").encounter("VR", "2026-12-28"),  # three days so far
    ]
    report = run(kb, "q5-id0076-primary-care-visit-7-days", recs)
    assert counts(report) == {"initial-population": 3, "denominator": 3, "numerator": 1, "numerator?": 1}
    assert score(report) == 0.5


def test_q5_id0077_median_days_from_imaging_order_to_examination(kb):
    recs = [
        Rec("a").order(LOINC, "24972-2", "2026-03-01").add(
            "DiagnosticReport", status="final", code={"coding": [{"system": LOINC, "code": "24972-2"}]},
            effectiveDateTime="2026-03-11"),
        Rec("b").order(LOINC, "24968-0", "2026-04-01").mri("2026-04-21"),
        Rec("c").order(LOINC, "24968-0", "2026-05-01").mri("2026-05-31"),
        Rec("d").order(LOINC, "24968-0", "2026-06-01"),  # not done yet
    ]
    report = run(kb, "q5-id0077-imaging-accessibility", recs)
    assert counts(report) == {"initial-population": 4, "measure-population": 3}
    assert score(report) == 20.0


def test_q7_inconclusive_mro_completed_with_a_full_mr(kb):
    inconclusive = [{"coding": [{"system": SCT, "code": "419984006"}]}]
    recs = [
        Rec("a").mri("2026-03-10", conclusionCode=inconclusive).order(LOINC, "30679-5", "2026-03-15"),
        Rec("b").mri("2026-03-10"),
        Rec("c"),
    ]
    report = run(kb, "q7-inconclusive-mro", recs)
    assert counts(report) == {"initial-population": 3, "denominator": 2, "numerator": 1}


def test_q8_returned_referral_is_a_rejected_task(kb):
    a = _referred("a", "2026-02-01")
    a.add("Task", status="rejected", intent="order", focus={"reference": a.resources[-1]["resourceType"] + "/"
                                                                         + a.resources[-1]["id"]})
    report = run(kb, "q8-returned-referrals", [a, _referred("b", "2026-02-01", "2026-03-01")])
    assert counts(report) == {"initial-population": 2, "denominator": 2, "numerator": 1}


def _outcomes(r, eq, rmdq, satisfied=None):
    r.obs(OBS, "eq5d-index", "2026-03-01", valueQuantity={"value": eq[0]})
    r.obs(OBS, "eq5d-index", "2026-06-01", valueQuantity={"value": eq[1]})
    r.obs(OBS, "rmdq-total", "2026-03-01", valueInteger=rmdq[0]).obs(OBS, "rmdq-total", "2026-06-01",
                                                                     valueInteger=rmdq[1])
    if satisfied is not None:
        r.obs(OBS, "care-satisfaction", "2026-06-01", valueBoolean=satisfied)
    return r


Q9 = [_outcomes(Rec("a"), (0.4, 0.8), (14, 4), True), _outcomes(Rec("b"), (0.5, 0.4), (10, 12), False), Rec("c")]


def test_q9_improvement_and_satisfaction_against_the_backupp_targets(kb):
    reports, _ = evaluate(kb, ["q9-health-function-improved", "q9-satisfied-with-care", "q9-eq5d-index-change",
                               "q9-rmdq-reduction"], Q9)
    improved = reports["q9-health-function-improved"][1]
    assert counts(improved) == {"initial-population": 3, "denominator": 3, "numerator": 1, "numerator?": 1}
    assert score(improved) == 0.5
    assert improved["group"][0]["extension"][0]["valueDecimal"] == 0.8
    satisfied = reports["q9-satisfied-with-care"][1]
    assert counts(satisfied)["numerator"] == 1 and score(satisfied) == 0.5
    assert score(reports["q9-eq5d-index-change"][1]) == pytest.approx(0.15)
    assert score(reports["q9-rmdq-reduction"][1]) == 4.0


def test_q10_funnel_steps(kb):
    surgery = {"category": {"coding": [{"system": SCT, "code": "387713003"}]},
               "bodySite": [{"coding": [{"system": SCT, "code": "122496007"}]}]}
    recs = [
        Rec("a").red_flags("2026-03-01", RF4=True).mri("2026-03-20"),
        Rec("b").add("Procedure", status="completed", code={"coding": [{"system": KVA, "code": "GB021"}]},
                     performedDateTime="2026-03-05"),
        Rec("c").order(SCT, "183545006", "2026-04-01"),
        Rec("d").add("Procedure", status="completed", performedDateTime="2026-06-01", **surgery),
        Rec("e").red_flags("2026-03-01").mri("2026-03-20"),  # MRI without a red flag
        Rec("f").mri("2026-03-20"),  # MRI, red flags never asked
    ]
    report = run(kb, "q10-volume-funnel", recs)
    by_id = {g["id"]: i for i, g in enumerate(report["group"])}
    assert counts(report, by_id["primary-care-course"])["numerator"] == 1
    assert counts(report, by_id["mro-red-flags"]) == {"initial-population": 6, "denominator": 6, "numerator": 1,
                                                      "numerator?": 1}
    assert score(report, by_id["mro-red-flags"]) == 0.2
    assert counts(report, by_id["orthopaedic-specialist"])["numerator"] == 1
    assert counts(report, by_id["surgery"])["numerator"] == 1


def test_i0_imaging_without_a_decidable_indication_is_an_exception(kb):
    recs = [
        Rec("a").red_flags("2026-03-01", RF4=True).order(LOINC, "24968-0", "2026-03-02"),
        # no red flag, no acute sign, and the pain has improved: no indication
        Rec("b").red_flags("2026-03-01").nrs("2026-03-01", 8).nrs("2026-03-20", 3)
        .order(LOINC, "24968-0", "2026-03-21"),
        Rec("c").order(LOINC, "24968-0", "2026-03-02"),  # red flags never asked: cannot tell
    ]
    report = run(kb, "i0-imaging-with-indication", recs)
    assert counts(report) == {"initial-population": 3, "denominator": 3, "denominator-exception": 1,
                              "numerator": 1}
    assert score(report) == 0.5


def test_i6_mro_at_most_a_year_before_a_non_acute_referral(kb):
    recs = [
        Rec("a").mri("2026-01-10").order(SCT, "183545006", "2026-06-01"),
        Rec("b").mri("2025-03-01").order(SCT, "183545006", "2026-06-01"),
        Rec("c").order(SCT, "183545006", "2026-06-01", priority="routine"),
        Rec("d").mri("2026-01-10").order(SCT, "183545006", "2026-06-01", priority="urgent"),  # acute
    ]
    report = run(kb, "i6-mro-before-orthopaedic-referral", recs)
    assert counts(report) == {"initial-population": 3, "denominator": 3, "numerator": 1}


def test_m3_opioid_prescribed_in_the_episode(kb):
    def opioid(r, day):
        return r.add("MedicationRequest", status="active", intent="order", authoredOn=day,
                     medicationCodeableConcept={"coding": [{"system": ATC, "code": "N02AX02"}]})

    recs = [opioid(Rec("a"), "2026-03-05"), opioid(Rec("b"), "2026-01-01"), Rec("c")]
    report = run(kb, "m3-opioid-orders", recs)
    assert counts(report) == {"initial-population": 3, "denominator": 3, "numerator": 1}


@pytest.mark.parametrize("intent,placed", [("order", True), ("original-order", True), ("instance-order", True),
                                           ("plan", False), ("proposal", False), ("option", False)])
def test_m3_counts_placed_opioid_orders_only(kb, intent, placed):
    # a plan, a proposal or an option is no prescription (the same intents as the placed ServiceRequests)
    rec = Rec("a").add("MedicationRequest", status="active", intent=intent, authoredOn="2026-03-05",
                       medicationCodeableConcept={"coding": [{"system": ATC, "code": "N02AX02"}]})
    report = run(kb, "m3-opioid-orders", [rec])
    assert counts(report)["numerator"] == (1 if placed else 0)


def _strata(report, code):
    s = next(s for s in report["group"][0]["stratifier"] if s["code"][0]["text"] == code)
    return {st["value"]["text"]: ({p["code"]["coding"][0]["code"]: p["count"] for p in st["population"]},
                                  (st.get("measureScore") or {}).get("value")) for st in s["stratum"]}


def test_stratifiers_variant_organization_sex_and_age_band(kb):
    screened = {"valueCodeableConcept": SBT}
    recs = [
        Rec("a", born="1990-06-01", sex="female", organization="Organization/vc-1")
        .obs(OBS, "sbt-risk", "2026-03-01", **screened),
        Rec("b", born="1950-06-01", sex="female", organization="Organization/vc-2"),
        Rec("c", born="1970-06-01", sex="male", address=STOCKHOLM, organization="Organization/vc-2")
        .obs(OBS, "sbt-risk", "2026-03-01", **screened),
        Rec("d", born="2000-06-01", sex="male", address=STOCKHOLM, organization="Organization/vc-2"),
    ]
    report = run(kb, "q2-risk-screening-recorded", recs)
    assert _strata(report, "sex") == {
        "female": ({"initial-population": 2, "denominator": 2, "numerator": 1}, 0.5),
        "male": ({"initial-population": 2, "denominator": 2, "numerator": 1}, 0.5)}
    assert _strata(report, "variant") == {
        "se": ({"initial-population": 2, "denominator": 2, "numerator": 1}, 0.5),
        "skane": ({"initial-population": 2, "denominator": 2, "numerator": 1}, 0.5)}
    assert {k: v[0]["numerator"] for k, v in _strata(report, "organization").items()} == {
        "Organization/vc-1": 1, "Organization/vc-2": 1}
    assert {k: v[0]["initial-population"] for k, v in _strata(report, "age-band").items()} == {
        "18-29": 1, "30-44": 1, "45-64": 1, "65+": 1}


def test_patient_moving_between_variants_counts_where_they_lived_at_the_new_visit(kb):
    moved = [dict(SKANE, period={"end": "2026-03-31"}), dict(AARHUS, period={"start": "2026-04-01"})]
    before = Rec("m1", visit="2026-02-10", address=moved)
    after = Rec("m2", visit="2026-05-10", address=moved)
    reports, _ = evaluate(kb, ["q2-risk-screening-recorded"], [before, after], variant="skane")
    assert reports["q2-risk-screening-recorded"][0].subjects == ["m1"]
    reports, _ = evaluate(kb, ["q2-risk-screening-recorded"], [before, after], variant="se")
    assert reports["q2-risk-screening-recorded"][0].subjects == ["m1"]  # Skåne is in Sweden; Aarhus is not
    assert {m["id"] for m in engine.measures_for_variant(kb, "midtjylland")} == {
        "dk8-hospital-referral-before-eight-weeks", "dk8-stratification-recorded"}
    assert {m["id"] for m in engine.measures_for_variant(kb, "se")} == {
        "q1-pain-intensity-change", "q2-risk-screening-recorded", "q4-basic-treatment-gb021",
        "i0-imaging-with-indication", "m3-opioid-orders", "se1-sick-leave-days"}


def test_patient_without_an_address_is_in_no_variant_report_and_is_said_so(kb):
    homeless = Rec("h", address={"use": "home", "city": "Nowhere"})
    reports, ev = evaluate(kb, ["q2-risk-screening-recorded"], [homeless], variant="skane")
    assert reports["q2-risk-screening-recorded"][0].subjects == []
    assert ev.skipped_unplaced == 1
    outcome = next(c for c in reports["q2-risk-screening-recorded"][1]["contained"]
                   if c["resourceType"] == "OperationOutcome")
    assert "no address" in outcome["issue"][0]["details"]["text"]
    reports, _ = evaluate(kb, ["q2-risk-screening-recorded"], [homeless])
    assert _strata(reports["q2-risk-screening-recorded"][1], "variant") == {
        "unknown": ({"initial-population": 1, "denominator": 1, "numerator": 0}, 0.0)}


def test_monthly_series_and_subject_lists(kb):
    recs = [Rec("a", visit="2026-03-01").obs(OBS, "sbt-risk", "2026-03-01", valueCodeableConcept=SBT),
            Rec("b", visit="2026-04-01")]
    reports, ev = evaluate(kb, ["q2-risk-screening-recorded"], recs)
    acc = reports["q2-risk-screening-recorded"][0]
    assert engine.monthly_scores(acc, "risk-screening") == [("2026-03", 1.0, 1), ("2026-04", 0.0, 1)]
    listed = engine.measure_report(acc, ev, report_type="subject-list")
    lists = {c["id"]: [e["item"]["reference"] for e in c["entry"]] for c in listed["contained"]}
    numerator = next(p for p in listed["group"][0]["population"] if p["code"]["coding"][0]["code"] == "numerator")
    assert lists[numerator["subjectResults"]["reference"][1:]] == ["Patient/a"]
    assert listed["type"] == "subject-list"


def test_measure_without_index_date_or_with_unknown_scoring_is_refused():
    broken = measure("q2-risk-screening-recorded")
    broken["extension"] = []
    with pytest.raises(FHIRError) as err:
        engine.compile_measure(broken)
    assert err.value.issues[0].expression == ["Measure.extension"]
    broken = measure("q2-risk-screening-recorded")
    broken["scoring"]["coding"][0]["code"] = "composite"
    with pytest.raises(FHIRError) as err:
        engine.compile_measure(broken)
    assert err.value.issues[0].expression == ["Measure.scoring"]


def test_practitioner_parameter_keeps_that_general_practitioners_patients(kb):
    mine, other = Rec("a"), Rec("b")
    mine.resources[0]["generalPractitioner"] = [{"reference": "Practitioner/dr-1"}]
    other.resources[0]["generalPractitioner"] = [{"reference": "Practitioner/dr-2"}]
    ev, accs = engine.evaluate_measures(kb, [measure("q2-risk-screening-recorded")],
                                        [mine.resources, other.resources], engine.Period(date(2026, 1, 1),
                                                                                         date(2026, 12, 31)),
                                        as_of=date(2026, 12, 31), practitioner="Practitioner/dr-1")
    assert accs[0].subjects == ["a"]


def test_a_child_is_outside_every_population_without_evaluation_problems(kb):
    reports, ev = evaluate(kb, ["q2-risk-screening-recorded", "q10-volume-funnel", "i0-imaging-with-indication"],
                           [Rec("k", born="2012-01-01").order(LOINC, "24968-0", "2026-03-02")])
    assert all(counts(r)["initial-population"] == 0 for _, r in reports.values())
    assert ev.tally.issues() == []
