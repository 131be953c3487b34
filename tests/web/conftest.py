"""Fixtures for the web pages: one application with the project's artifacts loaded (start-up is slow), SMART
clients with different scopes, a seeded patient, patient links, and answers for any questionnaire."""
from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

from app import create_app

ROOT = Path(__file__).resolve().parents[2]
QUESTIONNAIRES = sorted(p.stem.removeprefix("Questionnaire-") for p in (ROOT / "questionnaires").glob("*.json"))
FILLED_BY = "https://lbp-pathway.org/fhir/StructureDefinition/filled-by"
# forms the clinician fills (referral template, rehabilitation plan, discharge letter): never a patient page
CLINICIAN_FORMS = sorted(
    q for q in QUESTIONNAIRES
    if any(e.get("url") == FILLED_BY and e.get("valueCode") == "clinician"
           for e in json.loads((ROOT / "questionnaires" / f"Questionnaire-{q}.json").read_text("utf-8"))
           .get("extension", []))
)
PATIENT_QUESTIONNAIRES = [q for q in QUESTIONNAIRES if q not in CLINICIAN_FORMS]
SCREENING = ("lbp-red-flags", "lbp-intake", "start-back", "ompsq-sf", "nrs-pain", "rmdq")
FHIR = "application/fhir+json"
CLIENTS = {"writer": "system/*.cruds", "clinician": "system/*.rs", "observations-only": "system/Observation.rs"}


def questionnaire(qid: str) -> dict:
    return json.loads((ROOT / "questionnaires" / f"Questionnaire-{qid}.json").read_text())


@pytest.fixture(scope="session")
def web_app(tmp_path_factory):
    from app.auth.local import register_client

    tmp = tmp_path_factory.mktemp("web")
    clients = tmp / "clients.json"
    for client_id, scope in CLIENTS.items():
        register_client(clients, client_id, scope, tmp / "keys")
    application = create_app({"DATABASE_URL": f"sqlite:///{tmp / 'web.db'}", "TESTING": True,
                              "CLIENTS_FILE": str(clients)})
    application.config["TEST_KEY_DIR"] = str(tmp / "keys")
    yield application
    application.extensions["lbp"].store.dispose()


def token_for(app, client_id: str) -> str:
    from app.auth.local import token_request

    pem = Path(app.config["TEST_KEY_DIR"]) / f"{client_id}.pem"
    r = app.test_client().post("/auth/token", data=token_request(client_id, pem, "http://localhost/auth/token",
                                                                  CLIENTS[client_id]))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["access_token"]


@pytest.fixture(scope="session")
def tokens(web_app):
    return {client_id: token_for(web_app, client_id) for client_id in CLIENTS}


@pytest.fixture
def web(web_app):
    return web_app.test_client()


def seed_patient(app, token: str, *, onset_days_ago: int = 30, birth: str = "1980-05-01") -> str:
    """A patient in scope: an adult with an active low back pain Condition (ICD-10 M54.5)."""
    onset = (date.today() - timedelta(days=onset_days_ago)).isoformat()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "birthDate": birth,
                                                "identifier": [{"system": "urn:test", "value": uuid.uuid4().hex}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:c", "resource": {
            "resourceType": "Condition", "subject": {"reference": "urn:uuid:p"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "M54.5"}]},
            "onsetDateTime": onset},
         "request": {"method": "POST", "url": "Condition"}}]}
    r = app.test_client().post("/fhir", json=bundle, content_type=FHIR, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["entry"][0]["response"]["location"].split("/")[1]


@pytest.fixture
def patient_id(web_app, tokens):
    return seed_patient(web_app, tokens["writer"])


def make_link(app, patient_id: str, questionnaire_ids, **kwargs) -> str:
    """The path (`/q/<token>`) of a fresh patient link."""
    from app.auth.links import patient_link

    with app.test_request_context():
        url = patient_link(patient_id, list(questionnaire_ids), **kwargs)
    assert url.startswith("http://localhost/q/")
    return url.removeprefix("http://localhost")


def default_answers(q: dict) -> dict[str, list[str]]:
    """Form data answering every answerable item of a questionnaire (the server drops disabled ones)."""
    data: dict[str, list[str]] = {}

    def ext(item, suffix):
        return next((e for e in item.get("extension", []) if e["url"].endswith(suffix)), None)

    def visit(items):
        for item in items or []:
            visit(item.get("item"))
            if item.get("readOnly") or item["type"] in ("group", "display"):
                continue
            name = f"q-{item['linkId']}"
            kind = item["type"]
            if item.get("answerOption"):
                option = item["answerOption"][-1 if kind == "choice" and item["linkId"].startswith("sbt") else 0]
                data[name] = [str(option.get("valueCoding", {}).get("code", next(
                    (v for k, v in option.items() if k.startswith("value")), "")))]
            elif kind == "boolean":
                data[name] = ["false"]
            elif kind == "integer":
                low = ext(item, "minValue")
                data[name] = [str(low["valueInteger"]) if low else "3"]
            elif kind == "decimal":
                data[name] = ["0.5"]
            elif kind == "date":
                data[name] = [date.today().isoformat()]
            else:
                data[name] = ["Text"]

    visit(q.get("item"))
    return data
