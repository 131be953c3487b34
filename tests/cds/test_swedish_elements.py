"""Swedish, Skåne and BackUpp source elements as cards: each fires on a patient it is written for and stays silent
on one it is not (the seed-coverage rows of docs/coverage.md)."""
from __future__ import annotations

from tests.cds.orders import service_request
from tests.cds.patients import SCT, Record, ago
from tests.cds.test_pathway_content import cards, intake, suggestion_labels, treated

INTERVENTION = "https://lbp-pathway.org/fhir/CodeSystem/lbp-intervention"
MRI_TYPE = "https://lbp-pathway.org/fhir/CodeSystem/lbp-mri-type"


def summaries(found: list[dict]) -> list[str]:
    return [c["summary"] for c in found]


def _has(found: list[dict], start: str) -> bool:
    return any(c["summary"].startswith(start) for c in found)


# ------------------------------------------------------------------ B4: add-ons offered as orders
def test_the_add_on_card_offers_manual_therapy_acupuncture_and_tens(cds):
    found = cards(cds, "se", "patient-view", treated("b4-failing", 7, 7))
    labels = suggestion_labels(found)
    assert {"Manuell mobilisering/manipulation (4–8 behandlingar)", "Akupunktur", "TENS"} <= set(labels), labels
    helped = cards(cds, "se", "patient-view", treated("b4-helped", 7, 2))
    assert "Akupunktur" not in suggestion_labels(helped)


# ------------------------------------------------------------ B5: not routinely traction, corset, insoles, ultrasound
B5 = "Traktion, korsett, skoinlägg och ultraljud bör ej rutinmässigt"


def test_a_corset_order_gets_the_not_routinely_card_with_a_remove_suggestion(cds):
    record = Record("b5-corset", 40).lbp(28).red_flags().screening("low").nrs(5)
    corset = service_request("corset-1", record.pid, INTERVENTION, "corset")
    found = cards(cds, "se", "order-select", record, [corset])
    card = next(c for c in found if c["summary"].startswith(B5))
    assert card["indicator"] == "warning"
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    deleted = [a["resourceId"] for a in actions if a["type"] == "delete"]
    assert deleted and deleted[0] in ("ServiceRequest/corset-1", "corset-1"), actions
    # an ordinary physiotherapy order is no such treatment
    physio = service_request("physio-1", record.pid, SCT, "91251008")
    assert not _has(cards(cds, "se", "order-select", record, [physio]), B5)


def test_traction_is_left_to_judgement_for_radicular_leg_pain(cds):
    plain = Record("b5-traction", 40).lbp(28).red_flags().screening("low").nrs(5)
    traction = service_request("traction-1", plain.pid, INTERVENTION, "mechanical-traction")
    assert _has(cards(cds, "skane", "order-sign", plain, [traction]), B5)
    radicular = Record("b5-radicular", 40).lbp(28).condition("M54.1", 28).red_flags().screening("low").nrs(5)
    traction = service_request("traction-2", radicular.pid, INTERVENTION, "mechanical-traction")
    assert not _has(cards(cds, "skane", "order-sign", radicular, [traction]), B5)


# ------------------------------------------------------------ SE-4: basic treatment goes on while the referral waits
SE4 = "Remiss till specialiserad vård: grundbehandlingen fortsätter"


def _referral(pid: str) -> dict:
    return service_request("ref-se4", pid, SCT, "183545006", "routine")


def test_a_referral_without_ongoing_basic_treatment_plans_its_continuation(cds):
    # physiotherapy began 12 weeks ago and nothing since: the referral goes ahead, treatment is to go on meanwhile
    record = treated("se4-stopped", 7, 7)
    found = cards(cds, "se", "order-select", record, [_referral(record.pid)])
    assert _has(found, SE4), summaries(found)
    assert "Fortsatt individanpassad och handledd träning" in suggestion_labels(found)


def test_ongoing_physiotherapy_needs_no_reminder(cds):
    record = treated("se4-ongoing", 7, 7).physiotherapy(7)
    assert not _has(cards(cds, "se", "order-select", record, [_referral(record.pid)]), SE4)


def test_in_skane_the_continuation_joins_the_referral_template_card(cds):
    record = treated("se4-skane", 7, 7)
    found = cards(cds, "skane", "order-select", record, [_referral(record.pid)])
    assert not _has(found, SE4), summaries(found)
    assert "Fortsatt individanpassad och handledd träning" in suggestion_labels(found)


# ------------------------------------------------------------ SK-7: MRÖ by primary care, complete MR by orthopaedics
SK7 = "Primärvården beställer MRÖ"


