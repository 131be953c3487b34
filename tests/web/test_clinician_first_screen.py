"""The clinician page reads top-down: who, the next step with deadline and rule, what fired (with the record entry
behind it, in the variant's language), what is missing (in words, with the form), then the folded history;
the patient link has a copy field; sessions last while in use and can be revoked."""
from __future__ import annotations

import re
import time
import uuid
from datetime import date, timedelta

from .conftest import FHIR

CANCER_ONSET = "2021-06-04"


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _seed_red_flag(app, token: str) -> str:
    """A named 71-year-old woman with low back pain for 10 days and previous breast cancer (RF4, and RF1 by age)."""
    onset = (date.today() - timedelta(days=10)).isoformat()
    birth = date(date.today().year - 71, 1, 1).isoformat()
    active = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {
            "resourceType": "Patient", "birthDate": birth, "gender": "female",
            "name": [{"use": "official", "family": "Lindqvist", "given": ["Astrid"]}],
            "identifier": [{"system": "urn:test", "value": uuid.uuid4().hex[:12]}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:c", "resource": {
            "resourceType": "Condition", "subject": {"reference": "urn:uuid:p"}, "clinicalStatus": active,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "M54.5"}]},
            "onsetDateTime": onset}, "request": {"method": "POST", "url": "Condition"}},
        {"fullUrl": "urn:uuid:ca", "resource": {
            "resourceType": "Condition", "subject": {"reference": "urn:uuid:p"}, "clinicalStatus": active,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C50.9",
                                 "display": "Breast cancer"}]},
            "onsetDateTime": CANCER_ONSET}, "request": {"method": "POST", "url": "Condition"}},
        {"fullUrl": "urn:uuid:nrs", "resource": {
            # pain scored at the first primary-care contact yesterday: T1 (medical assessment within 3 days) runs
            "resourceType": "Observation", "status": "final", "subject": {"reference": "urn:uuid:p"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "valueInteger": 7,
            "effectiveDateTime": (date.today() - timedelta(days=1)).isoformat()},
         "request": {"method": "POST", "url": "Observation"}}]}
    r = app.test_client().post("/fhir", json=bundle, content_type=FHIR, headers=_bearer(token))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["entry"][0]["response"]["location"].split("/")[1]


def _page(web, pid, token, query="lang=sv"):
    r = web.get(f"/patients/{pid}/pathway?{query}", headers=_bearer(token))
    assert r.status_code == 200
    return r.get_data(as_text=True)


def test_order_who_next_step_fired_missing_then_folded_history(web_app, web, tokens):
    pid = _seed_red_flag(web_app, tokens["writer"])
    html = _page(web, pid, tokens["clinician"])
    positions = [html.index(marker) for marker in (
        "Astrid Lindqvist", "71 år", "kvinna", 'id="next-step"', 'id="next-deadline"', 'id="flags"',
        'id="missing"', '<details id="history-details">', 'id="plot"')]
    assert positions == sorted(positions)
    assert "<title>Astrid Lindqvist" in html


def test_next_step_names_the_rule_that_fired_not_every_rule(web_app, web, tokens):
    pid = _seed_red_flag(web_app, tokens["writer"])
    html = _page(web, pid, tokens["clinician"])
    step = re.search(r'id="next-step">(.*?)</section>', html, re.S).group(1)
    visible = step.split("<details>")[0]
    assert "RF4" in visible and "RF7" not in visible  # RF7 (drug abuse) did not fire
    due = re.search(r'id="next-deadline">.*?datetime="([0-9-]+)"', step, re.S).group(1)
    assert date.fromisoformat(due) >= date.today()


def test_fired_flag_in_the_variants_language_with_its_record_entry(web_app, web, tokens):
    pid = _seed_red_flag(web_app, tokens["writer"])
    swedish = re.search(r'id="flags">(.*?)</section>', _page(web, pid, tokens["clinician"]), re.S).group(1)
    assert "Röd flagga: tidigare cancersjukdom" in swedish
    assert "Breast cancer (C50.9) (2021-06-04)" in swedish and "Condition/" not in swedish.split("title=")[0]
    danish = re.search(r'id="flags">(.*?)</section>',
                       _page(web, pid, tokens["clinician"], "variant=midtjylland&lang=da"), re.S).group(1)
    assert "Rødt flag: tidligere kræftsygdom" in danish


def test_missing_in_words_with_the_form_and_no_feature_names(web_app, web, tokens):
    pid = _seed_red_flag(web_app, tokens["writer"])
    html = _page(web, pid, tokens["clinician"])
    missing = re.search(r'id="missing">(.*?)<h3>', html, re.S).group(1)
    assert "cauda equina-syndrom" in missing and "RA1" in missing  # the blocked action in the artifact's words
    assert "Samlas in med formuläret:" in missing and "Röda flaggor" in missing
    assert "acuteSignRa1" not in html and "basicTreatmentStarted" not in html


