"""Patient pages: questionnaires through a signed link (`/q/<token>`), and the information page per variant."""
from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

from flask import abort, current_app, jsonify, redirect, render_template, request, url_for

from app.auth.links import IDENTIFIER_SYSTEM, LinkError, PatientLink, read_token
from app.conventions import BASE, variant_codes, variants
from app.errors import FHIRError
from app.records import conditional_ids, submit_response
from app.store.db import instant

from . import bp
from .artifacts import calendar_weeks
from .forms import Form, Values, build_form, issue_link_id, parse_form, required_missing
from .i18n import choose_language, texts


def questionnaire_url(questionnaire_id: str) -> str:
    return f"{BASE}/Questionnaire/{questionnaire_id}"


FILLED_BY = "https://lbp-pathway.org/fhir/StructureDefinition/filled-by"


def clinician_form(questionnaire: dict[str, Any] | None) -> bool:
    """A form the clinician fills (referral template, rehabilitation plan, discharge letter): never a patient page."""
    return any(e.get("url") == FILLED_BY and e.get("valueCode") == "clinician"
               for e in (questionnaire or {}).get("extension", []) or [])


def load_questionnaire(questionnaire_id: str) -> dict[str, Any] | None:
    found = current_app.extensions["lbp"].knowledge.resolve(questionnaire_url(questionnaire_id))
    return found if found and found.get("resourceType") == "Questionnaire" else None


def _link(token: str) -> PatientLink:
    return read_token(token)


def _refused(err: LinkError):
    lang = choose_language(request.args.get("lang"))
    ui = texts("ui", lang)
    message = ui["refused_expired"] if err.reason in ("expired", "revoked") else ui["refused_tampered"]
    return render_template("refused.html", ui=ui, lang=lang, title=ui["refused_title"], message=message), err.status


def _language(link: PatientLink) -> str:
    return choose_language(request.args.get("lang"), link.lang, variant=link.variant)


def answered(link: PatientLink, questionnaire_id: str) -> bool:
    query = f"identifier={IDENTIFIER_SYSTEM}|{link.identifier_value(questionnaire_id)}"
    return bool(conditional_ids("QuestionnaireResponse", query))


def _next_open(link: PatientLink) -> str | None:
    return next((q for q in link.questionnaire_ids if not answered(link, q)), None)


def _page(link: PatientLink, token: str, questionnaire_id: str, form: Form, values: Values,
          errors: dict[str, str], status: int = 200):
    ui = texts("ui", form.lang)
    position = link.questionnaire_ids.index(questionnaire_id) + 1
    return render_template(
        "questionnaire.html", ui=ui, lang=form.lang, form=form, values=values, errors=errors, token=token,
        questionnaire_id=questionnaire_id, title=form.title, variant=link.variant,
        position=position, total=len(link.questionnaire_ids), scores=None,
    ), status


@bp.get("/q/<token>")
def questionnaire(token: str):
    """The next questionnaire of the link not yet answered; when all are, the confirmation."""
    try:
        link = _link(token)
    except LinkError as err:
        return _refused(err)
    questionnaire_id = _next_open(link)
    if questionnaire_id is None:
        return redirect(url_for("web.done", token=token, questionnaire_id=link.questionnaire_ids[-1],
                                **_lang_arg()), 303)
    return show(token, questionnaire_id)


def _lang_arg() -> dict[str, Any]:
    return {"lang": request.args["lang"]} if request.args.get("lang") else {}


@bp.get("/q/<token>/<questionnaire_id>")
def show(token: str, questionnaire_id: str):
    try:
        link = _link(token)
    except LinkError as err:
        return _refused(err)
    if questionnaire_id not in link.questionnaire_ids:
        abort(404)
    resource = load_questionnaire(questionnaire_id)
    lang = _language(link)
    if resource is None or clinician_form(resource):
        ui = texts("ui", lang)
        return render_template("refused.html", ui=ui, lang=lang, title=ui["refused_title"],
                               message=ui["unknown_questionnaire"]), 404
    form = build_form(resource, lang)
    return _page(link, token, questionnaire_id, form, Values(), {})


def _field_errors(form: Form, parsed, ui: dict[str, Any], issues: list[dict[str, Any]]) -> dict[str, str]:
    messages: dict[str, str] = {}
    for link_id, key in parsed.errors.items():
        messages[link_id] = ui["errors"][key]
    for link_id in required_missing(form, parsed):
        messages.setdefault(link_id, ui["errors"]["required"])
    for issue in issues:
        if issue.get("severity") not in ("error", "fatal"):
            continue
        link_id = issue_link_id(issue, parsed.paths, form)
        if link_id is None or link_id in messages:
            continue
        field = form.by_link.get(link_id)
        code = issue.get("code")
        if code == "required":
            messages[link_id] = ui["errors"]["required"]
        elif code == "value" and field is not None and (field.minimum is not None or field.maximum is not None):
            if field.minimum is not None and field.maximum is not None:
                messages[link_id] = ui["errors"]["out_of_range"].format(min=field.minimum, max=field.maximum)
            elif field.minimum is not None:
                messages[link_id] = ui["errors"]["below_min"].format(min=field.minimum)
            else:
                messages[link_id] = ui["errors"]["above_max"].format(max=field.maximum)
        elif code == "code-invalid":
            messages[link_id] = ui["errors"]["invalid_option"]
        elif code == "too-long":
            messages[link_id] = ui["errors"]["too_long"]
        else:
            messages[link_id] = ui["errors"]["other"].format(text=(issue.get("details") or {}).get("text", ""))
    return messages