def test_a_complete_mri_order_in_primary_care_is_replaced_by_the_mr_overview(cds):
    record = Record("sk7-full", 50).lbp(60).red_flags(RF4=True).screening("low").nrs(6)
    full = service_request("mri-full", record.pid, MRI_TYPE, "mri")
    found = cards(cds, "skane", "order-select", record, [full])
    card = next(c for c in found if c["summary"].startswith(SK7))
    assert "Ersätt komplett MR med MRÖ" in [s["label"] for s in card["suggestions"]]
    # the MR overview itself (and the data contract's generic lumbar MRI code) is primary care's own order
    mro = service_request("mri-mro", record.pid, MRI_TYPE, "mro")
    generic = service_request("mri-generic", record.pid, SCT, "726546000")
    assert not _has(cards(cds, "skane", "order-select", record, [mro]), SK7)
    assert not _has(cards(cds, "skane", "order-select", record, [generic]), SK7)
    # the national variant has no MRÖ: no such card
    assert not _has(cards(cds, "se", "order-select", record, [full]), SK7)


# ------------------------------------------------------------------ SK-2 / SE-6: smoking, lifestyle habits
LOINC = "http://loinc.org"
SMOKING = "Rökning registrerad"


def _smoking_status(record: Record, code: str, days_ago: int = 10) -> Record:
    record.resources.append({"resourceType": "Observation", "id": record._id("smoking"), "status": "final",
                             "code": {"coding": [{"system": LOINC, "code": "72166-2"}]}, "subject": record.subject(),
                             "effectiveDateTime": ago(days_ago),
                             "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}})
    return record


def test_a_smoker_in_skane_is_offered_smoking_cessation(cds):
    smoker = _smoking_status(Record("sk2-smoker", 40).lbp(28).red_flags().screening("low").nrs(5), "77176002")
    found = cards(cds, "skane", "patient-view", smoker)
    assert _has(found, SMOKING) and "Rökavvänjning" in suggestion_labels(found), summaries(found)
    # a coded tobacco diagnosis counts too; a later 'never smoked' answer, or no answer at all, does not
    coded = Record("sk2-f17", 40).lbp(28).condition("F17.2").red_flags().screening("low").nrs(5)
    assert _has(cards(cds, "skane", "patient-view", coded), SMOKING)
    quit_ = _smoking_status(_smoking_status(Record("sk2-quit", 40).lbp(28).red_flags().screening("low").nrs(5),
                                            "77176002", 300), "8517006", 5)
    assert not _has(cards(cds, "skane", "patient-view", quit_), SMOKING)
    assert not _has(cards(cds, "skane", "patient-view", Record("sk2-none", 40).lbp(28).red_flags()), SMOKING)


def test_the_national_variant_offers_lifestyle_support_for_long_lasting_complex_pain(cds):
    smoker = _smoking_status(treated("se6-complex", 7, 7, risk="high"), "449868002")
    found = cards(cds, "se", "patient-view", smoker)
    assert "Rökavvänjning" in suggestion_labels(found), summaries(found)
    # short pain: no complex long-lasting pain, no lifestyle card in the national variant
    short = _smoking_status(Record("se6-short", 40).lbp(28).red_flags().screening("low").nrs(5), "449868002")
    assert "Rökavvänjning" not in suggestion_labels(cards(cds, "se", "patient-view", short))
    # in Skåne both apply at once: one card
    both = cards(cds, "skane", "patient-view", smoker)
    assert sum("Rökavvänjning" == label for label in suggestion_labels(both)) == 1, summaries(both)


# ------------------------------------------------------------------ SK-3 / X-10: CBT (psychologist) or MMS
def test_not_restored_after_physiotherapy_is_offered_cbt_with_a_psychologist_or_mms(cds):
    found = cards(cds, "skane", "patient-view", treated("sk3-failing", 7, 7))
    labels = suggestion_labels(found)
    assert {"KBT hos psykolog", "Multimodal smärtbehandling (MMS)"} <= set(labels), labels
    cbt = next(s for c in found for s in c.get("suggestions", []) if s["label"] == "KBT hos psykolog")
    request = cbt["actions"][0]["resource"]
    assert request["performerType"]["coding"][0]["code"] == "59944000"
    assert "KBT hos psykolog" not in suggestion_labels(cards(cds, "skane", "patient-view", treated("sk3-better", 7, 2)))


# ------------------------------------------------------------------ T6b: BackUpp's MRÖ at 4–6 weeks
def _backupp(pid: str, age: int) -> Record:
    # 5 weeks of pain and of physiotherapy, no improvement: before Skåne's 6-week I2
    record = Record(pid, age).lbp(35).red_flags(days_ago=35).screening("low").physiotherapy(35).nrs(7, 35).nrs(7, 2)
    return intake(record, 35, sick_leave=False)


def test_backupp_offers_the_mr_overview_after_four_weeks_without_improvement(cds):
    found = cards(cds, "skane", "patient-view", _backupp("t6b-included", 45))
    assert "MR-översikt ländrygg (MRÖ)" in suggestion_labels(found), summaries(found)
    # a 70-year-old is outside BackUpp: Skåne's own I2 waits for six weeks
    older = cards(cds, "skane", "patient-view", _backupp("t6b-older", 70))
    assert not any(c["summary"].startswith("BackUpp: MR-översikt") for c in older), summaries(older)


# ------------------------------------------------------------------ SK-11: HAD / MADRS for patients at risk
OBS = "https://lbp-pathway.org/fhir/CodeSystem/lbp-observation"


def test_a_high_risk_patient_in_skane_is_prompted_for_depression_and_anxiety_screening(cds):
    record = Record("sk11-risk", 40).lbp(28).red_flags().screening("high").nrs(6)
    found = cards(cds, "skane", "patient-view", record)
    assert any("HAD eller MADRS" in c["summary"] + c.get("detail", "") for c in found), summaries(found)
    national = cards(cds, "se", "patient-view", record)
    assert not any("HAD eller MADRS" in c["summary"] + c.get("detail", "") for c in national)
    record.resources.append({"resourceType": "Observation", "id": "sk11-hads", "status": "final",
                             "code": {"coding": [{"system": OBS, "code": "hads-depression"}]},
                             "subject": record.subject(), "effectiveDateTime": ago(3), "valueInteger": 6})
    again = cards(cds, "skane", "patient-view", record)
    assert not any("HAD eller MADRS" in c["summary"] + c.get("detail", "") for c in again), summaries(again)


# ------------------------------------------------------------ S2 / SK-17: Skåne's primary treatment for subacute pain
def test_subacute_pain_in_skane_gets_the_primary_treatment_content_on_the_basic_treatment_card(cds):
    subacute = Record("s2-subacute", 40).lbp(28).red_flags().screening("low").nrs(5)
    found = cards(cds, "skane", "patient-view", subacute)
    text = " ".join(c["summary"] + c.get("detail", "") for c in found)
    assert "ryggsim" in text and "ergonomi och anatomi" in text, summaries(found)
    acute = Record("s2-acute", 40).lbp(10).red_flags().screening("low").nrs(5)
    assert "ryggsim" not in " ".join(c.get("detail", "") for c in cards(cds, "skane", "patient-view", acute))
    assert "ryggsim" not in " ".join(c.get("detail", "") for c in cards(cds, "se", "patient-view", subacute))


# ------------------------------------------------------------------ SK-4: a named permanent care contact
def test_skane_asks_for_a_permanent_care_contact_at_the_start(cds):
    record = Record("sk4-none", 40).lbp(28).red_flags().screening("low").nrs(5)
    text = " ".join(c["summary"] + c.get("detail", "") for c in cards(cds, "skane", "patient-view", record))
    assert "fast vårdkontakt" in text
    named = Record("sk4-gp", 40).lbp(28).red_flags().screening("low").nrs(5)
    named.resources[0]["generalPractitioner"] = [{"reference": "Practitioner/gp-1"}]
    text = " ".join(c["summary"] + c.get("detail", "") for c in cards(cds, "skane", "patient-view", named))
    assert "fast vårdkontakt" not in text


# ------------------------------------------------------------------ SE-5: Vårdförlopp Smärta – långvarig
def test_long_lasting_complex_pain_without_surgical_pathology_names_the_long_term_pain_pathway(cds):
    found = cards(cds, "se", "patient-view", treated("se5-complex", 7, 7, risk="high"))
    assert any("Vårdförlopp Smärta – långvarig" in c["summary"] + c.get("detail", "") for c in found), summaries(found)
    low = cards(cds, "se", "patient-view", treated("se5-low-risk", 7, 7))
    assert not any("Vårdförlopp Smärta – långvarig" in c["summary"] + c.get("detail", "") for c in low)


# ------------------------------------------------------------------ SE-7: physiotherapist, chiropractor or naprapath
def test_basic_treatment_offers_physiotherapist_chiropractor_or_naprapath(cds):
    found = cards(cds, "se", "patient-view", Record("se7", 40).lbp(28).red_flags().screening("low").nrs(5))
    by_label = {s["label"]: s for c in found for s in c.get("suggestions", [])}
    performers = {label: by_label[label]["actions"][0]["resource"]["performerType"]["coding"][0]["code"]
                  for label in ("Fysioterapeutisk bedömning", "Alternativt: legitimerad kiropraktor",
                                "Alternativt: legitimerad naprapat")}
    assert performers == {"Fysioterapeutisk bedömning": "36682004",
                          "Alternativt: legitimerad kiropraktor": "3842006",
                          "Alternativt: legitimerad naprapat": "naprapath"}, performers
    started = Record("se7-started", 40).lbp(28).red_flags().screening("low").nrs(5).physiotherapy(5)
    assert "Alternativt: legitimerad naprapat" not in suggestion_labels(cards(cds, "se", "patient-view", started))


# ------------------------------------------------------------------ X-3 / X-12 / BU-3: who takes part
PARTICIPANT = "https://lbp-pathway.org/fhir/CodeSystem/lbp-participant"


def _conference_patient(pid: str, sick_leave: bool) -> Record:
    record = Record(pid, 45).lbp(30).red_flags(days_ago=25).screening("low").nrs(6, 25).nrs(6, 2)
    answers = {"sick_leave": True, "sick_leave_weeks": 3} if sick_leave else {"sick_leave": False}
    return intake(record, 25, **answers)


def _roles(suggestion: dict) -> set[str]:
    request = suggestion["actions"][0]["resource"]
    team_ref = request["performer"][0]["reference"]
    team = next(r for r in request["contained"] if f"#{r['id']}" == team_ref)
    assert team["resourceType"] == "CareTeam"
    return {c["code"] for p in team["participant"] for r in p["role"] for c in r["coding"]}


def test_the_team_conference_names_its_participants_and_the_agencies_with_sick_leave(cds):
    plain = cards(cds, "skane", "patient-view", _conference_patient("x3-plain", False))
    conference = next(s for c in plain for s in c.get("suggestions", []) if s["label"] == "Planera teamkonferens")
    assert _roles(conference) == {"309343006", "36682004"}
    sick = cards(cds, "skane", "patient-view", _conference_patient("x3-sick", True))
    labels = suggestion_labels(sick)
    assert "Planera teamkonferens" not in labels, labels
    conference = next(s for c in sick for s in c.get("suggestions", [])
                      if s["label"].startswith("Planera teamkonferens med Försäkringskassan"))
    assert _roles(conference) == {"309343006", "36682004", "forsakringskassan", "arbetsformedlingen", "employer"}


def test_sick_leave_offers_the_work_contact_with_coded_parties(cds):
    sick = cards(cds, "skane", "patient-view", _conference_patient("x12-sick", True))
    contact = next(s for c in sick for s in c.get("suggestions", [])
                   if s["label"].startswith("Kontakt med arbetsgivare"))
    assert _roles(contact) == {"employer", "arbetsformedlingen"}
    working = cards(cds, "skane", "patient-view", _conference_patient("x12-working", False))
    assert not any(label.startswith("Kontakt med arbetsgivare") for label in suggestion_labels(working))


# ------------------------------------------------------------ SE-12: VAS as an alternative, the final-visit rating
def _vas(record: Record, value: int) -> Record:
    record.resources.append({"resourceType": "Observation", "id": record._id("vas"), "status": "final",
                             "code": {"coding": [{"system": OBS, "code": "vas-pain"}]}, "subject": record.subject(),
                             "effectiveDateTime": ago(1), "valueInteger": value})
    return record


def test_a_vas_rating_is_a_pain_rating(cds):
    missing = "Ingen smärtskattning"
    unrated = Record("se12-unrated", 40).lbp(28).red_flags().screening("low")
    assert _has(cards(cds, "se", "patient-view", unrated), missing)
    rated = _vas(Record("se12-vas", 40).lbp(28).red_flags().screening("low"), 5)
    assert not _has(cards(cds, "se", "patient-view", rated), missing)


def _final_rating(record: Record) -> Record:
    record.resources.append({"resourceType": "QuestionnaireResponse", "id": record._id("qr-nrs"),
                             "questionnaire": "https://lbp-pathway.org/fhir/Questionnaire/nrs-pain",
                             "status": "completed", "subject": record.subject(), "authored": ago(1),
                             "item": [{"linkId": "occasion", "answer": [{"valueCoding": {
                                 "system": "https://lbp-pathway.org/fhir/CodeSystem/lbp-measurement-occasion",
                                 "code": "final-visit"}}]}, {"linkId": "nrs", "answer": [{"valueInteger": 2}]}]})
    return record


def test_a_clear_improvement_asks_for_the_final_visit_rating_until_it_is_recorded(cds):
    final = "Tydlig förbättring: registrera NRS smärta"
    assert _has(cards(cds, "se", "patient-view", treated("se12-better", 7, 2)), final)
    assert not _has(cards(cds, "se", "patient-view", _final_rating(treated("se12-rated", 7, 2))), final)
    assert not _has(cards(cds, "se", "patient-view", treated("se12-same", 7, 7)), final)
