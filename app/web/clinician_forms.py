"""The clinician's forms (referral template, rehabilitation plan, discharge letter) filled in by the clinician.

`GET /patients/<id>/forms/<questionnaire-id>` renders a Questionnaire marked `filled-by` clinician with the
patient pages' renderer (app/web/forms.py), pre-filled from the record by `$populate`
(app.reasoning.populate). `POST` stores it through the records layer (`submit_response`, the write path of
`POST /fhir/QuestionnaireResponse`: validated, scored, extracted, audited) with `author` the Practitioner of
the clinician session and `subject` the patient; a hidden submission id is the response's identifier, so a
repeated submit stores nothing twice. A form whose Questionnaire says `supports-request` ServiceRequest (the
referral template) is attached to the referral the clinician picks: the ServiceRequest's `supportingInfo`
names the response (DK-4: the patient does not carry their own information).
Authentication as the pathway page (SMART token or session cookie), plus `c` on QuestionnaireResponse.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Any

from flask import current_app, g, redirect, render_template, request, url_for

from app.auth import note
from app.auth.scopes import Scopes
from app.conventions import BASE, variants
from app.errors import FHIRError
from app.records import submit_response, update
from app.store.db import instant

from . import bp
from .clinician import (
    NotAuthorized,
    _refuse,
    _variant,
    _who,
    authenticate_clinician,
    practitioner_reference,
    read_record,
    session_practitioner,
)
from .forms import Values, build_form, parse_form
from .i18n import choose_language, page_language, questionnaire_speaks, requested_language, texts
from .patient import _field_errors, _range_errors, clinician_form, load_questionnaire

IDENTIFIER_SYSTEM = "urn:lbp-pathway:clinician-form"
SUPPORTS_REQUEST = f"{BASE}/StructureDefinition/supports-request"
# a request the form can still be attached to: not yet completed, revoked or entered in error
OPEN_REQUEST = ("draft", "active", "on-hold")
_SUBMISSION = re.compile(r"^[0-9a-f]{32}$")
NONE = "none"


def supported_request_type(questionnaire: dict[str, Any]) -> str | None:
    """The request type a response to this form supports (its `supports-request` extension), if any."""
    return next((e.get("valueCode") for e in questionnaire.get("extension", []) or []
                 if e.get("url") == SUPPORTS_REQUEST and e.get("valueCode")), None)


def _authorise(*, write: bool) -> Scopes | None:
    """The clinician's scopes (None: authentication disabled); NotAuthorized without read, or `c` to save."""
    principal = authenticate_clinician()
    if principal is None:
        return None
    scopes = Scopes(principal.scope)
    if write and not scopes.allows("QuestionnaireResponse", "c"):
        raise NotAuthorized(403, "The access token's scopes do not allow creating QuestionnaireResponse",
                            "scope_create", type="QuestionnaireResponse")
    return scopes


def _language(questionnaire: dict[str, Any], variant: str) -> str:
    """One language for the page: the reader's if the form carries it for every text, else the variant's."""
    wanted = requested_language(request.values.get("lang"))
    return page_language(wanted, variants()[variant].language,
                         lambda lang: questionnaire_speaks(questionnaire, lang),
                         fallback=questionnaire.get("language"))


def _display_name(resource: dict[str, Any] | None) -> str | None:
    names = (resource or {}).get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if not name:
        return None
    return name.get("text") or " ".join([*(name.get("prefix") or []), *(name.get("given") or []),
                                         name.get("family") or ""]).strip() or None


def _practitioner(reference: str | None) -> dict[str, Any] | None:
    """The Practitioner as the page names it: reference and name."""
    if not reference:
        return None
    stored = current_app.extensions["lbp"].store.read("Practitioner", reference.removeprefix("Practitioner/"))
    resource = stored.resource() if stored is not None and not stored.deleted and stored.content else None
    return {"reference": reference, "name": _display_name(resource) or reference}