def test_patient_link_has_a_selectable_field_and_a_copy_button(web_app, web, tokens, patient_id):
    r = web.post(f"/patients/{patient_id}/pathway/link?lang=en", data={"questionnaire": ["start-back"]},
                 headers=_bearer(tokens["clinician"]))
    html = r.get_data(as_text=True)
    link = re.search(r'id="patient-link">([^<]+)<', html).group(1)
    assert f'id="patient-link-field" value="{link}" readonly' in html
    assert 'id="copy-link"' in html and "copy.js" in html
    # the link comes before the next step: the clinician sees it without scrolling
    assert html.index('id="link-created"') < html.index('id="next-step"')
    script = web.get("/web/static/copy.js")
    assert script.status_code == 200 and b"clipboard" in script.data
    script.close()


def _signed_in(web_app, token):
    browser = web_app.test_client()
    r = browser.post("/clinician/session", data={"access_token": token})
    assert r.status_code == 303
    return browser


def test_session_outlives_the_token_and_renews_while_in_use(web_app, tokens, patient_id, monkeypatch):
    from app.web import sessions

    browser = _signed_in(web_app, tokens["clinician"])
    cookie = browser.get_cookie("lbp_clinician")
    assert cookie is not None and cookie.value != tokens["clinician"]  # an opaque session, not the token
    start = time.time()
    # 25 minutes later (the token is long expired), then 25 more: each view renews the 30-minute idle limit
    monkeypatch.setattr(sessions.time, "time", lambda: start + 25 * 60)
    assert browser.get(f"/patients/{patient_id}/pathway").status_code == 200
    monkeypatch.setattr(sessions.time, "time", lambda: start + 50 * 60)
    assert browser.get(f"/patients/{patient_id}/pathway").status_code == 200
    # 31 idle minutes end it
    monkeypatch.setattr(sessions.time, "time", lambda: start + 81 * 60 + 5)
    assert browser.get(f"/patients/{patient_id}/pathway").status_code == 401


def test_session_ends_after_a_working_day_even_in_use(web_app, tokens, patient_id, monkeypatch):
    from app.web import sessions

    browser = _signed_in(web_app, tokens["clinician"])
    start = time.time()
    for minutes in range(20, 10 * 60, 20):
        monkeypatch.setattr(sessions.time, "time", lambda m=minutes: start + m * 60)
        assert browser.get(f"/patients/{patient_id}/pathway").status_code == 200
    monkeypatch.setattr(sessions.time, "time", lambda: start + 10 * 3600 + 60)
    assert browser.get(f"/patients/{patient_id}/pathway").status_code == 401


def test_session_is_revoked_by_sign_out_and_per_client(web_app, tokens, patient_id):
    from app.web import sessions

    first = _signed_in(web_app, tokens["clinician"])
    stolen = web_app.test_client()
    stolen.set_cookie("lbp_clinician", first.get_cookie("lbp_clinician").value)
    first.post("/clinician/session/end")
    assert stolen.get(f"/patients/{patient_id}/pathway").status_code == 401  # revoked on the server, not only deleted
    second = _signed_in(web_app, tokens["clinician"])
    assert second.get(f"/patients/{patient_id}/pathway").status_code == 200
    assert sessions.revoke_client(web_app.extensions["lbp"].store, "clinician") >= 1
    assert second.get(f"/patients/{patient_id}/pathway").status_code == 401


def test_deadlines_name_their_anchor_in_words_and_a_met_one_says_so(web_app, web, tokens):
    pid = _seed_red_flag(web_app, tokens["writer"])
    html = _page(web, pid, tokens["clinician"])
    table = re.search(r'id="deadlines">(.*?)</section>', html, re.S).group(1)
    assert "första kontakt i primärvården" in table and "%" not in table  # no internal feature name
    assert "uppfyllt" not in table  # no diagnosis recorded with a date yet: T1 is open
    condition = web_app.test_client().get(f"/fhir/Condition?subject=Patient/{pid}&code=M54.5",
                                          headers=_bearer(tokens["writer"])).get_json()["entry"][0]["resource"]
    condition["recordedDate"] = date.today().isoformat()  # the medical assessment, recorded today, meets T1
    r = web_app.test_client().put(f"/fhir/Condition/{condition['id']}", json=condition, content_type=FHIR,
                                  headers=_bearer(tokens["writer"]))
    assert r.status_code == 200, r.get_json()
    table = re.search(r'id="deadlines">(.*?)</section>', _page(web, pid, tokens["clinician"]), re.S).group(1)
    assert "uppfyllt" in table and 'id="next-deadline"' not in table
