"""Clinician pathway page: SMART bearer auth (header or cookie), audit, engine status, patient links."""
from __future__ import annotations

import re

from .conftest import default_answers, make_link, questionnaire, seed_patient


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_without_a_token_the_page_is_401_with_a_sign_in_link(web, patient_id):
    r = web.get(f"/patients/{patient_id}/pathway")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "/clinician/session" in r.get_data(as_text=True)


def test_an_invalid_token_is_401(web, patient_id):
    assert web.get(f"/patients/{patient_id}/pathway", headers=_bearer("not-a-jwt")).status_code == 401


def test_a_token_without_read_scope_on_the_record_is_403(web, tokens, patient_id):
    r = web.get(f"/patients/{patient_id}/pathway", headers=_bearer(tokens["observations-only"]))
    assert r.status_code == 403


def test_with_a_read_token_the_page_shows_the_pathway(web, tokens, patient_id):
    r = web.get(f"/patients/{patient_id}/pathway?lang=en", headers=_bearer(tokens["clinician"]))
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "Pathway status" in html and patient_id in html
    assert "Recommended next step" in html and "Deadlines" in html
    assert "Weeks since onset: <strong>4</strong>" in html  # onset 30 days ago
    assert 'name="questionnaire" value="start-back" checked' in html  # screening is missing


def test_unknown_patient_is_404(web, tokens):
    assert web.get("/patients/nobody/pathway", headers=_bearer(tokens["clinician"])).status_code == 404


def test_every_view_writes_an_audit_event(web_app, web, tokens, patient_id):
    web.get(f"/patients/{patient_id}/pathway", headers=_bearer(tokens["clinician"]))
    web.get(f"/patients/{patient_id}/pathway")  # refused: audited too
    r = web_app.test_client().get(f"/fhir/AuditEvent?entity=Patient/{patient_id}&_count=200",
                                  headers=_bearer(tokens["clinician"]))
    events = [e["resource"] for e in r.get_json().get("entry", [])]
    outcomes = sorted(e["outcome"] for e in events if e["agent"][0]["altId"] in ("clinician", "anonymous"))
    assert "0" in outcomes and "4" in outcomes
    seen = next(e for e in events if e["agent"][0]["altId"] == "clinician" and e["outcome"] == "0")
    assert seen["action"] == "R"
    assert any(ent["what"]["reference"].startswith("Condition/") for ent in seen["entity"] if "what" in ent)


def test_session_cookie_lets_a_browser_use_the_page(web_app, tokens, patient_id):
    browser = web_app.test_client()
    r = browser.post("/clinician/session", data={"access_token": tokens["clinician"],
                                                 "next": f"/patients/{patient_id}/pathway"})
    assert r.status_code == 303 and r.headers["Location"] == f"/patients/{patient_id}/pathway"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert browser.get(f"/patients/{patient_id}/pathway").status_code == 200
    browser.post("/clinician/session/end")
    assert browser.get(f"/patients/{patient_id}/pathway").status_code == 401


def test_session_refuses_an_invalid_token_and_an_offsite_next(web_app, tokens):
    browser = web_app.test_client()
    assert browser.post("/clinician/session", data={"access_token": "x"}).status_code == 401
    r = browser.post("/clinician/session", data={"access_token": tokens["clinician"], "next": "//evil.example"})
    assert r.status_code == 303 and "evil" not in r.headers["Location"]


def test_high_risk_screening_shows_high_risk_and_the_multimodal_recommendation(web_app, web, tokens, patient_id):
    path = make_link(web_app, patient_id, ["start-back"], lang="sv")
    assert web.post(path + "/start-back", data=default_answers(questionnaire("start-back"))).status_code == 303
    html = web.get(f"/patients/{patient_id}/pathway?lang=en", headers=_bearer(tokens["clinician"])).get_data(
        as_text=True)
    screening = re.search(r'id="screening">(.*?)</section>', html, re.S).group(1)
    assert "High risk" in screening
    assert "YF5" in html and "multimodala insatser" in html
    assert "STarT Back" in html  # score history


