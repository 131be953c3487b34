"""Region Midtjylland's standardised referral (RC1, YF6, RD1): the Danish clinician form, linked from the card on
referrals to the physiotherapist, chiropractor, municipality and hospital; the vulnerability marker it carries."""
from __future__ import annotations

import json
from pathlib import Path

from tests.cds.orders import ORDERS, service_request
from tests.cds.patients import SCT, Q, Record, ago
from tests.cds.test_pathway_content import cards, topics

ROOT = Path(__file__).resolve().parents[2]
HANDOVER = "https://lbp-pathway.org/fhir/CodeSystem/lbp-handover"
FORM = "https://lbp-pathway.org/fhir/Questionnaire/referral-midtjylland"


def _form() -> dict:
    return json.loads((ROOT / "questionnaires" / "Questionnaire-referral-midtjylland.json").read_text(encoding="utf-8"))


def _items(q: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def walk(items):
        for item in items or []:
            out[item["linkId"]] = item
            walk(item.get("item"))

    walk(q["item"])
    return out


def _patient(pid: str) -> Record:
    return Record(pid, 40).lbp(28).red_flags().screening("low").nrs(5)


def _rc1(found: list[dict]) -> list[dict]:
    return [c for c in found if c["source"]["topic"]["code"] == "RC1"]


def _links_to_the_danish_form(card: dict) -> bool:
    return "referral-midtjylland" in json.dumps(card)


def test_referral_to_a_chiropractor_gets_the_danish_standardised_referral(cds):
    order = service_request("ref-chiro", "dk-chiro", SCT, "308449000", "routine")
    found = _rc1(cards(cds, "midtjylland", "order-select", _patient("dk-chiro"), [order]))
    assert len(found) == 1 and _links_to_the_danish_form(found[0]), [c["summary"] for c in found]
    card = found[0]
    assert card["summary"].startswith("Brug den standardiserede henvisning")
    assert "orthopaedic-referral" not in json.dumps(card) and "Personnummer" not in json.dumps(card)
    labels = [link["label"] for link in card.get("links", []) if "henvisning" in link["label"].lower()]
    # the clinician's form: labelled by its Danish title, opened on the clinician's fill-in page, never a patient link
    assert labels == ["Standardiseret henvisning ved lænderygsmerter"], card.get("links")
    assert all("/forms/referral-midtjylland" in link["url"] and "/q/" not in link["url"]
               for link in card.get("links", []) if "henvisning" in link["label"].lower())


def test_referrals_to_the_municipality_physiotherapist_and_hospital_get_the_same_card(cds):
    for oid, system, code in (("ref-mun", HANDOVER, "municipal-rehabilitation"), ("ref-pt", SCT, "308447003"),
                              ("ref-hosp", HANDOVER, "hospital-back-centre")):
        order = service_request(oid, "dk-rc1", system, code, "routine")
        found = _rc1(cards(cds, "midtjylland", "order-sign", _patient("dk-rc1"), [order]))
        assert len(found) == 1 and _links_to_the_danish_form(found[0]), code


def test_an_answered_danish_referral_silences_the_card(cds):
    record = _patient("dk-done")
    record.resources.append({"resourceType": "QuestionnaireResponse", "id": "dk-done-ref", "questionnaire": FORM,
                             "status": "completed", "subject": record.subject(), "authored": ago(2),
                             "item": [{"linkId": "vulnerable", "answer": [{"valueBoolean": False}]}]})
    order = service_request("ref-mun", "dk-done", HANDOVER, "municipal-rehabilitation", "routine")
    assert "RC1" not in topics(cards(cds, "midtjylland", "order-sign", record, [order]))


def test_no_danish_referral_card_in_the_swedish_variants_or_for_other_orders(cds):
    order = service_request("ref-chiro", "se-chiro", SCT, "308449000", "routine")
    for variant in ("se", "skane"):
        assert not any(_links_to_the_danish_form(c) for c in cards(cds, variant, "order-sign", _patient("se-chiro"),
                                                                   [order]))
    mri = ORDERS["mri"]("dk-mri")
    assert not any(_links_to_the_danish_form(c) for c in cards(cds, "midtjylland", "order-sign", _patient("dk-mri"),
                                                               [mri]))


def test_vulnerable_patient_card_offers_the_referral_that_carries_the_marker(cds):
    record = Record("dk-vuln", 40).lbp(28).red_flags().screening("high").nrs(6)
    found = [c for c in cards(cds, "midtjylland", "patient-view", record) if c["source"]["topic"]["code"] == "YF6"]
    vulnerable = [c for c in found if c["summary"].startswith("Sårbar patient")]
    assert len(vulnerable) == 1 and _links_to_the_danish_form(vulnerable[0]), [c["summary"] for c in found]
    low = Record("dk-low", 40).lbp(28).red_flags().screening("low").nrs(6)
    assert not any(c["summary"].startswith("Sårbar patient") for c in cards(cds, "midtjylland", "patient-view", low))


def test_the_danish_form_is_a_danish_clinician_form_with_cpr_marker_and_coded_municipal_offer():
    q = _form()
    assert q["language"] == "da"
    assert {"url": "https://lbp-pathway.org/fhir/StructureDefinition/filled-by", "valueCode": "clinician"} in q[
        "extension"]
    items = _items(q)
    assert items["cpr"]["text"] == "CPR-nummer" and "personal-identity-number" not in items
    assert "1.2.208.176.1.2" in json.dumps(items["cpr"])  # the CPR identifier system, not a Swedish one
    assert {o["valueCoding"]["code"] for o in items["recipient"]["answerOption"]} == {
        "physiotherapist", "chiropractor", "municipality", "hospital"}
    assert items["vulnerable"]["type"] == "boolean" and items["vulnerable"]["required"] is True
    offer = items["municipal-offer"]
    assert [o["valueCoding"]["code"] for o in offer["answerOption"]] == ["individual", "group"]
    assert {o["valueCoding"]["system"] for o in offer["answerOption"]} == {
        "https://lbp-pathway.org/fhir/CodeSystem/lbp-municipal-offer"}
    assert items["municipal"]["enableWhen"] == [{"question": "recipient", "operator": "=", "answerCoding": {
        "system": "https://lbp-pathway.org/fhir/CodeSystem/lbp-care-recipient", "code": "municipality"}}]
    assert Q + "referral-midtjylland" == q["url"]


def test_swedish_basic_treatment_offers_a_licensed_chiropractor_or_naprapath_as_coded_alternatives(cds):
    record = Record("se-bt", 40).lbp(21).red_flags().screening("low").nrs(5)
    basic = [c for c in cards(cds, "se", "patient-view", record) if c["source"]["topic"]["code"] in ("B1", "B2", "B3")]
    assert len(basic) == 1, [c["summary"] for c in basic]
    created = [a["resource"] for s in basic[0].get("suggestions", []) for a in s.get("actions", [])
               if a.get("resource", {}).get("resourceType") == "ServiceRequest"]
    codes = {(c["system"], c["code"]) for r in created for c in r.get("code", {}).get("coding", [])}
    assert (SCT, "308449000") in codes and (HANDOVER, "naprapath") in codes, codes
    labels = [s["label"] for s in basic[0]["suggestions"]]
    assert "Alternativt: legitimerad kiropraktor" in labels and "Alternativt: legitimerad naprapat" in labels
    # the Danish variant has no such card: its practice sector is reached through the standardised referral
    assert not any("naprapat" in json.dumps(c) for c in cards(cds, "midtjylland", "patient-view", record))
