"""The web pages read plotted series, scales, fields, patient questionnaires and calendars from the artifacts."""
from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest

from app import create_app
from app.web.artifacts import calendar_weeks, clinician_fields, patient_questionnaires, plotted_series
from tests.conftest import FHIR, get_token

MIDTJYLLAND_REFERRAL = "https://lbp-pathway.org/fhir/PlanDefinition/lbp-referral-midtjylland"
MIDTJYLLAND = "https://lbp-pathway.org/fhir/PlanDefinition/lbp-pathway-midtjylland"
CALENDAR = "https://lbp-pathway.org/fhir/StructureDefinition/calendar-duration"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from app.auth.local import register_client

    tmp = tmp_path_factory.mktemp("artifact-pages")
    register_client(tmp / "clients.json", "test-admin", "system/*.cruds", tmp / "keys")
    application = create_app({"DATABASE_URL": f"sqlite:///{tmp / 'pages.db'}", "TESTING": True,
                              "CLIENTS_FILE": str(tmp / "clients.json")})
    application.config["TEST_KEY_DIR"] = str(tmp / "keys")
    yield application
    application.extensions["lbp"].store.dispose()


def test_the_chart_plots_the_tagged_items_on_their_questionnaires_scales(loaded):
    with loaded.app_context():
        kb = loaded.extensions["lbp"].knowledge.base
        series = [(s.label, s.system, s.code, s.maximum) for s in plotted_series(kb)]
    assert series == [
        ("NRS", "http://loinc.org", "72514-3", 10.0),  # Questionnaire nrs-pain, item nrs (maxValue 10)
        ("RMDQ", "https://lbp-pathway.org/fhir/CodeSystem/lbp-observation", "rmdq-total", 24.0),
    ]


def test_the_case_fields_and_patient_questionnaires_come_from_the_artifacts(loaded):
    with loaded.app_context():
        kb = loaded.extensions["lbp"].knowledge.base
        library = kb.resolve("https://lbp-pathway.org/fhir/Library/lbp-case-features", "Library")
        assert clinician_fields(library) == {
            "weeks-since-onset": "painDurationWeeks", "onset-date": "lbpOnsetDate",
            "weeks-of-treatment": "basicTreatmentWeeks", "treatment-start": "basicTreatmentStartDate"}
        assert sorted(patient_questionnaires(kb)) == sorted(
            ["lbp-red-flags", "lbp-intake", "start-back", "ompsq-sf", "nrs-pain", "rmdq"])
        assert calendar_weeks(kb, MIDTJYLLAND) == 8
        assert calendar_weeks(kb, "https://lbp-pathway.org/fhir/PlanDefinition/lbp-pathway-se") is None


def test_a_region_that_changes_its_calendar_changes_the_information_page(loaded):
    client = loaded.test_client()
    headers = {"Authorization": f"Bearer {get_token(loaded)}"}
    with loaded.app_context():
        plan = copy.deepcopy(loaded.extensions["lbp"].knowledge.resolve(MIDTJYLLAND_REFERRAL))

    def set_weeks(actions, weeks):
        for action in actions:
            for ext in action.get("extension", []):
                if ext["url"] == CALENDAR:
                    ext["valueDuration"]["value"] = weeks
            set_weeks(action.get("action", []), weeks)

    set_weeks(plan["action"], 10)
    r = client.put(f"/fhir/PlanDefinition/{plan['id']}", json=plan, content_type=FHIR, headers=headers)
    assert r.status_code == 200, r.get_json()
    start = (date.today() - timedelta(days=17)).isoformat()
    html = client.get(f"/info/midtjylland?lang=da&start={start}").get_data(as_text=True)
    assert "Du er her: uge 3 af 10." in html
    set_weeks(plan["action"], 8)
    assert client.put(f"/fhir/PlanDefinition/{plan['id']}", json=plan, content_type=FHIR,
                      headers=headers).status_code == 200
    html = client.get(f"/info/midtjylland?lang=da&start={start}").get_data(as_text=True)
    assert "Du er her: uge 3 af 8." in html
