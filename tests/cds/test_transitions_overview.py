"""The practitioners' overview of Region Midtjylland's cross-sector transitions (DK-1), generated from the pathway
and published in the rule catalogue the cards link to."""
from __future__ import annotations

from pathlib import Path

from app.knowledge.catalogue import build_catalogue, transitions

ROOT = Path(__file__).resolve().parents[2]


def test_the_overview_lists_the_transitions_of_the_danish_pathway_and_nothing_else():
    rows = {row["action"]: row for row in transitions(ROOT)}
    assert rows["lbp-referral-midtjylland#eight-weeks-primary-sector"]["limit"] == "8 uger"
    assert rows["lbp-pathway-midtjylland#hospital-effort-up-to-12-weeks"]["limit"] == "12 uger"
    assert rows["lbp-referral-midtjylland#standardised-referral"]["offers"] == [
        "Standardiseret henvisning ved lænderygsmerter"]
    assert "Henvisning til kommunal rehabilitering" in rows["lbp-screening-midtjylland#vulnerable-patient"]["offers"]
    assert "lbp-screening-midtjylland#chronic-pain-other-programme" in rows  # the chronic course
    # imaging and the screening prompt are not transitions between sectors
    assert not any(action.endswith(("#red-flags-present", "#stratification-missing")) for action in rows)
    assert all(row["title"] and row["when"] for row in rows.values())


def test_no_overview_for_a_pathway_that_does_not_exist():
    assert transitions(ROOT, "lbp-pathway-nowhere") == []


def test_the_catalogue_page_carries_the_overview_in_danish(cds_app):
    text = build_catalogue(ROOT)
    assert "## Region Midtjylland: overblik over de tværsektorielle overgange (pixie)" in text
    page = cds_app.test_client().get("/cds-catalogue").get_data(as_text=True)
    assert "overblik over de tværsektorielle overgange" in page
    assert "Otte ugers behandling i primærsektoren før ikke-akut henvisning til hospital" in page
    assert "/info/midtjylland" in page
