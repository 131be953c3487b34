"""Swedish, Skåne and BackUpp source elements as cards: each fires on a patient it is written for and stays silent
on one it is not (the seed-coverage rows of docs/coverage.md)."""
from __future__ import annotations

from tests.cds.orders import service_request
from tests.cds.patients import SCT, Record
from tests.cds.test_pathway_content import cards, suggestion_labels, treated

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


# ------------------------------------------------------------------ B5: not routinely traction, corset, insoles, ultrasound
B5 = "Traktion, korsett, skoinlägg och ultraljud bör ej rutinmässigt"


def test_a_corset_order_gets_the_not_routinely_card_with_a_remove_suggestion(cds):
    record = Record("b5-corset", 40).lbp(28).red_flags().screening("low").nrs(5)
    corset = service_request("corset-1", record.pid, INTERVENTION, "corset")
    found = cards(cds, "se", "order-select", record, [corset])
    card = next(c for c in found if c["summary"].startswith(B5))
    assert card["indicator"] == "warning"
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    assert any(a["type"] == "delete" and a["resourceId"] in ("ServiceRequest/corset-1", "corset-1") for a in actions), actions
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


# ------------------------------------------------------------------ SE-4: basic treatment goes on while the referral waits
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


# ------------------------------------------------------------------ SK-7: MRÖ by primary care, complete MR by orthopaedics
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
