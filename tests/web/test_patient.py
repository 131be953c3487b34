"""Patient questionnaire pages: rendering from the FHIR Questionnaire, languages, enableWhen, validation, submit."""
from __future__ import annotations

import re

import pytest

from app.web.i18n import translated

from .conftest import CLINICIAN_FORMS, FHIR, PATIENT_QUESTIONNAIRES, default_answers, make_link, questionnaire


def _fhir(web_app, token, path):
    r = web_app.test_client().get(f"/fhir/{path}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


@pytest.mark.parametrize("lang", ["sv", "da", "en"])
@pytest.mark.parametrize("qid", PATIENT_QUESTIONNAIRES)
def test_every_questionnaire_renders_in_every_language(web_app, web, qid, lang):
    q = questionnaire(qid)
    r = web.get(make_link(web_app, "p-render", [qid], lang=lang))
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert f'<html lang="{lang}">' in html
    from markupsafe import escape

    assert str(escape(translated(q, "title", lang, q.get("language")))) in html
    # every item's text, in the page's language; every answerable item has an input named after its linkId
    def visit(items):
        for item in items or []:
            assert str(escape(translated(item, "text", lang, q.get("language")))) in html, item["linkId"]
            if item["type"] not in ("group", "display") and not item.get("readOnly"):
                assert f'name="q-{item["linkId"]}"' in html
            visit(item.get("item"))

    visit(q["item"])
    if q.get("copyright"):
        assert "copyright" in html


def test_questions_are_labelled_choices_in_fieldsets_inputs_with_labels(web_app, web):
    html = web.get(make_link(web_app, "p-a11y", ["lbp-intake"], lang="en")).get_data(as_text=True)
    assert '<legend>Have you had episodes of low back pain before' in html
    assert re.search(r'<label for="q-pain-duration-weeks-input">', html)
    assert 'id="q-pain-duration-weeks-input"' in html
    assert 'type="checkbox" name="q-tried-treatments"' in html  # repeating choice
    assert 'type="radio" name="q-work-situation"' in html


def test_language_from_accept_language_when_the_link_names_none(web_app, web):
    path = make_link(web_app, "p-lang", ["start-back"])
    html = web.get(path, headers={"Accept-Language": "da-DK,da;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="da">' in html and "Mine rygsmerter har" in html
    html = web.get(path, headers={"Accept-Language": "sv-SE"}).get_data(as_text=True)
    assert '<html lang="sv">' in html and "Min ryggsmärta har strålat" in html
    assert '<html lang="en">' in web.get(path + "?lang=en").get_data(as_text=True)


def test_live_total_is_calculated_by_the_engine(web_app, web):
    path = make_link(web_app, "p-calc", ["start-back"], lang="en")
    answers = default_answers(questionnaire("start-back"))  # all 'agree' and 'extremely'
    r = web.post(path + "/start-back/calculate", data=answers)
    assert r.status_code == 200
    assert r.get_json()["scores"] == {"sbt-total": "9", "sbt-psychosocial": "5", "sbt-risk": "High risk"}
    answers = {k: v for k, v in answers.items() if k in ("q-sbt-1", "q-sbt-2")}
    assert web.post(path + "/start-back/calculate", data=answers).get_json()["scores"]["sbt-total"] == "2"


def test_submit_stores_response_and_observations_and_confirms_in_the_patients_language(
        web_app, web, tokens, patient_id):
    path = make_link(web_app, patient_id, ["start-back"], lang="da")
    r = web.post(path + "/start-back", data=default_answers(questionnaire("start-back")))
    assert r.status_code == 303
    confirmation = web.get(r.headers["Location"])
    assert confirmation.status_code == 200
    assert "Tak – dine svar er sendt" in confirmation.get_data(as_text=True)
    responses = _fhir(web_app, tokens["clinician"], f"QuestionnaireResponse?subject=Patient/{patient_id}")
    assert responses["total"] == 1
    qr = responses["entry"][0]["resource"]
    assert qr["status"] == "completed" and qr["identifier"]["system"] == "urn:lbp-pathway:link"
    risk = _fhir(web_app, tokens["clinician"],
                 f"Observation?subject=Patient/{patient_id}&code=https://lbp-pathway.org/fhir/CodeSystem/lbp-observation|sbt-risk")
    assert risk["entry"][0]["resource"]["valueCodeableConcept"]["coding"][0]["code"] == "high"
    assert risk["entry"][0]["resource"]["derivedFrom"][0]["reference"] == f"QuestionnaireResponse/{qr['id']}"


def test_second_submit_of_the_same_link_does_not_duplicate(web_app, web, tokens, patient_id):
    path = make_link(web_app, patient_id, ["nrs-pain"], lang="sv")
    answers = {"q-nrs": ["6"]}
    first = web.post(path + "/nrs-pain", data=answers)
    second = web.post(path + "/nrs-pain", data=answers)
    assert first.status_code == second.status_code == 303
    assert "again=1" in second.headers["Location"]
    assert "redan skickade" in web.get(second.headers["Location"]).get_data(as_text=True)
    assert _fhir(web_app, tokens["clinician"], f"QuestionnaireResponse?subject=Patient/{patient_id}")["total"] == 1
    nrs = _fhir(web_app, tokens["clinician"], f"Observation?subject=Patient/{patient_id}&code=http://loinc.org|72514-3")
    assert nrs["total"] == 1
    # the link then shows the confirmation instead of the form
    assert web.get(path).status_code == 303


def test_invalid_input_returns_the_form_with_problems_marked_and_typed_values_kept(web_app, web, patient_id):
    path = make_link(web_app, patient_id, ["lbp-intake"], lang="en")
    answers = default_answers(questionnaire("lbp-intake"))
    answers["q-pain-duration-weeks"] = ["several"]  # not a number
    answers.pop("q-radiation-below-knee")  # required, missing
    answers["q-tried-treatments-other"] = ["yoga and swimming"]
    answers["q-tried-treatments"] = ["exercise", "other"]
    r = web.post(path + "/lbp-intake", data=answers)
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert 'class="error-summary"' in html and 'href="#q-pain-duration-weeks"' in html
    assert 'href="#q-radiation-below-knee"' in html
    assert 'id="q-pain-duration-weeks-error"' in html and 'aria-invalid="true"' in html
    assert 'value="several"' in html  # what the patient typed is kept
    assert 'value="yoga and swimming"' in html
    assert re.search(r'value="exercise" checked', html) and re.search(r'value="other" checked', html)


def test_out_of_range_number_is_marked_with_the_range(web_app, web, patient_id):
    path = make_link(web_app, patient_id, ["nrs-pain"], lang="en")
    r = web.post(path + "/nrs-pain", data={"q-nrs": ["11"]})
    assert r.status_code == 422
    assert "Enter a value from 0 to 10" in r.get_data(as_text=True)
    assert 'value="11"' in r.get_data(as_text=True)


def test_question_hidden_by_enable_when_is_not_required_and_its_answer_not_stored(web_app, web, tokens, patient_id):
    path = make_link(web_app, patient_id, ["lbp-intake"], lang="en")
    answers = default_answers(questionnaire("lbp-intake"))
    answers["q-sick-leave"] = ["false"]
    answers["q-sick-leave-weeks"] = ["4"]  # answered although sick-leave is 'no': dropped
    answers["q-mr-contraindication"] = ["false"]
    answers.pop("q-mr-contraindication-type")  # required only when enabled
    r = web.post(path + "/lbp-intake", data=answers)
    assert r.status_code == 303, r.get_data(as_text=True)[:2000]
    found = _fhir(web_app, tokens["clinician"], f"QuestionnaireResponse?subject=Patient/{patient_id}")
    qr = found["entry"][0]["resource"]
    link_ids = {i["linkId"] for i in qr["item"]}
    assert "sick-leave-weeks" not in link_ids and "mr-contraindication-type" not in link_ids


def test_question_enabled_by_an_answer_becomes_required(web_app, web, patient_id):
    path = make_link(web_app, patient_id, ["lbp-intake"], lang="sv")
    answers = default_answers(questionnaire("lbp-intake"))
    answers["q-sick-leave"] = ["true"]
    answers.pop("q-sick-leave-weeks")
    r = web.post(path + "/lbp-intake", data=answers)
    assert r.status_code == 422
    assert 'href="#q-sick-leave-weeks"' in r.get_data(as_text=True)
    assert "Svara på frågan." in r.get_data(as_text=True)


@pytest.mark.parametrize("qid", PATIENT_QUESTIONNAIRES)
def test_every_questionnaire_can_be_submitted(web_app, web, tokens, patient_id, qid):
    path = make_link(web_app, patient_id, [qid], lang="en")
    r = web.post(f"{path}/{qid}", data=default_answers(questionnaire(qid)))
    assert r.status_code == 303, re.findall(r'class="error".*?</p>', r.get_data(as_text=True))


def test_a_link_with_several_questionnaires_leads_from_one_to_the_next(web_app, web, patient_id):
    path = make_link(web_app, patient_id, ["nrs-pain", "rmdq"], lang="en")
    assert 'action="' + path + '/nrs-pain"' in web.get(path).get_data(as_text=True)
    done = web.get(web.post(path + "/nrs-pain", data={"q-nrs": ["4"]}).headers["Location"]).get_data(as_text=True)
    assert "Go on to the next questionnaire" in done and path + "/rmdq" in done
    assert 'action="' + path + '/rmdq"' in web.get(path).get_data(as_text=True)


def test_submit_is_audited_with_the_link_as_agent(web_app, web, tokens, patient_id):
    path = make_link(web_app, patient_id, ["nrs-pain"], lang="en")
    web.post(path + "/nrs-pain", data={"q-nrs": ["2"]})
    events = _fhir(web_app, tokens["clinician"], f"AuditEvent?entity=Patient/{patient_id}&_count=200")
    agents = {e["resource"]["agent"][0]["altId"] for e in events.get("entry", [])}
    assert any(a.startswith("patient-link:") for a in agents)


def test_pages_are_not_cached_and_not_framed(web_app, web):
    r = web.get(make_link(web_app, "p-h", ["rmdq"], lang="en"))
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("variant,lang,expected", [
    ("se", "sv", "Din plan: grundbehandling"),
    ("skane", "sv", "fysioterapeut inom 2 veckor"),
    ("midtjylland", "da", "Dine otte uger i primærsektoren"),
    ("midtjylland", "en", "Your eight weeks in general practice"),
])
def test_information_page_per_variant(web, variant, lang, expected):
    r = web.get(f"/info/{variant}?lang={lang}")
    assert r.status_code == 200
    assert expected in r.get_data(as_text=True)


def test_danish_calendar_marks_todays_week(web):
    from datetime import date, timedelta

    start = (date.today() - timedelta(days=17)).isoformat()
    html = web.get(f"/info/midtjylland?lang=da&start={start}").get_data(as_text=True)
    assert "Du er her: uge 3 af 8." in html
    assert html.count('aria-current="date"') == 1
    assert "otte uger" not in web.get("/info/se?lang=sv").get_data(as_text=True)


def test_unknown_variant_is_404(web):
    assert web.get("/info/norway").status_code == 404


def test_fhir_post_is_unaffected(web_app, tokens):
    r = web_app.test_client().post("/fhir/Patient", json={"resourceType": "Patient"}, content_type=FHIR,
                                   headers={"Authorization": f"Bearer {tokens['writer']}"})
    assert r.status_code == 201


def test_link_information_page_counts_the_eight_weeks_from_the_links_start(web_app, web):
    from datetime import date, timedelta

    start = (date.today() - timedelta(days=36)).isoformat()
    path = make_link(web_app, "p-cal", ["nrs-pain"], lang="da", variant="midtjylland", start=start)
    html = web.get(path + "/info").get_data(as_text=True)
    assert "Du er her: uge 6 af 8." in html and f'datetime="{start}"' in html


def test_submit_for_a_patient_not_in_the_record_stores_nothing(web_app, web, tokens):
    path = make_link(web_app, "no-such-patient", ["nrs-pain"], lang="en")
    assert web.post(path + "/nrs-pain", data={"q-nrs": ["3"]}).status_code == 410
    assert _fhir(web_app, tokens["clinician"], "QuestionnaireResponse?subject=Patient/no-such-patient")["total"] == 0


def test_the_clinician_forms_are_the_referral_template_rehabilitation_plan_and_discharge_letter():
    assert CLINICIAN_FORMS == ["discharge-letter", "orthopaedic-referral", "referral-midtjylland",
                               "rehabilitation-plan"]


@pytest.mark.parametrize("qid", CLINICIAN_FORMS)
def test_a_clinician_form_is_never_a_patient_page_nor_stored_with_the_patient_as_author(web_app, web, tokens,
                                                                                        patient_id, qid):
    path = make_link(web_app, patient_id, [qid], lang="sv")
    assert web.get(f"{path}/{qid}").status_code == 404
    assert web.post(f"{path}/{qid}", data=default_answers(questionnaire(qid))).status_code == 404
    stored = _fhir(web_app, tokens["writer"], f"QuestionnaireResponse?subject=Patient/{patient_id}")
    assert not [e for e in stored.get("entry", []) if e["resource"]["questionnaire"].endswith(f"/{qid}")]
