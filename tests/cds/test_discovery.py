"""Discovery follows the loaded PlanDefinitions; variants per service, per client (iss, tenant) and per deployment."""
from __future__ import annotations

import copy
import json

from app.knowledge.loader import load_directories
from tests.cds.conftest import DANISH_ISSUER, hook_request
from tests.cds.validator import rules_of, validate_discovery, validate_response

ROOT_DIRS = ["valuesets", "questionnaires", "plandefinitions"]


def test_discovery_lists_each_hook_per_variant_and_says_which_variant_applies(cds):
    services = {s["id"]: s for s in validate_discovery(cds.get("/cds-services").get_json())}
    for hook in ("patient-view", "order-select", "order-sign"):
        assert services[f"lbp-{hook}"]["hook"] == hook
        assert services[f"lbp-{hook}"]["extension"]["org.lbp-pathway.variant"]["chosenBy"] == "client"
        for variant in ("se", "skane", "midtjylland"):
            applies = services[f"lbp-{hook}-{variant}"]["extension"]["org.lbp-pathway.variant"]
            assert applies["variant"] == variant and applies["pathway"].endswith(f"lbp-pathway-{variant}")


def test_client_mapped_to_a_variant_by_iss_and_tenant(cds):
    body = hook_request("order-sign", "early", ["referral"])
    danish = validate_response(cds.post("/cds-services/lbp-order-sign", body, iss=DANISH_ISSUER).get_json())
    assert rules_of(danish).get("T5") == "warning"
    skane = validate_response(cds.post("/cds-services/lbp-order-sign", body, iss=DANISH_ISSUER,
                                       extra={"tenant": "skane-tenant"}).get_json())
    assert "T5" not in rules_of(skane) and "RC1" in rules_of(skane)
    default = validate_response(cds.post("/cds-services/lbp-order-sign", body).get_json())  # se
    assert "T5" not in rules_of(default) and "RC1" not in rules_of(default)


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def test_loading_and_replacing_plan_definitions_changes_discovery_and_cards_without_restart(app, client):
    app.config["CDS_AUTH_DISABLED"] = True  # this test is about knowledge, not tokens
    app.config["CDS_TODAY"] = "2026-11-25"
    anonymous = app.test_client()
    assert anonymous.get("/cds-services").get_json() == {"services": []}

    lbp = app.extensions["lbp"]
    report = load_directories(lbp, [str(_root() / d) for d in ROOT_DIRS], validate=False)
    assert not report.failures
    services = {s["id"] for s in validate_discovery(anonymous.get("/cds-services").get_json())}
    assert "lbp-order-sign-midtjylland" in services and "lbp-patient-view-se" in services

    body = hook_request("patient-view", "unknown")
    before = validate_response(anonymous.post("/cds-services/lbp-patient-view-se", json=body).get_json())
    assert "A3" in rules_of(before)

    # a region replaces the screening rules: the NRS card now only at order-sign, with a new title
    screening = json.loads((_root() / "plandefinitions" / "PlanDefinition-lbp-screening.json").read_text())
    changed = copy.deepcopy(screening)
    nrs = next(a for a in changed["action"] if a["id"] == "pain-rating-missing")
    nrs["trigger"] = [{"type": "named-event", "name": "order-sign"}]
    risk = next(a for a in changed["action"] if a["id"] == "risk-screening-missing")
    risk["title"] = "Riskbedömning saknas (regional text)"
    risk.pop("_title", None)
    # and one rule whose condition fails when evaluated: that rule is skipped, the others still answer
    high = next(a for a in changed["action"] if a["id"] == "high-risk-multimodal")
    # (one that the static analysis cannot refuse: UCUM 'mo' is no calendar duration, found only when run)
    high["condition"][0]["expression"]["expression"] = "(@2020-01-01 + 1 'mo') > @2019-01-01"
    r = client.put("/fhir/PlanDefinition/lbp-screening", json=changed, content_type="application/fhir+json")
    assert r.status_code in (200, 201), r.get_json()
    lbp.knowledge.refresh(force=True)
    after = validate_response(anonymous.post("/cds-services/lbp-patient-view-se", json=body).get_json())
    assert "A3" not in rules_of(after)
    assert any(c["summary"] == "Riskbedömning saknas (regional text)" for c in after)

    # a region's bundle that drops the Danish pathway removes its services from discovery
    r = client.delete("/fhir/PlanDefinition/lbp-pathway-midtjylland")
    assert r.status_code in (200, 204)
    lbp.knowledge.refresh(force=True)
    services = {s["id"] for s in validate_discovery(anonymous.get("/cds-services").get_json())}
    assert "lbp-order-sign-midtjylland" not in services and "lbp-order-sign-se" in services
