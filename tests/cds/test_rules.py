"""Each rule family fires for a patient it fits and stays silent for one it does not (signed JWT, full prefetch)."""
from __future__ import annotations

import json

import pytest

from tests.cds.conftest import hook_request
from tests.cds.validator import all_rules, rules_of, validate_response

# (variant, hook, patient, orders, rule id, expected indicator or None when the rule must not fire)
CASES = [
    # red flags RF1-RF9
    ("se", "patient-view", "cancer", (), "RF4", "warning"),
    ("se", "patient-view", "clean", (), "RF4", None),
    ("se", "patient-view", "clean", (), "RF1", None),
    # acute referral RA1-RA4
    ("skane", "patient-view", "cauda", (), "RA1", "critical"),
    ("skane", "order-select", "cauda", ("referral",), "RA1", "critical"),
    ("skane", "patient-view", "clean", (), "RA1", None),
    # imaging I0-I6
    ("se", "order-sign", "clean", ("mri",), "I0", "warning"),
    ("se", "order-sign", "cancer", ("mri",), "I0", None),
    ("skane", "order-sign", "clean", ("xray",), "I4", "warning"),
    ("skane", "order-sign", "cancer", ("mri",), "I4", None),
    ("skane", "order-select", "clean", ("mri",), "I5", "info"),
    ("skane", "order-sign", "oldmri", ("referral",), "I6", "warning"),
    ("skane", "order-sign", "treated", ("referral",), "I6", None),
    # I1 for a red flag is the red-flag card's MRÖ suggestion (one card per finding), see below
    ("skane", "patient-view", "cancer", (), "I1", None),
    ("skane", "patient-view", "clean", (), "I1", None),
    # referral R0, RN1-RN7, RR1, RC1, T5
    ("se", "order-sign", "clean", ("referral",), "R0", "warning"),
    ("se", "order-sign", "treated", ("referral",), "R0", None),
    ("skane", "patient-view", "treated", (), "RN2", "info"),
    ("skane", "patient-view", "clean", (), "RN2", None),
    ("skane", "order-sign", "clean", ("referral",), "RN1", "info"),
    ("skane", "order-sign", "treated", ("referral",), "RN1", None),
    ("skane", "order-sign", "treated", ("referral",), "RC1", "info"),
    ("skane", "patient-view", "inflammatory", (), "RR1", "info"),
    ("skane", "patient-view", "clean", (), "RR1", None),
    ("skane", "patient-view", "inflammatory", (), "RF5", "warning"),
    ("skane", "order-sign", "clean", ("mri",), "RC1", None),
    ("midtjylland", "order-sign", "early", ("referral",), "T5", "warning"),
    ("midtjylland", "order-sign", "treated", ("referral",), "T5", None),
    # medication M1-M6
    ("se", "order-sign", "clean", ("nsaid",), "M1", "info"),
    ("se", "order-sign", "clean", ("paracetamol",), "M2", "warning"),
    ("se", "order-sign", "treated", ("paracetamol",), "M2", None),
    ("se", "order-sign", "clean", ("opioid",), "M3", "warning"),
    ("se", "order-sign", "clean", ("nsaid",), "M3", None),
    ("se", "order-sign", "clean", ("gabapentinoid",), "M4", "warning"),
    ("se", "order-sign", "treated", ("tca",), "M5", "info"),
    ("se", "order-sign", "clean", ("relaxant",), "M6", "info"),
    ("se", "order-sign", "treated", ("relaxant",), "M6", "warning"),
    # screening and pain rating
    ("se", "patient-view", "unknown", (), "YF4", "info"),
    ("se", "patient-view", "clean", (), "YF4", None),
    ("se", "patient-view", "unknown", (), "A3", "info"),
    ("se", "patient-view", "clean", (), "A3", None),
    ("se", "patient-view", "highrisk", (), "YF5", "info"),
    ("se", "patient-view", "clean", (), "YF5", None),
]


@pytest.mark.parametrize(("variant", "hook", "patient", "orders", "rule", "indicator"), CASES,
                         ids=[f"{c[4]}-{c[2]}-{c[1]}-{c[0]}-{'fires' if c[5] else 'silent'}" for c in CASES])
def test_rule_family(cds, variant, hook, patient, orders, rule, indicator):
    r = cds.post(f"/cds-services/lbp-{hook}-{variant}", hook_request(hook, patient, orders))
    assert r.status_code == 200, r.get_json()
    cards = validate_response(r.get_json())
    topics = rules_of(cards)
    if indicator is None:
        assert rule not in topics, f"{rule} fired for {patient}: {[c['summary'] for c in cards]}"
    else:
        assert topics.get(rule) == indicator, f"{rule} for {patient}: {topics}"


