"""The artifact folders load at start-up, are searchable, and export as one Bundle per variant."""
from __future__ import annotations

import pytest

from app import create_app
from app.cli import VARIANT_PATHWAYS, export_bundle
from tests.conftest import FHIR


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    db = tmp_path_factory.mktemp("k") / "k.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "AUTH_DISABLED": True})
    yield app
    app.extensions["lbp"].store.dispose()


def test_start_up_loads_every_artifact(loaded):
    from app.knowledge.loader import artifact_files

    c = loaded.test_client()
    total = sum(c.get(f"/fhir/{t}?_summary=count").get_json()["total"] for t in (
        "PlanDefinition", "ActivityDefinition", "Questionnaire", "ValueSet", "CodeSystem", "Library", "Measure",
        "StructureDefinition"))
    assert total == len(artifact_files(loaded.config["ARTIFACT_DIRS"]))


def test_second_start_changes_nothing(loaded):
    from app.knowledge.loader import load_directories

    with loaded.app_context():
        report = load_directories(loaded.extensions["lbp"], loaded.config["ARTIFACT_DIRS"])
    assert report.loaded == 0 and not report.failures and report.unchanged > 0


@pytest.mark.parametrize("query,expected", [
    ("jurisdiction=urn:iso:std:iso:3166:-2|SE-M", "lbp-pathway-skane"),
    ("jurisdiction=DK-82", "lbp-pathway-midtjylland"),
    ("url=https://lbp-pathway.org/fhir/PlanDefinition/lbp-pathway-se", "lbp-pathway-se"),
])
def test_pathways_are_found_by_jurisdiction_and_url(loaded, query, expected):
    b = loaded.test_client().get(f"/fhir/PlanDefinition?{query}").get_json()
    assert expected in {e["resource"]["id"] for e in b["entry"]}


@pytest.mark.parametrize("variant", sorted(VARIANT_PATHWAYS))
def test_each_variant_exports_as_one_bundle_that_loads_into_an_empty_server(loaded, variant, tmp_path):
    bundle = export_bundle(loaded, variant)
    urls = {e["resource"].get("url") for e in bundle["entry"]}
    assert VARIANT_PATHWAYS[variant] in urls
    assert "https://lbp-pathway.org/fhir/Library/lbp-case-features" in urls
    fresh = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}", "LOAD_ARTIFACTS": False,
                        "AUTH_DISABLED": True})
    r = fresh.test_client().post("/fhir", json=bundle, content_type=FHIR)
    assert r.status_code == 200, r.get_json()
    assert all(e["response"]["status"].startswith("201") for e in r.get_json()["entry"])
    fresh.extensions["lbp"].store.dispose()