def _concept_text(concept: dict[str, Any] | None) -> str | None:
    concept = concept or {}
    return concept.get("text") or next((c.get("display") or c.get("code") for c in concept.get("coding") or []
                                        if c.get("display") or c.get("code")), None)


def _open_requests(record: list[dict[str, Any]], res_type: str | None) -> list[dict[str, Any]]:
    """The patient's open requests of the type the form supports, newest first, as the page lists them."""
    if not res_type:
        return []
    rows: list[dict[str, Any]] = []
    for r in record:
        if r.get("resourceType") != res_type or r.get("status") not in OPEN_REQUEST:
            continue
        rows.append({"reference": f"{res_type}/{r['id']}", "what": _concept_text(r.get("code")) or r["id"],
                     "status": r.get("status"), "authored": str(r.get("authoredOn") or "")[:10],
                     "attached": [i.get("reference") for i in r.get("supportingInfo") or []]})
    rows.sort(key=lambda row: str(row["authored"]), reverse=True)
    return rows


def _audit(interaction: str, action: str, resource_type: str, patient_id: str) -> None:
    from app.auth import audit

    g.web_audit = True
    n = note()
    n.interaction = interaction
    n.action = action
    n.resource_type = resource_type
    audit.add_entities(f"Patient/{patient_id}")


def _page(questionnaire: dict[str, Any], qid: str, patient: dict[str, Any], variant: str, lang: str, *,
          values: Values, errors: dict[str, str], submission: str, practitioner: str | None,
          requests_open: list[dict[str, Any]], chosen: str | None, status: int = 200, prefilled: int = 0,
          read_only: bool = False):
    ui = texts("ui", lang)
    clin = texts("clinician", lang)
    form = build_form(questionnaire, lang)
    return render_template(
        "clinician_form.html", ui=ui, clin=clin, lang=lang, form=form, values=values, errors=errors,
        title=form.title, questionnaire_id=qid, token=None, position=1, total=1, scores=None,
        form_action=url_for("web.clinician_form_submit", patient_id=patient["id"], questionnaire_id=qid,
                            variant=variant, lang=lang),
        submit_label=clin["form_save"], who=_who(patient, None, lang), patient_id=patient["id"],
        variant=variant, submission=submission, practitioner=_practitioner(practitioner),
        request_type=supported_request_type(questionnaire), requests_open=requests_open,
        chosen=chosen, prefilled=prefilled, hide_languages=False, read_only=read_only,
    ), status


def _load(patient_id: str, questionnaire_id: str):
    """(questionnaire, patient, record) or a page saying what is not there."""
    questionnaire = load_questionnaire(questionnaire_id)
    lang = choose_language(request.values.get("lang"))
    clin = texts("clinician", lang)
    if questionnaire is None or not clinician_form(questionnaire):
        # a patient's questionnaire is answered by the patient, through a link
        return None, render_template("clinician_refused.html", ui=texts("ui", lang), clin=clin, lang=lang,
                                     title=clin["form_unknown"], message=clin["form_unknown"], status=404,
                                     next=None), 404
    patient, record = read_record(patient_id)
    if patient is None:
        return None, render_template("clinician_refused.html", ui=texts("ui", lang), clin=clin, lang=lang,
                                     title=clin["not_found"], message=clin["not_found"], status=404, next=None), 404
    return (questionnaire, patient, record), None, None


def _open_form(patient_id: str, questionnaire_id: str, *, write: bool) -> tuple[tuple[Any, ...] | None, Any]:
    """What the form's page and its submission both need: the access (scopes), the variant, the form, the patient
    and the record, or the page that refuses (401/403/404) instead."""
    try:
        scopes = _authorise(write=write)
        variant = _variant()
    except NotAuthorized as err:
        return None, _refuse(err)
    loaded, *refused = _load(patient_id, questionnaire_id)
    if loaded is None:
        return None, tuple(refused)
    return (scopes, variant, *loaded), None