def test_red_flag_and_mri_indication_for_one_finding_are_one_card(cds):
    cards = validate_response(cds.post("/cds-services/lbp-patient-view-skane",
                                       hook_request("patient-view", "cancer")).get_json())
    red = [c for c in cards if c["source"]["topic"]["code"] == "RF4"]
    assert len(red) == 1 and red[0]["indicator"] == "warning"
    assert any("MRÖ" in s["label"] for s in red[0]["suggestions"])
    assert not any(c["source"]["topic"]["code"] == "I1" for c in cards)


def test_red_flag_card_names_the_rule_and_links_the_catalogue(cds):
    cards = validate_response(cds.post("/cds-services/lbp-patient-view-se",
                                       hook_request("patient-view", "cancer")).get_json())
    card = next(c for c in cards if c["source"]["topic"]["code"] == "RF4")
    assert card["source"]["topic"]["system"] == "https://lbp-pathway.org/fhir/CodeSystem/lbp-rules"
    assert card["source"]["url"].endswith("/cds-catalogue#rf4--red-flag-previous-cancer-sk")
    assert "RF1" in all_rules(card) and "org.lbp-pathway.rules" in card["extension"]
    assert "> " in card["detail"]  # the guideline sentence is quoted
    assert card["overrideReasons"] and all(r["system"].endswith("lbp-override-reason") for r in card["overrideReasons"])


def test_missing_data_asks_for_the_questionnaire_and_never_reads_as_negative(cds):
    cards = validate_response(cds.post("/cds-services/lbp-patient-view-se",
                                       hook_request("patient-view", "unknown")).get_json())
    red_flag_cards = [c for c in cards if c["source"]["topic"]["code"].startswith("RF")]
    # red flags not assessed: one info card asking for them, never a warning and never "absent"
    assert [c["indicator"] for c in red_flag_cards] == ["info"]
    not_assessed = red_flag_cards[0]
    assert set(all_rules(not_assessed)) >= {f"RF{i}" for i in range(2, 10)}
    created = [a["resource"] for s in not_assessed["suggestions"] for a in s["actions"] if a["type"] == "create"]
    assert created and created[0]["resourceType"] == "Task"
    assert created[0]["input"][0]["valueCanonical"].endswith("/Questionnaire/lbp-red-flags")
    links = [link["url"] for link in not_assessed["links"]]
    assert any("/q/" in u for u in links) and any(u.endswith("/patients/unknown/pathway?variant=se") for u in links)
    screening = next(c for c in cards if c["source"]["topic"]["code"] == "YF4")
    assert screening["selectionBehavior"] == "at-most-one"
    assert "A4" in all_rules(screening)


def test_unsupported_mri_is_deleted_by_resource_id(cds):
    cards = validate_response(cds.post("/cds-services/lbp-order-sign-se",
                                       hook_request("order-sign", "clean", ["mri"])).get_json())
    card = next(c for c in cards if c["source"]["topic"]["code"] == "I0")
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    assert actions == [{"type": "delete", "description": actions[0]["description"],
                        "resourceId": "ServiceRequest/mri-1"}]


def test_plain_xray_is_replaced_by_mri_in_one_suggestion(cds):
    cards = validate_response(cds.post("/cds-services/lbp-order-select-skane",
                                       hook_request("order-select", "clean", ["xray"])).get_json())
    card = next(c for c in cards if c["source"]["topic"]["code"] == "I4")
    replace = card["suggestions"][0]
    assert [a["type"] for a in replace["actions"]] == ["delete", "create"]
    assert replace["actions"][0]["resourceId"] == "ServiceRequest/xray-1"
    created = replace["actions"][1]["resource"]
    assert created["resourceType"] == "ServiceRequest" and created["subject"] == {"reference": "Patient/clean"}
    assert any(c.get("code") == "726546000" for c in created["code"]["coding"])


