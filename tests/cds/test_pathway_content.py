"""The pathways as the source documents say: each rule fixed against its sentence fires for a patient it fits and
stays silent for one it does not, through the CDS service (minimal records built here, sent as prefetch)."""
from __future__ import annotations

from typing import Any

import pytest

from tests.cds.conftest import PREFETCH_TYPES, hook_request
from tests.cds.orders import ORDERS, service_request
from tests.cds.patients import ICD10, SCT, Q, Record, ago
from tests.cds.validator import validate_response

HANDOVER = "https://lbp-pathway.org/fhir/CodeSystem/lbp-handover"
MR_KIND = "https://lbp-pathway.org/fhir/CodeSystem/lbp-mr-contraindication"


def prefetch(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"patient": record.resources[0]}
    for t in PREFETCH_TYPES:
        key = t[0].lower() + t[1:]
        out[key] = {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": r} for r in record.resources if r["resourceType"] == t]}
    return out


def cards(cds, variant: str, hook: str, record: Record, orders: list[dict] | None = None) -> list[dict]:
    body = hook_request(hook, record.pid, prefetch=prefetch(record))
    if hook != "patient-view":
        drafts = orders or []
        body["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                          "entry": [{"resource": o} for o in drafts]}
        if hook == "order-select":
            body["context"]["selections"] = [f"{o['resourceType']}/{o['id']}" for o in drafts]
    r = cds.post(f"/cds-services/lbp-{hook}-{variant}", body)
    assert r.status_code == 200, r.get_json()
    return validate_response(r.get_json())


def topics(found: list[dict]) -> dict[str, str]:
    return {c["source"]["topic"]["code"]: c["indicator"] for c in found if c["source"].get("topic")}


def suggestion_labels(found: list[dict]) -> list[str]:
    return [s["label"] for c in found for s in c.get("suggestions", [])]


def intake(record: Record, days_ago: int = 1, **answers: Any) -> Record:
    items = []
    for link, value in answers.items():
        link = link.replace("_", "-")
        if isinstance(value, bool):
            items.append({"linkId": link, "answer": [{"valueBoolean": value}]})
        elif isinstance(value, int):
            items.append({"linkId": link, "answer": [{"valueInteger": value}]})
        else:
            system, codes = value
            items.append({"linkId": link, "answer": [{"valueCoding": {"system": system, "code": c}} for c in codes]})
    record.resources.append({"resourceType": "QuestionnaireResponse", "id": record._id("qr-intake"),
                             "questionnaire": Q + "lbp-intake", "status": "completed", "subject": record.subject(),
                             "authored": ago(days_ago), "item": items})
    return record


def treated(pid: str, first: int, latest: int, *, weeks: int = 12, age: int = 50, risk: str = "low") -> Record:
    """Pain for 16 weeks, physiotherapy for `weeks` weeks, NRS first → latest, every red flag answered no."""
    return (Record(pid, age).lbp(112).red_flags().screening(risk).physiotherapy(weeks * 7)
            .nrs(first, weeks * 7).nrs(latest, 2))


# ------------------------------------------------------------------ RA4: "Misstanke om spondylit"
def test_feeling_clearly_ill_alone_asks_for_assessment_today_not_an_acute_referral(cds):
    record = Record("ra4-answer", 40).lbp(10).red_flags(RA4=True).screening("low").nrs(5)
    for variant in ("se", "skane", "midtjylland"):
        found = cards(cds, variant, "patient-view", record)
        assert "critical" not in {c["indicator"] for c in found}, variant
        assert topics(found).get("RA4") == "warning", (variant, topics(found))


def test_coded_infectious_spondylitis_is_an_acute_referral(cds):
    record = Record("ra4-coded", 40).lbp(10).condition("M46.2", 3).red_flags().screening("low").nrs(5)
    assert topics(cards(cds, "skane", "patient-view", record)).get("RA4") == "critical"


# ------------------------------------------------------------------ "utebliven förbättring" is not a 2-point rule
def test_low_pain_that_stays_low_is_no_treatment_failure(cds):
    found = cards(cds, "skane", "patient-view", treated("nrs-low", 2, 2))
    assert "R0" not in topics(found) and "I2" not in topics(found), topics(found)


def test_persisting_pain_without_clear_improvement_is_a_treatment_failure(cds):
    found = cards(cds, "skane", "patient-view", treated("nrs-high", 6, 5))
    assert "R0" in topics(found), topics(found)


def test_a_clear_improvement_is_two_points_and_thirty_percent(cds):
    # 8 → 6 is two points but 25 %: no clear improvement, the pain persists
    assert "R0" in topics(cards(cds, "skane", "patient-view", treated("nrs-8-6", 8, 6)))
    assert "R0" not in topics(cards(cds, "skane", "patient-view", treated("nrs-6-3", 6, 3)))


# ------------------------------------------------------------------ R0: pain clinic and orthopaedics
def test_pain_clinic_needs_complex_long_lasting_pain(cds):
    plain = cards(cds, "se", "patient-view", treated("r0-plain", 7, 7))
    assert not any("smärtklinik" in s for s in suggestion_labels(plain)), suggestion_labels(plain)
    complex_pain = treated("r0-complex", 7, 7, risk="high")
    found = cards(cds, "se", "patient-view", complex_pain)
    assert any("smärtklinik" in s for s in suggestion_labels(found)), suggestion_labels(found)


def test_orthopaedic_suggestion_needs_mri_verified_pathology(cds):
    any_mri = treated("r0-mri", 7, 7).mri_report(60)
    assert not any("ortopedklinik" in s for s in suggestion_labels(cards(cds, "se", "patient-view", any_mri)))
    verified = treated("r0-verified", 7, 7).mri_report(60).condition("M51.1", 60)
    found = cards(cds, "se", "patient-view", verified)
    assert any("ortopedklinik" in s for s in suggestion_labels(found)), suggestion_labels(found)


def test_rheumatology_referral_for_suspected_inflammation_is_not_held_back_by_basic_treatment(cds):
    record = Record("rr1", 35).lbp(20).condition("M45").red_flags(RF5=True).screening("low").nrs(5)
    rheum = service_request("ref-rheum", "rr1", SCT, "394810000", "routine")
    rheum["performerType"] = {"coding": [{"system": SCT, "code": "394810000"}]}
    assert "R0" not in topics(cards(cds, "skane", "order-sign", record, [rheum]))
    ortho = ORDERS["referral"]("rr1")
    assert topics(cards(cds, "skane", "order-sign", record, [ortho])).get("R0") == "warning"


# ------------------------------------------------------------------ I5: device vs relative contraindication
def test_claustrophobia_is_a_radiologist_consultation_not_ct(cds):
    record = intake(Record("claustro", 60).lbp(60).red_flags().screening("low").nrs(6),
                    mr_contraindication=True, mr_contraindication_type=(MR_KIND, ["claustrophobia"]))
    found = [c for c in cards(cds, "skane", "order-select", record, [ORDERS["mri"]("claustro")])
             if c["source"]["topic"]["code"] == "I5"]
    labels = [s["label"] for c in found for s in c.get("suggestions", [])]
    assert any("radiolog" in s for s in labels) and not any("DT" in s for s in labels), labels


def test_a_pacemaker_offers_ct_and_the_consultation(cds):
    record = intake(Record("pacemaker", 60).lbp(60).red_flags().screening("low").nrs(6),
                    mr_contraindication=True, mr_contraindication_type=(MR_KIND, ["pacemaker"]))
    found = [c for c in cards(cds, "skane", "order-select", record, [ORDERS["mri"]("pacemaker")])
             if c["source"]["topic"]["code"] == "I5"]
    labels = [s["label"] for c in found for s in c.get("suggestions", [])]
    assert any("DT" in s for s in labels) and any("radiolog" in s for s in labels), labels


# ------------------------------------------------------------------ absent findings, RF1 "efter 55"
def _weight_loss_observation(record: Record, **value: Any) -> Record:
    record.resources.append({"resourceType": "Observation", "id": record._id("obs-wl"), "status": "final",
                             "code": {"coding": [{"system": ICD10, "code": "R63.4"}]}, "subject": record.subject(),
                             "effectiveDateTime": ago(3), **value})
    return record


def test_an_observation_saying_absent_is_not_the_red_flag(cds):
    absent = _weight_loss_observation(Record("wl-no", 40).lbp(28).red_flags().screening("low").nrs(5),
                                      valueBoolean=False)
    assert "RF8" not in topics(cards(cds, "se", "patient-view", absent))
    negative = _weight_loss_observation(Record("wl-neg", 40).lbp(28).red_flags().screening("low").nrs(5),
                                        valueCodeableConcept={"coding": [{"system": SCT, "code": "260385009"}]})
    assert "RF8" not in topics(cards(cds, "se", "patient-view", negative))
    present = _weight_loss_observation(Record("wl-yes", 40).lbp(28).screening("low").nrs(5), valueBoolean=True)
    record = present.red_flags()
    assert topics(cards(cds, "se", "patient-view", record)).get("RF8") == "warning"


@pytest.mark.parametrize(("age_at_onset", "flag"), [(55, True), (54, False)])
def test_onset_after_55_reads_the_same_as_the_form(cds, age_at_onset, flag):
    # the form asks "efter att du fyllt 55 år": onset at 55 (completed years) is the flag in the record too
    record = Record(f"rf1-{age_at_onset}", age_at_onset).lbp(20).screening("low").nrs(5)
    record.resources.append({"resourceType": "QuestionnaireResponse", "id": record._id("qr-rf"),
                             "questionnaire": Q + "lbp-red-flags", "status": "completed", "subject": record.subject(),
                             "authored": ago(1), "item": [{"linkId": k, "answer": [{"valueBoolean": False}]}
                                                          for k in ["RF2", "RF3", "RF4", "RF5", "RF6", "RF7",
                                                                    "RF8", "RF9", "RA1", "RA2", "RA3", "RA4"]]})
    found = topics(cards(cds, "se", "patient-view", record))
    assert ("RF1" in found and found["RF1"] == "warning") is flag, found


# ------------------------------------------------------------------ few cards: medication order-select
def test_a_medication_order_select_does_not_carry_the_red_flag_assessment(cds):
    record = Record("med-only", 40).lbp(28)
    assert "RF1" not in topics(cards(cds, "se", "order-select", record, [ORDERS["nsaid"]("med-only")]))
    assert "RF1" in topics(cards(cds, "se", "order-select", record, [ORDERS["mri"]("med-only")]))


# ------------------------------------------------------------------ coding the journals use
def test_chronic_low_back_pain_coded_in_snomed_is_in_scope(cds):
    record = Record("snomed-chronic", 45).condition("278860009", 400, system=SCT)
    assert cards(cds, "se", "patient-view", record), "a SNOMED CT chronic low back pain patient gets cards"
    outside = Record("snomed-other", 45).condition("22298006", 400, system=SCT)  # myocardial infarction
    assert cards(cds, "se", "patient-view", outside) == []


# ------------------------------------------------------------------ the Danish eight weeks (T5)
def _hospital(pid: str) -> dict:
    return service_request("ref-hospital", pid, HANDOVER, "hospital-back-centre", "routine")


def test_the_products_own_hospital_referral_is_held_to_the_eight_weeks(cds):
    record = Record("dk-early", 40).lbp(35).red_flags().screening("low").physiotherapy(21).nrs(6, 21).nrs(6, 1)
    assert topics(cards(cds, "midtjylland", "order-sign", record, [_hospital("dk-early")])).get("T5") == "warning"


def test_onset_under_eight_weeks_is_a_definite_answer_without_treatment_codes(cds):
    record = Record("dk-onset", 40).lbp(20).red_flags().screening("low")
    found = cards(cds, "midtjylland", "order-sign", record, [_hospital("dk-onset")])
    t5 = [c for c in found if c["source"]["topic"]["code"] == "T5"]
    assert [c["indicator"] for c in t5] == ["warning"], [c["summary"] for c in t5]


def test_eight_weeks_count_from_the_first_primary_sector_contact(cds):
    # no physiotherapy code at all: the diagnosis recorded in general practice 70 days ago starts the count
    record = Record("dk-recorded", 40).lbp(90).red_flags().screening("low").nrs(6, 60).nrs(6, 1)
    record.resources[1]["recordedDate"] = ago(70)
    found = cards(cds, "midtjylland", "order-sign", record, [_hospital("dk-recorded")])
    assert "T5" not in topics(found), [c["summary"] for c in found]


def test_chronic_pain_card_waits_while_the_danish_course_runs(cds):
    in_course = Record("dk-course", 40).lbp(100).red_flags().screening("low").nrs(6, 30)
    assert "S3" not in topics(cards(cds, "midtjylland", "patient-view", in_course))
    after = Record("dk-after", 40).lbp(200).red_flags().screening("low").nrs(6, 170)
    assert "S3" in topics(cards(cds, "midtjylland", "patient-view", after))


def test_no_improvement_after_eight_weeks_offers_the_hospital_only(cds):
    record = Record("dk-rd1", 40).lbp(84).red_flags().screening("low").physiotherapy(70).nrs(6, 70).nrs(6, 1)
    found = [c for c in cards(cds, "midtjylland", "patient-view", record) if c["source"]["topic"]["code"] == "RD1"]
    labels = [s["label"] for c in found for s in c.get("suggestions", [])]
    assert labels and not any("ommun" in s for s in labels), labels


# ------------------------------------------------------------------ BackUpp
def test_closure_only_for_backupp_patients_and_not_beside_escalation(cds):
    improved = intake(Record("bu-closure", 45).lbp(60).red_flags().screening("low").nrs(7, 40).nrs(2, 1),
                      days_ago=40, sick_leave=False)
    assert "T6" in topics(cards(cds, "skane", "patient-view", improved))
    older = intake(Record("bu-old", 70).lbp(60).red_flags().screening("low").nrs(7, 40).nrs(2, 1),
                   days_ago=40, sick_leave=False)
    assert "T6" not in topics(cards(cds, "skane", "patient-view", older))
    escalating = intake(Record("bu-escalate", 45).lbp(200).condition("C61").red_flags(RF4=True).screening("low")
                        .nrs(6, 190).nrs(6, 1), days_ago=190, sick_leave=False)
    found = cards(cds, "skane", "patient-view", escalating)
    assert "RF4" in topics(found) and not any("Avslut" in c["summary"] for c in found), [c["summary"] for c in found]


def test_backupp_start_prompts_eq5d_and_rmdq(cds):
    record = intake(Record("bu-start", 45).lbp(20).red_flags().screening("low").nrs(6), sick_leave=False)
    found = [c for c in cards(cds, "skane", "patient-view", record) if c["source"]["topic"]["code"] == "Q9"]
    labels = [s["label"] for c in found for s in c.get("suggestions", [])]
    assert any("EQ-5D" in s for s in labels) and any("RMDQ" in s for s in labels), labels
    assert not [c for c in cards(cds, "se", "patient-view", record) if c["source"]["topic"]["code"] == "Q9"]



# ------------------------------------------------------------------ DK-2: MRI orders in the Danish variant
def test_a_danish_mri_order_without_indication_gets_a_danish_card_that_names_its_swedish_rule(cds):
    record = Record("dk-mri", 40).lbp(28).red_flags().screening("low").nrs(5)
    found = [c for c in cards(cds, "midtjylland", "order-sign", record, [ORDERS["mri"]("dk-mri")])
             if c["source"]["topic"]["code"] == "I0"]
    assert len(found) == 1 and found[0]["indicator"] == "warning"
    card = found[0]
    assert card["summary"].startswith("Billeddiagnostik")
    assert "Citaterne gengives på originalsproget (svensk)" in card["detail"]
    assert "svenske kilder" in card["detail"]
    assert all(r["display"] and "the" not in r["display"].split() for r in card.get("overrideReasons", []))
    flagged = Record("dk-mri-flag", 40).lbp(28).condition("C61").red_flags(RF4=True).screening("low").nrs(5)
    assert "I0" not in topics(cards(cds, "midtjylland", "order-sign", flagged, [ORDERS["mri"]("dk-mri-flag")]))


def test_a_danish_red_flag_card_names_the_flag_in_danish(cds):
    record = Record("dk-rf", 40).lbp(35).condition("C61").red_flags(RF4=True).screening("low").nrs(5)
    red = [c for c in cards(cds, "midtjylland", "patient-view", record) if c["source"]["topic"]["code"] == "RF4"]
    assert len(red) == 1 and "Udløst af:** Rødt flag: tidligere kræftsygdom" in red[0]["detail"]
    swedish = [c for c in cards(cds, "se", "patient-view", record) if c["source"]["topic"]["code"] == "RF4"]
    assert "Utlöst av:** Röd flagga: tidigare cancersjukdom" in swedish[0]["detail"]


def test_clinician_forms_are_linked_to_the_clinician_context_with_their_title(cds):
    record = treated("rc1-link", 7, 7).mri_report(60)
    found = cards(cds, "skane", "order-sign", record, [ORDERS["referral"]("rc1-link")])
    links = [link for c in found for link in c.get("links", [])]
    template = [link for link in links if "Remiss till ortopedisk klinik" in link["label"]]
    assert template and all("/q/" not in link["url"] for link in template), links
    # the link opens the clinician's fill-in page and is named by the form's title, in the variant's language
    assert all(link["label"] == "Remiss till ortopedisk klinik vid ländryggsbesvär" and link["type"] == "absolute"
               and link["url"].endswith("/patients/rc1-link/forms/orthopaedic-referral?variant=skane")
               for link in template), template


def test_a_danish_card_links_the_standardised_referral_to_the_clinicians_page_in_danish(cds):
    record = treated("dk-rc1-link", 7, 7, weeks=10).mri_report(60)
    found = cards(cds, "midtjylland", "order-sign", record, [ORDERS["referral"]("dk-rc1-link")])
    links = [link for c in found for link in c.get("links", []) if "/forms/" in link["url"]]
    # the Danish standardised referral (RC1-DK), not Skåne's orthopaedic template
    assert links and all(link["label"] == "Standardiseret henvisning ved lænderygsmerter"
                         and link["url"].endswith("/forms/referral-midtjylland?variant=midtjylland")
                         for link in links), links


# ------------------------------------------------------------------ BF1: blue flags are read
def test_blue_flags_from_the_intake_give_one_work_card(cds):
    record = intake(Record("bf1", 40).lbp(28).red_flags().screening("low").nrs(5),
                    work_factors=("https://lbp-pathway.org/fhir/CodeSystem/lbp-work-factor", ["heavy-physical"]))
    assert topics(cards(cds, "se", "patient-view", record)).get("BF1") == "info"
    none = intake(Record("bf1-none", 40).lbp(28).red_flags().screening("low").nrs(5),
                  work_factors=("https://lbp-pathway.org/fhir/CodeSystem/lbp-work-factor", ["none"]))
    assert "BF1" not in topics(cards(cds, "se", "patient-view", none))
    # with sick leave in Skåne the work environment is one decision: the sick-leave card carries it
    on_leave = intake(Record("bf1-leave", 40).lbp(28).red_flags().screening("low").nrs(5), sick_leave=True,
                      sick_leave_weeks=2,
                      work_factors=("https://lbp-pathway.org/fhir/CodeSystem/lbp-work-factor", ["heavy-physical"]))
    found = cards(cds, "skane", "patient-view", on_leave)
    work = [c for c in found if "BF1" in [c["source"]["topic"]["code"]]
            + [r["code"] for r in (c.get("extension") or {}).get("org.lbp-pathway.rules", [])]]
    assert len(work) == 1, [c["summary"] for c in found]


def test_basic_treatment_follows_the_red_flag_screening(cds):
    unassessed = Record("b1-open", 40).lbp(28).screening("low").nrs(5)
    assert "B1" not in topics(cards(cds, "se", "patient-view", unassessed))
    assessed = Record("b1-done", 40).lbp(28).red_flags().screening("low").nrs(5)
    assert topics(cards(cds, "se", "patient-view", assessed)).get("B1") == "info"


# ------------------------------------------------------------------ SE-13: stop an add-on drug without effect
def _active_nsaid(record: Record) -> Record:
    record.resources.append({"resourceType": "MedicationStatement", "id": record._id("ms"), "status": "active",
                             "subject": record.subject(),
                             "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc",
                                                                       "code": "M01AE01"}]}})
    return record


def test_an_active_add_on_drug_without_effect_is_reviewed(cds):
    found = cards(cds, "se", "patient-view", _active_nsaid(treated("m1-review", 7, 7)))
    assert any(c["summary"].startswith("Tilläggsläkemedel utan tydlig effekt") for c in found), \
        [c["summary"] for c in found]
    helped = cards(cds, "se", "patient-view", _active_nsaid(treated("m1-helps", 7, 2)))
    assert not any(c["summary"].startswith("Tilläggsläkemedel") for c in helped)