@bp.get("/patients/<patient_id>/forms/<questionnaire_id>")
def clinician_form_page(patient_id: str, questionnaire_id: str):
    """The form, pre-filled from the record, for the clinician to check, complete and save."""
    _audit("read", "R", "Patient", patient_id)
    opened, refusal = _open_form(patient_id, questionnaire_id, write=False)
    if opened is None:
        return refusal
    scopes, variant, questionnaire, patient, record = opened
    from app.auth import audit
    from app.reasoning.populate import populate

    audit.add_entities(*(f"{r['resourceType']}/{r['id']}" for r in record if r.get("id")))
    kb = current_app.extensions["lbp"].knowledge.base
    lang = _language(questionnaire, variant)
    form = build_form(questionnaire, lang)
    try:
        prefilled = populate(questionnaire, record, subject=patient, terminology=kb.terminology if kb else None)
    except FHIRError:  # the form still opens, empty: nothing is pre-filled rather than something wrong
        current_app.logger.warning("pre-fill of %s failed", questionnaire_id)
        prefilled = {}
    values = Values.from_response(prefilled, form)
    open_requests = _open_requests(record, supported_request_type(questionnaire))
    chosen = request.args.get("request")
    if chosen not in {r["reference"] for r in open_requests}:
        chosen = open_requests[0]["reference"] if len(open_requests) == 1 else None
    return _page(questionnaire, questionnaire_id, patient, variant, lang, values=values, errors={},
                 submission=uuid.uuid4().hex, practitioner=session_practitioner(), requests_open=open_requests,
                 chosen=chosen, prefilled=len(values.raw),
                 read_only=scopes is not None and not scopes.allows("QuestionnaireResponse", "c"))


@bp.post("/patients/<patient_id>/forms/<questionnaire_id>")
def clinician_form_submit(patient_id: str, questionnaire_id: str):
    """Saves the form as a QuestionnaireResponse by the clinician; 303 to what was stored, or the form again."""
    _audit("create", "C", "QuestionnaireResponse", patient_id)
    opened, refusal = _open_form(patient_id, questionnaire_id, write=True)
    if opened is None:
        return refusal
    scopes, variant, questionnaire, patient, record = opened
    lang = _language(questionnaire, variant)
    ui = texts("ui", lang)
    clin = texts("clinician", lang)
    form = build_form(questionnaire, lang)
    values = Values.from_form(request.form, form)
    parsed = parse_form(form, values)
    errors = _field_errors(form, parsed, ui, _range_errors(form, parsed, ui))
    submission = request.form.get("submission", "")
    named = (request.form.get("practitioner") or session_practitioner() or "").strip()
    practitioner = practitioner_reference(named) if named else None
    if practitioner is None:
        errors["!practitioner"] = clin["practitioner_unknown"].format(value=named) if named \
            else clin["practitioner_required"]
    open_requests = _open_requests(record, supported_request_type(questionnaire))
    chosen = request.form.get("attach") or None
    if open_requests and chosen != NONE and chosen not in {r["reference"] for r in open_requests}:
        errors["!attach"] = clin["attach_choose"]
    if not _SUBMISSION.match(submission):
        errors["!submission"] = clin["form_reload"]
        submission = uuid.uuid4().hex

    def again(status: int):
        return _page(questionnaire, questionnaire_id, patient, variant, lang, values=values, errors=errors,
                     submission=submission, practitioner=practitioner or named or None,
                     requests_open=open_requests, chosen=chosen, status=status)

    if errors:
        return again(422)
    response = {
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": IDENTIFIER_SYSTEM, "value": submission},
        "questionnaire": questionnaire.get("url"),
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authored": instant(time.time()),
        "author": {"reference": practitioner},
        "source": {"reference": practitioner},
    }
    if parsed.response_items:
        response["item"] = parsed.response_items
    try:
        result = submit_response(response, if_none_exist=f"identifier={IDENTIFIER_SYSTEM}|{submission}")
    except FHIRError as err:
        issues = [i.to_fhir() for i in err.issues]
        errors = _field_errors(form, parsed, ui, issues)
        if not errors:
            current_app.logger.error("clinician form not stored: %s",
                                     [(i.get("code"), i.get("expression")) for i in issues])
            errors = {"!server": ui["server_problem"]}
        return again(422)
    stored = f"QuestionnaireResponse/{result.response.res_id}"
    args: dict[str, Any] = {"variant": variant, "lang": lang}
    if not result.created:
        args["again"] = "1"
    if chosen and chosen != NONE:
        problem = _attach(stored, chosen, patient_id, scopes)
        if problem:
            args["not_attached"] = problem
    return redirect(url_for("web.clinician_form_saved", patient_id=patient_id, questionnaire_id=questionnaire_id,
                            response_id=result.response.res_id, **args), 303)