def _about_response(issues: list[dict[str, Any]]) -> bool:
    return any(e.startswith("QuestionnaireResponse") for i in issues for e in i.get("expression", []) or [])


def _range_errors(form: Form, parsed, ui: dict[str, Any]) -> list[dict[str, Any]]:
    """minValue/maxValue checked here as well, so every out-of-range field is marked in one round."""
    issues = []
    for path, link_id in parsed.paths.items():
        field = form.by_link[link_id]
        if field.type not in ("integer", "decimal"):
            continue
        for answer in _answers_at(parsed.response_items, path):
            value = answer.get("valueInteger", answer.get("valueDecimal"))
            if value is None:
                continue
            low = field.minimum if isinstance(field.minimum, (int, float)) else None
            high = field.maximum if isinstance(field.maximum, (int, float)) else None
            if (low is not None and value < low) or (high is not None and value > high):
                issues.append({"severity": "error", "code": "value", "expression": [path]})
    return issues


def _answers_at(items: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    import re

    node: dict[str, Any] = {"item": items}
    for index in re.findall(r"item\[(\d+)\]", path):
        node = node["item"][int(index)]
    return node.get("answer", [])


def _audit_as_link(link: PatientLink) -> None:
    """A submit writes patient data: audited, with the link (not a client) as the agent."""
    from flask import g

    from app.auth import note
    from app.auth.tokens import Principal

    # the agent names the link and, for a link from a CDS card, the CDS client whose call minted it
    minted_for = f" (CDS client {link.issuer})" if link.issuer else ""
    g.principal = Principal(f"patient-link:{link.link_id}{minted_for}", "", link.expires)
    g.web_audit = True
    n = note()
    n.sensitive = True
    n.interaction = "create"
    n.action = "C"
    n.resource_type = "QuestionnaireResponse"


def build_response(link: PatientLink, questionnaire: dict[str, Any], questionnaire_id: str, items: list,
                   status: str = "completed") -> dict[str, Any]:
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": IDENTIFIER_SYSTEM, "value": link.identifier_value(questionnaire_id)},
        "questionnaire": questionnaire.get("url") or questionnaire_url(questionnaire_id),
        "status": status,
        "subject": {"reference": f"Patient/{link.patient_id}"},
        "authored": instant(time.time()),
        "author": {"reference": f"Patient/{link.patient_id}"},
        "source": {"reference": f"Patient/{link.patient_id}"},
    }
    if items:
        response["item"] = items
    return response


@bp.post("/q/<token>/<questionnaire_id>")
def submit(token: str, questionnaire_id: str):
    try:
        link = _link(token)
    except LinkError as err:
        return _refused(err)
    if questionnaire_id not in link.questionnaire_ids:
        abort(404)
    resource = load_questionnaire(questionnaire_id)
    if resource is None or clinician_form(resource):  # a clinician form is never stored with the patient as author
        abort(404)
    _audit_as_link(link)
    lang = choose_language(request.form.get("lang"), request.args.get("lang"), link.lang, variant=link.variant)
    ui = texts("ui", lang)
    patient = current_app.extensions["lbp"].store.read("Patient", link.patient_id)
    if patient is None or patient.deleted:  # the record is gone: nothing may be filed under it
        return render_template("refused.html", ui=ui, lang=lang, title=ui["refused_title"],
                               message=ui["refused_tampered"]), 410
    form = build_form(resource, lang)
    values = Values.from_form(request.form, form)
    parsed = parse_form(form, values)
    pre_issues = _range_errors(form, parsed, ui)
    errors = _field_errors(form, parsed, ui, pre_issues)
    if errors:
        return _page(link, token, questionnaire_id, form, values, errors, 422)
    response = build_response(link, resource, questionnaire_id, parsed.response_items)
    query = f"identifier={IDENTIFIER_SYSTEM}|{link.identifier_value(questionnaire_id)}"
    try:
        result = submit_response(response, if_none_exist=query)
    except FHIRError as err:
        issues = [i.to_fhir() for i in err.issues]
        errors = _field_errors(form, parsed, ui, issues)
        status = 422
        if not errors:
            # nothing the patient can correct (e.g. an extracted Observation refused): our problem, not theirs
            current_app.logger.error("patient response not stored: %s",
                                     [(i.get("code"), i.get("expression")) for i in issues])
            errors = {"": ui["server_problem"]}
            status = 422 if _about_response(issues) else 500
        return _page(link, token, questionnaire_id, form, values, errors, status)
    args: dict[str, Any] = {"lang": lang}
    if not result.created:
        args["again"] = "1"
    return redirect(url_for("web.done", token=token, questionnaire_id=questionnaire_id, **args), 303)


