"""The clinician's forms: filled in on /patients/<id>/forms/<questionnaire>, pre-filled, stored with the Practitioner
as author, attached to the referral (DK-4), audited, idempotent; patient links still refuse them."""
from __future__ import annotations

import re

import pytest

from .conftest import CLINICIAN_FORMS, FHIR, default_answers, make_link, questionnaire

REFERRAL = "orthopaedic-referral"


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _fhir(app, token, path):
    r = app.test_client().get(f"/fhir/{path}", headers=_bearer(token))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def _create(app, token, resource) -> str:
    r = app.test_client().post(f"/fhir/{resource['resourceType']}", json=resource, content_type=FHIR,
                               headers=_bearer(token))
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


@pytest.fixture
def practitioner(web_app, tokens):
    return "Practitioner/" + _create(web_app, tokens["writer"], {
        "resourceType": "Practitioner", "name": [{"given": ["Karin"], "family": "Berg"}]})


def _referral(app, token, patient_id, status="draft") -> str:
    return "ServiceRequest/" + _create(app, token, {
        "resourceType": "ServiceRequest", "status": status, "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"}, "authoredOn": "2026-12-01",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "183545006"}],
                 "text": "Remiss till ortopedspecialist"}})


def _form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(submission|practitioner)" value="([^"]*)"', html))


def _save(web, token, patient_id, qid, practitioner, *, extra=None, submission=None, lang="sv"):
    page = web.get(f"/patients/{patient_id}/forms/{qid}?lang={lang}", headers=_bearer(token))
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    hidden = _form_fields(page.get_data(as_text=True))
    data = default_answers(questionnaire(qid))
    data["submission"] = submission or hidden["submission"]
    data["practitioner"] = practitioner
    data.update(extra or {})
    return web.post(f"/patients/{patient_id}/forms/{qid}?lang={lang}", data=data, headers=_bearer(token))


@pytest.mark.parametrize("qid", CLINICIAN_FORMS)
def test_the_clinician_saves_a_form_with_the_practitioner_as_author(web_app, web, tokens, patient_id, practitioner,
                                                                    qid):
    r = _save(web, tokens["writer"], patient_id, qid, practitioner, extra={"attach": "none"})
    assert r.status_code == 303, r.get_data(as_text=True)[:2000]
    stored = _fhir(web_app, tokens["writer"], f"QuestionnaireResponse?subject=Patient/{patient_id}")["entry"]
    mine = [e["resource"] for e in stored if e["resource"]["questionnaire"].endswith(f"/{qid}")]
    assert len(mine) == 1
    assert mine[0]["author"] == {"reference": practitioner}
    assert mine[0]["subject"] == {"reference": f"Patient/{patient_id}"}
    assert mine[0]["status"] == "completed"
    saved = web.get(r.headers["Location"], headers=_bearer(tokens["writer"]))
    html = saved.get_data(as_text=True)
    assert saved.status_code == 200 and "Karin Berg" in html and practitioner in html


def test_the_form_is_pre_filled_from_the_record(web, tokens, patient_id):
    html = web.get(f"/patients/{patient_id}/forms/{REFERRAL}?lang=sv", headers=_bearer(tokens["writer"])).get_data(
        as_text=True)
    # diagnosis from the record's Condition (M54.5), and the note saying what was filled in
    assert re.search(r'name="q-diagnosis" type="text" value="[^"]*M54\.5', html), html[:3000]
    assert 'id="prefilled"' in html


def test_a_repeated_submit_stores_one_response(web_app, web, tokens, patient_id, practitioner):
    first = _save(web, tokens["writer"], patient_id, REFERRAL, practitioner, submission="a" * 32,
                  extra={"attach": "none"})
    second = _save(web, tokens["writer"], patient_id, REFERRAL, practitioner, submission="a" * 32,
                   extra={"attach": "none"})
    assert first.status_code == second.status_code == 303
    assert "again=1" in second.headers["Location"] and "again" not in first.headers["Location"]
    found = _fhir(web_app, tokens["writer"], f"QuestionnaireResponse?subject=Patient/{patient_id}")
    assert found["total"] == 1
    assert "redan sparat" in web.get(second.headers["Location"], headers=_bearer(tokens["writer"])).get_data(
        as_text=True)


def test_the_referral_template_is_attached_to_the_referral(web_app, web, tokens, patient_id, practitioner):
    referral = _referral(web_app, tokens["writer"], patient_id)
    page = web.get(f"/patients/{patient_id}/forms/{REFERRAL}", headers=_bearer(tokens["writer"])).get_data(
        as_text=True)
    assert f'value="{referral}" checked' in page  # the one open referral is preselected
    r = _save(web, tokens["writer"], patient_id, REFERRAL, practitioner, extra={"attach": referral},
              submission="b" * 32)
    assert r.status_code == 303 and "not_attached" not in r.headers["Location"]
    response_id = r.headers["Location"].split("/responses/")[1].split("?")[0]
    request = _fhir(web_app, tokens["writer"], referral)
    assert request["supportingInfo"] == [{"reference": f"QuestionnaireResponse/{response_id}"}]
    saved = web.get(r.headers["Location"], headers=_bearer(tokens["writer"])).get_data(as_text=True)
    assert re.search(r'id="saved-attached">Remiss till ortopedspecialist', saved)
    # the same submission again: the same response, named once in supportingInfo
    again = _save(web, tokens["writer"], patient_id, REFERRAL, practitioner, extra={"attach": referral},
                  submission="b" * 32)
    assert again.status_code == 303 and f"/responses/{response_id}?" in again.headers["Location"]
    assert _fhir(web_app, tokens["writer"], referral)["supportingInfo"] == request["supportingInfo"]


def test_the_danish_standardised_referral_is_attached_to_the_referral(web_app, web, tokens, patient_id, practitioner):
    # DK-4: the information travels with the referral, the patient does not carry it
    referral = _referral(web_app, tokens["writer"], patient_id)
    r = _save(web, tokens["writer"], patient_id, "referral-midtjylland", practitioner, extra={"attach": referral},
              lang="da")
    assert r.status_code == 303 and "not_attached" not in r.headers["Location"], r.get_data(as_text=True)[:2000]
    response_id = r.headers["Location"].split("/responses/")[1].split("?")[0]
    assert _fhir(web_app, tokens["writer"], referral)["supportingInfo"] == [
        {"reference": f"QuestionnaireResponse/{response_id}"}]


def test_without_a_referral_the_page_says_how_to_attach_it(web_app, web, tokens, patient_id, practitioner):
    page = web.get(f"/patients/{patient_id}/forms/{REFERRAL}?lang=en", headers=_bearer(tokens["writer"]))
    assert 'id="attach-none"' in page.get_data(as_text=True)
    r = _save(web, tokens["writer"], patient_id, REFERRAL, practitioner, lang="en")
    assert r.status_code == 303
    saved = web.get(r.headers["Location"], headers=_bearer(tokens["writer"])).get_data(as_text=True)
    response_id = r.headers["Location"].split("/responses/")[1].split("?")[0]
    assert f"name QuestionnaireResponse/{response_id} as supporting information (supportingInfo)" in saved


def test_a_referral_must_be_chosen_when_there_are_several(web_app, web, tokens, patient_id, practitioner):
    _referral(web_app, tokens["writer"], patient_id)
    _referral(web_app, tokens["writer"], patient_id, status="active")
    r = _save(web, tokens["writer"], patient_id, REFERRAL, practitioner, lang="en")
    assert r.status_code == 422
    assert "Choose the referral the form belongs to" in r.get_data(as_text=True)
    assert _fhir(web_app, tokens["writer"], f"QuestionnaireResponse?subject=Patient/{patient_id}")["total"] == 0


def test_bad_input_is_shown_and_nothing_is_stored(web_app, web, tokens, patient_id, practitioner):
    r = _save(web, tokens["writer"], patient_id, REFERRAL, practitioner, lang="en",
              extra={"q-date": ["14/03/2026"], "q-status": [], "attach": "none"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    assert "Enter a date as year-month-day" in html and "Please answer this question." in html
    assert 'value="14/03/2026"' in html  # what was typed is kept
    assert _fhir(web_app, tokens["writer"], f"QuestionnaireResponse?subject=Patient/{patient_id}")["total"] == 0


def test_an_unknown_practitioner_is_refused_with_a_message(web_app, web, tokens, patient_id):
    r = _save(web, tokens["writer"], patient_id, REFERRAL, "Practitioner/nobody", lang="en", extra={"attach": "none"})
    assert r.status_code == 422 and "There is no clinician Practitioner/nobody in the record." in r.get_data(
        as_text=True)
    r = _save(web, tokens["writer"], patient_id, REFERRAL, "", lang="en", extra={"attach": "none"})
    assert r.status_code == 422 and "Say who signs the form" in r.get_data(as_text=True)


def test_the_session_names_the_practitioner(web_app, tokens, patient_id, practitioner):
    browser = web_app.test_client()
    assert browser.post("/clinician/session", data={"access_token": tokens["writer"], "practitioner": "nobody"}
                        ).status_code == 400
    r = browser.post("/clinician/session", data={"access_token": tokens["writer"], "practitioner": practitioner})
    assert r.status_code == 303
    html = browser.get(f"/patients/{patient_id}/forms/{REFERRAL}?lang=en").get_data(as_text=True)
    assert 'id="practitioner-name">Karin Berg<' in html


def test_saving_needs_create_scope_and_auth(web, tokens, patient_id, practitioner):
    assert web.get(f"/patients/{patient_id}/forms/{REFERRAL}").status_code == 401
    page = web.get(f"/patients/{patient_id}/forms/{REFERRAL}?lang=en", headers=_bearer(tokens["clinician"]))
    assert 'id="read-only"' in page.get_data(as_text=True)  # said before the clinician types anything
    r = _save(web, tokens["clinician"], patient_id, REFERRAL, practitioner, extra={"attach": "none"})
    assert r.status_code == 403  # a read-only token opens the form but cannot save it
    assert "Åtkomsttoken ger inte behörighet att spara QuestionnaireResponse." in r.get_data(as_text=True)


def test_a_patient_questionnaire_is_not_a_clinician_form(web, tokens, patient_id):
    assert web.get(f"/patients/{patient_id}/forms/start-back", headers=_bearer(tokens["writer"])).status_code == 404
    assert web.get("/patients/nobody/forms/orthopaedic-referral", headers=_bearer(tokens["writer"])).status_code == 404


def test_views_and_saves_are_audited(web_app, web, tokens, patient_id, practitioner):
    r = _save(web, tokens["writer"], patient_id, REFERRAL, practitioner, extra={"attach": "none"})
    response_id = r.headers["Location"].split("/responses/")[1].split("?")[0]
    events = [e["resource"] for e in _fhir(web_app, tokens["writer"],
                                           f"AuditEvent?entity=Patient/{patient_id}&_count=200").get("entry", [])]
    actions = {e["action"] for e in events if e["agent"][0]["altId"] == "writer"}
    assert {"R", "C"} <= actions
    created = [e for e in events if e["action"] == "C"]
    assert any(ent.get("what", {}).get("reference") == f"QuestionnaireResponse/{response_id}"
               for e in created for ent in e["entity"])


@pytest.mark.parametrize("qid", CLINICIAN_FORMS)
def test_patient_links_still_refuse_clinician_forms(web_app, web, patient_id, qid):
    path = make_link(web_app, patient_id, [qid], lang="sv")
    assert web.get(f"{path}/{qid}").status_code == 404
    assert web.post(f"{path}/{qid}", data=default_answers(questionnaire(qid))).status_code == 404


def test_the_pathway_page_links_the_clinicians_forms(web, tokens, patient_id):
    html = web.get(f"/patients/{patient_id}/pathway?variant=skane&lang=sv", headers=_bearer(tokens["clinician"])
                   ).get_data(as_text=True)
    forms = re.search(r'id="clinician-forms">(.*?)</section>', html, re.S).group(1)
    assert (f'href="/patients/{patient_id}/forms/orthopaedic-referral?variant=skane&amp;lang=sv">'
            "Remiss till ortopedisk klinik vid ländryggsbesvär</a>") in forms
    # the forms the variant's pathway uses: the Danish standardised referral is not offered in Skåne
    assert "referral-midtjylland" not in forms
    assert len(re.findall(r"<li>", forms)) == len(CLINICIAN_FORMS) - 1


@pytest.mark.parametrize("variant,absent", [("skane", "referral-midtjylland"), ("midtjylland", "orthopaedic-referral")])
def test_each_variant_offers_the_clinician_forms_of_its_own_pathway(web, tokens, patient_id, variant, absent):
    html = web.get(f"/patients/{patient_id}/pathway?variant={variant}", headers=_bearer(tokens["clinician"])
                   ).get_data(as_text=True)
    forms = re.search(r'id="clinician-forms">(.*?)</section>', html, re.S).group(1)
    assert f"/forms/{absent}?" not in forms and "/forms/" in forms


@pytest.mark.parametrize("variant", ["se", "skane", "midtjylland"])
def test_the_patient_link_form_never_offers_a_clinician_form(web, tokens, patient_id, variant):
    # a rule asking for the rehabilitation plan lists it among the clinician's forms, not as a patient link
    html = web.get(f"/patients/{patient_id}/pathway?variant={variant}", headers=_bearer(tokens["clinician"])
                   ).get_data(as_text=True)
    offered = set(re.findall(r'name="questionnaire" value="([^"]+)"', html))
    assert offered and not offered & set(CLINICIAN_FORMS), offered


def test_no_patient_link_is_made_for_a_clinician_form(web_app, web, tokens, patient_id):
    r = web.post(f"/patients/{patient_id}/pathway/link?lang=en",
                 data={"questionnaire": ["start-back", REFERRAL], "link_lang": "sv"},
                 headers=_bearer(tokens["clinician"]))
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="patient-link"' not in html
    assert f"{REFERRAL} is filled in by the clinician and never sent to the patient" in html


def test_the_audit_names_the_practitioner_of_the_session(web_app, tokens, patient_id, practitioner):
    browser = web_app.test_client()
    assert browser.post("/clinician/session", data={"access_token": tokens["writer"], "practitioner": practitioner}
                        ).status_code == 303
    assert browser.get(f"/patients/{patient_id}/pathway").status_code == 200
    events = [e["resource"] for e in _fhir(web_app, tokens["writer"],
                                           f"AuditEvent?entity=Patient/{patient_id}&_count=200").get("entry", [])]
    named = [e for e in events if any(a.get("who", {}).get("reference") == practitioner for a in e["agent"])]
    assert named, "the pathway view's AuditEvent names the session's Practitioner"
    assert all(e["agent"][0]["altId"] == "writer" for e in named)  # beside the client, not in its place
    # a bearer-token call names no person
    assert not any(len(e["agent"]) > 1 for e in events if e not in named)