def _attach(response_ref: str, request_ref: str, patient_id: str, scopes: Scopes | None) -> str | None:
    """Names the response in the request's supportingInfo (once); the reason (a text key) when it could not."""
    res_type, _, res_id = request_ref.partition("/")
    if scopes is not None and not scopes.allows(res_type, "u"):
        return "scope"
    stored = current_app.extensions["lbp"].store.read(res_type, res_id)
    if stored is None or stored.deleted or stored.content is None:
        return "gone"
    resource = stored.resource()
    if (resource.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
        return "gone"
    if any(i.get("reference") == response_ref for i in resource.get("supportingInfo") or []):
        return None
    resource["supportingInfo"] = [*(resource.get("supportingInfo") or []), {"reference": response_ref}]
    try:
        update(resource, res_type, res_id, if_match=stored.version)
    except FHIRError as err:
        current_app.logger.error("response not attached to %s: %s", res_type, err.issues[0].code if err.issues
                                 else "error")
        return "conflict" if err.status == 412 else "refused"
    return None


@bp.get("/patients/<patient_id>/forms/<questionnaire_id>/responses/<response_id>")
def clinician_form_saved(patient_id: str, questionnaire_id: str, response_id: str):
    """What was stored: the response's author, subject, date and the request it is attached to."""
    _audit("read", "R", "QuestionnaireResponse", patient_id)
    try:
        _authorise(write=False)
        variant = _variant()
    except NotAuthorized as err:
        return _refuse(err)
    loaded, *refused = _load(patient_id, questionnaire_id)
    if loaded is None:
        return tuple(refused)
    questionnaire, patient, record = loaded
    lang = _language(questionnaire, variant)
    clin = texts("clinician", lang)
    stored = next((r for r in record if r.get("resourceType") == "QuestionnaireResponse"
                   and r.get("id") == response_id), None)
    if stored is None or not str(stored.get("questionnaire", "")).startswith(questionnaire.get("url", "")):
        return render_template("clinician_refused.html", ui=texts("ui", lang), clin=clin, lang=lang,
                               title=clin["form_unknown"], message=clin["form_unknown"], status=404, next=None), 404
    from app.auth import audit

    reference = f"QuestionnaireResponse/{response_id}"
    audit.add_entities(reference)
    request_type = supported_request_type(questionnaire)
    attached = [r for r in _open_requests(record, request_type) if reference in r["attached"]]
    attached += [{"reference": f"{r['resourceType']}/{r['id']}", "what": _concept_text(r.get("code")) or r["id"],
                  "status": r.get("status"), "authored": str(r.get("authoredOn") or "")[:10]}
                 for r in record if r.get("resourceType") == request_type and r.get("status") not in OPEN_REQUEST
                 and any(i.get("reference") == reference for i in r.get("supportingInfo") or [])]
    form = build_form(questionnaire, lang)
    not_attached = request.args.get("not_attached")
    return render_template(
        "clinician_form_saved.html", ui=texts("ui", lang), clin=clin, lang=lang, title=form.title, form=form,
        response=stored, reference=reference, author=_practitioner((stored.get("author") or {}).get("reference")),
        who=_who(patient, None, lang), patient_id=patient_id, variant=variant, request_type=request_type,
        attached=attached, again=request.args.get("again") == "1",
        not_attached=clin["not_attached"].get(not_attached) if not_attached else None,
    )