@bp.post("/q/<token>/<questionnaire_id>/calculate")
def calculate(token: str, questionnaire_id: str):
    """The questionnaire's calculated items (totals, risk) for the answers so far — the live total (JSON)."""
    try:
        link = _link(token)
    except LinkError as err:
        return jsonify({"error": err.reason}), err.status
    resource = load_questionnaire(questionnaire_id) if questionnaire_id in link.questionnaire_ids else None
    if resource is None:
        return jsonify({"error": "not-found"}), 404
    lang = choose_language(request.form.get("lang"), link.lang, variant=link.variant)
    form = build_form(resource, lang)
    parsed = parse_form(form, Values.from_form(request.form, form))
    return jsonify({"scores": scores_for(form, link, questionnaire_id, parsed.response_items),
                    "enabled": sorted(parsed.enabled)})


def scores_for(form: Form, link: PatientLink, questionnaire_id: str, items: list) -> dict[str, str]:
    from app.reasoning.scoring import score_response

    kb = current_app.extensions["lbp"].knowledge.base
    response = build_response(link, form.questionnaire, questionnaire_id, items, status="in-progress")
    try:
        scores = score_response(form.questionnaire, response, terminology=kb.terminology if kb else None)
    except FHIRError:
        return {}
    out: dict[str, str] = {}
    for link_id, value in scores.items():
        out[link_id] = display_value(form, link_id, value)
    return out


def display_value(form: Form, link_id: str, value: Any) -> str:
    if value is None:
        return "–"
    field = form.by_link.get(link_id)
    if isinstance(value, dict) and field is not None:
        option = next((o for o in field.options if o.value == value.get("code")), None)
        return option.label if option else str(value.get("display") or value.get("code"))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@bp.get("/q/<token>/<questionnaire_id>/done")
def done(token: str, questionnaire_id: str):
    try:
        link = _link(token)
    except LinkError as err:
        return _refused(err)
    lang = _language(link)
    ui = texts("ui", lang)
    next_id = _next_open(link)
    resource = load_questionnaire(questionnaire_id)
    title = build_form(resource, lang).title if resource else ui["done_title"]
    return render_template("done.html", ui=ui, lang=lang, title=ui["done_title"], questionnaire_title=title,
                           again=request.args.get("again") == "1", token=token, next_id=next_id,
                           variant=link.variant)


# -- information page (P2, P3) ------------------------------------------------------------------------


def calendar(start: date, today: date, weeks: int) -> dict[str, Any]:
    """The weeks the pathway's calendar asks for (T5: eight in the primary sector) from `start`, today's marked."""
    rows = []
    for n in range(weeks):
        first = start + timedelta(days=7 * n)
        last = first + timedelta(days=6)
        rows.append({"number": n + 1, "first": first, "last": last, "current": first <= today <= last,
                     "past": last < today})
    elapsed = (today - start).days
    return {"start": start, "end": start + timedelta(days=7 * weeks - 1), "weeks": rows,
            "week_now": elapsed // 7 + 1 if 0 <= elapsed < 7 * weeks else None, "after": elapsed >= 7 * weeks,
            "before": elapsed < 0}


@bp.get("/info/<variant>")
def info(variant: str):
    if variant not in variant_codes():
        abort(404)
    lang = choose_language(request.args.get("lang"), variant=variant)
    return _info_page(variant, lang, request.args.get("start"))


@bp.get("/q/<token>/info")
def link_info(token: str):
    try:
        link = _link(token)
    except LinkError as err:
        return _refused(err)
    return _info_page(link.variant, _language(link), request.args.get("start") or link.start)


def _info_page(variant: str, lang: str, start_text: str | None):
    ui = texts("ui", lang)
    content = texts("info", lang)
    page = content["variants"][variant]
    today = date.today()
    try:
        start = date.fromisoformat(start_text) if start_text else today
    except ValueError:
        start = today
    cal = None
    if page.get("calendar"):
        kb = current_app.extensions["lbp"].knowledge.base
        weeks = calendar_weeks(kb, variants()[variant].pathway) if kb is not None else None
        if weeks:
            cal = calendar(start, today, weeks)
        else:  # the page says a calendar belongs here, the loaded pathway gives no length: shown without one
            current_app.logger.error("no calendar-duration in the %s pathway; the information page has no calendar",
                                     variant)
    return render_template("info.html", ui=ui, lang=lang, title=page["title"], page=page, common=content,
                           calendar=cal, variant=variant)