def test_nrs_first_and_latest_and_the_plot(web_app, web, tokens, patient_id):
    for value in ("7", "4"):
        path = make_link(web_app, patient_id, ["nrs-pain"], lang="sv")
        assert web.post(path + "/nrs-pain", data={"q-nrs": [value]}).status_code == 303
    html = web.get(f"/patients/{patient_id}/pathway?lang=en", headers=_bearer(tokens["clinician"])).get_data(
        as_text=True)
    nrs = re.search(r'id="nrs">(.*?)</section>', html, re.S).group(1)
    assert "<strong>7</strong>" in nrs and "<strong>4</strong>" in nrs
    assert '<svg class="plot" role="img"' in html and "<title id=\"plot-title\">" in html


def test_variant_from_query_or_deployment_default(web_app, web, tokens, patient_id):
    html = web.get(f"/patients/{patient_id}/pathway?variant=midtjylland&lang=en",
                   headers=_bearer(tokens["clinician"])).get_data(as_text=True)
    assert 'value="midtjylland" selected' in html
    web_app.config["DEFAULT_VARIANT"] = "skane"
    try:
        html = web.get(f"/patients/{patient_id}/pathway", headers=_bearer(tokens["clinician"])).get_data(as_text=True)
    finally:
        web_app.config["DEFAULT_VARIANT"] = "se"
    assert 'value="skane" selected' in html
    assert web.get(f"/patients/{patient_id}/pathway?variant=norway",
                   headers=_bearer(tokens["clinician"])).status_code == 400


def test_overdue_deadline_is_highlighted(web_app, web, tokens):
    from datetime import date, timedelta

    pid = seed_patient(web_app, tokens["writer"], onset_days_ago=200)
    authored = (date.today() - timedelta(days=10)).isoformat()  # the pathway began 10 days ago: T1 (3 days) is past
    qr = {"resourceType": "QuestionnaireResponse", "status": "completed", "authored": authored,
          "questionnaire": "https://lbp-pathway.org/fhir/Questionnaire/nrs-pain",
          "subject": {"reference": f"Patient/{pid}"},
          "item": [{"linkId": "nrs", "answer": [{"valueInteger": 5}]}]}
    r = web_app.test_client().post("/fhir/QuestionnaireResponse", json=qr, content_type="application/fhir+json",
                                   headers=_bearer(tokens["writer"]))
    assert r.status_code == 201, r.get_json()
    html = web.get(f"/patients/{pid}/pathway?lang=en", headers=_bearer(tokens["clinician"])).get_data(as_text=True)
    rows = re.findall(r'<tr class="overdue">(.*?)</tr>', html, re.S)
    assert rows and any("T1" in row for row in rows)
    assert '<span class="badge overdue">overdue</span>' in html


def test_button_creates_a_patient_link_for_the_missing_questionnaires(web_app, web, tokens, patient_id):
    r = web.post(f"/patients/{patient_id}/pathway/link?variant=midtjylland&lang=en",
                 data={"questionnaire": ["start-back", "nrs-pain"], "link_lang": "da"},
                 headers=_bearer(tokens["clinician"]))
    assert r.status_code == 200
    link = re.search(r'id="patient-link">([^<]+)<', r.get_data(as_text=True)).group(1)
    page = web.get(link.replace("http://localhost", ""))
    assert page.status_code == 200 and '<html lang="da">' in page.get_data(as_text=True)
    assert web.post(f"/patients/{patient_id}/pathway/link", data={"questionnaire": ["start-back"]}).status_code == 401


def test_link_from_the_clinician_page_carries_the_pathway_start_for_the_calendar(web_app, web, tokens, patient_id):
    r = web.post(f"/patients/{patient_id}/pathway/link?variant=midtjylland",
                 data={"questionnaire": ["nrs-pain"], "link_lang": "da", "start": "2020-01-06"},
                 headers=_bearer(tokens["clinician"]))
    link = re.search(r'id="patient-link">([^<]+)<', r.get_data(as_text=True)).group(1)
    html = web.get(link.replace("http://localhost", "") + "/info").get_data(as_text=True)
    assert 'datetime="2020-01-06"' in html and "De otte uger er gået" in html


def test_the_page_is_503_while_its_audit_event_cannot_be_stored(web_app, web, tokens, patient_id, monkeypatch):
    monkeypatch.setattr(web_app.extensions["lbp"].audit, "_write", lambda events: False)
    r = web.get(f"/patients/{patient_id}/pathway", headers=_bearer(tokens["clinician"]))
    assert r.status_code == 503
    assert patient_id not in r.get_data(as_text=True)