def test_basic_treatment_offers_a_physiotherapy_referral(cds):
    cards = validate_response(cds.post("/cds-services/lbp-order-sign-se",
                                       hook_request("order-sign", "clean", ["referral"])).get_json())
    card = next(c for c in cards if c["source"]["topic"]["code"] == "R0")
    created = [a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"]
    assert created[0]["resourceType"] == "ServiceRequest"
    assert "physiotherapy" in created[0]["instantiatesCanonical"][0]


def test_order_select_advises_on_selections_only(cds):
    body = hook_request("order-select", "clean", ["mri", "opioid"], selections=["MedicationRequest/med-opioid"])
    cards = validate_response(cds.post("/cds-services/lbp-order-select-se", body).get_json())
    topics = rules_of(cards)
    assert topics.get("M3") == "warning" and "I0" not in topics


def test_order_sign_accepts_re_signing_active_orders(cds):
    body = hook_request("order-sign", "clean", ["opioid"])
    body["context"]["draftOrders"]["entry"][0]["resource"]["status"] = "active"
    cards = validate_response(cds.post("/cds-services/lbp-order-sign-se", body).get_json())
    assert rules_of(cards).get("M3") == "warning"


def test_danish_variant_answers_in_danish(cds):
    cards = validate_response(cds.post("/cds-services/lbp-order-sign-midtjylland",
                                       hook_request("order-sign", "early", ["referral"])).get_json())
    t5 = next(c for c in cards if c["source"]["topic"]["code"] == "T5")
    assert "uger" in t5["summary"] or "primærsektor" in t5["summary"]
    assert t5["source"]["label"].startswith("Forløbsbeskrivelse")


def test_smart_link_carries_app_context_only_when_configured(cds_app, cds):
    cds_app.config["CDS_SMART_LAUNCH_URL"] = "https://apps.example/lbp/launch"
    try:
        cards = validate_response(cds.post("/cds-services/lbp-patient-view-se",
                                           hook_request("patient-view", "unknown")).get_json())
    finally:
        cds_app.config["CDS_SMART_LAUNCH_URL"] = None
    smart = [link for c in cards for link in c.get("links", []) if link["type"] == "smart"]
    assert smart and all(json.loads(link["appContext"]) == {"patientId": "unknown"} for link in smart)
    plain = validate_response(cds.post("/cds-services/lbp-patient-view-se",
                                       hook_request("patient-view", "unknown")).get_json())
    assert not [link for c in plain for link in c.get("links", []) if link["type"] == "smart"]


def test_links_use_the_configured_public_base(cds_app, cds):
    cds_app.config["CDS_PUBLIC_BASE_URL"] = "https://lbp.region.example"
    try:
        body = hook_request("patient-view", "unknown")
        r = cds.client.post("/cds-services/lbp-patient-view-se", json=body, headers={
            "Authorization": "Bearer " + cds.token("/cds-services/lbp-patient-view-se")})
    finally:
        cds_app.config["CDS_PUBLIC_BASE_URL"] = None
    cards = validate_response(r.get_json())
    urls = [link["url"] for c in cards for link in c.get("links", [])] + [c["source"]["url"] for c in cards]
    assert urls and all(u.startswith("https://lbp.region.example/") for u in urls)
    assert any(u.startswith("https://lbp.region.example/q/") for u in urls)


def test_referral_template_card_lists_the_fields_the_record_cannot_fill(cds):
    cards = validate_response(cds.post("/cds-services/lbp-order-sign-skane",
                                       hook_request("order-sign", "treated", ["referral"])).get_json())
    card = next(c for c in cards if c["source"]["topic"]["code"] == "RC1")
    assert "**Saknas i journalen – fyll i:**" in card["detail"]
    missing = card["detail"].split("**Saknas i journalen – fyll i:**", 1)[1]
    listed = [line[2:] for line in missing.splitlines() if line.startswith("- ")]
    assert listed, card["detail"]
    # what the record holds is pre-filled and therefore not asked for
    assert not any(item.lower().startswith(("datum", "diagnos")) for item in listed), listed


def test_screening_card_lists_nothing_for_a_questionnaire_that_cannot_be_pre_filled(cds):
    cards = validate_response(cds.post("/cds-services/lbp-patient-view-se",
                                       hook_request("patient-view", "unknown")).get_json())
    assert all("Saknas i journalen" not in c["detail"] for c in cards if "start-back" in json.dumps(c))


def test_danish_red_flag_card_names_the_flag_that_fired(cds):
    cards = validate_response(cds.post("/cds-services/lbp-patient-view-midtjylland",
                                       hook_request("patient-view", "cancer")).get_json())
    card = next(c for c in cards if c["source"]["topic"]["code"].startswith("RF"))
    assert card["source"]["topic"]["code"] == "RF4"
    assert card["summary"].startswith("Rødt flag")


def test_catalogue_is_html_with_the_anchors_cards_link_to(cds, cds_app):
    cards = validate_response(cds.post("/cds-services/lbp-patient-view-se",
                                       hook_request("patient-view", "cancer")).get_json())
    anchors = {c["source"]["url"].split("#", 1)[1] for c in cards if "#" in c["source"].get("url", "")}
    assert anchors
    page = cds_app.test_client().get("/cds-catalogue")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<h3 id=" in html and "###" not in html
    for anchor in anchors:
        assert f'id="{anchor}"' in html, anchor
    raw = cds_app.test_client().get("/cds-catalogue?format=md")
    assert raw.mimetype == "text/markdown" and raw.get_data(as_text=True).startswith("# Rule catalogue")


def test_the_pathway_link_opens_the_variant_the_card_came_from(cds):
    # a Skåne card opens the Skåne pathway page, not the server's default (national) variant
    for variant in ("skane", "midtjylland"):
        cards = validate_response(cds.post(f"/cds-services/lbp-patient-view-{variant}",
                                           hook_request("patient-view", "unknown")).get_json())
        urls = [link["url"] for c in cards for link in c.get("links", []) if "/pathway" in link["url"]]
        assert urls and all(u.endswith(f"/patients/unknown/pathway?variant={variant}") for u in urls), urls
