"""The clinician's view of a patient's pathway (`/patients/<id>/pathway`), behind the FHIR API's SMART auth.

The access token comes in the Authorization header, or from an HttpOnly, SameSite=Strict cookie set by
`POST /clinician/session` (so a plain browser can use the page). Every view is audited as an AuditEvent.
"""
from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, url_for

from app.auth import AuthError, audit, auth, note
from app.auth.links import patient_link
from app.auth.scopes import Scopes
from app.auth.tokens import Principal
from app.charts import line_chart
from app.conventions import BASE, LANGUAGES, RULES_SYSTEM, variant_codes, variants
from app.errors import FHIRError
from app.reasoning.status_result import PathwayStatus
from app.store import search as engine
from app.translation import citation_language

from . import bp, sessions
from .artifacts import clinician_fields, patient_questionnaires, plotted_series
from .i18n import choose_language, page_language, requested_language, speaks, texts, translated

COOKIE = "lbp_clinician"
OBSERVATION_SYSTEM = f"{BASE}/CodeSystem/lbp-observation"
# The data-contract types a patient's record is read from (docs: /work/shared/data-contract.md)
RECORD_TYPES = ("Condition", "Observation", "QuestionnaireResponse", "Procedure", "MedicationStatement",
                "MedicationRequest", "DiagnosticReport", "ImagingStudy", "CarePlan", "ServiceRequest")
MAX_RECORD = 1000


class NotAuthorized(Exception):
    """A refused page: `message` for the log, `key` (and `args`) the words the page shows (clinician.*.json
    `refusals`), in the page's language."""

    def __init__(self, status: int, message: str, key: str = "token", **args: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.key = key
        self.args_shown = args


def _token_from_request() -> str | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorized(401, "Authorization must be a Bearer token", "bearer")
        return token.strip()
    return None


def authenticate_clinician(read_types: tuple[str, ...] = ("Patient", *RECORD_TYPES)) -> Principal | None:
    """The request's principal with read scope on the patient data; NotAuthorized (401/403) otherwise."""
    a = auth()
    n = note()
    n.sensitive = True
    if a.disabled:
        g.principal = None
        return None
    token = _token_from_request()
    cookie = request.cookies.get(COOKIE)
    if token:
        try:
            principal = a.tokens.principal(token)
        except AuthError as err:
            raise NotAuthorized(401, err.description, "token") from None
    elif cookie:
        found = sessions.principal(current_app.extensions["lbp"].store, cookie, current_app.config)
        if found is None:
            raise NotAuthorized(401, "The session has ended; sign in again", "session_ended")
        principal = found
        n.person = sessions.practitioner(current_app.extensions["lbp"].store, cookie)
    else:
        raise NotAuthorized(401, "An access token is required", "token_required")
    g.principal = principal
    scopes = Scopes(principal.scope)
    refused = [t for t in read_types if not scopes.allows(t, "r")]
    if refused:
        raise NotAuthorized(403, f"The access token's scopes do not allow reading {', '.join(refused)}",
                            "scope_read", types=", ".join(refused))
    return principal


def _ui_lang() -> str:
    return choose_language(request.args.get("lang"))


def _refuse(err: NotAuthorized):
    lang = _ui_lang()
    ui = texts("ui", lang)
    clin = texts("clinician", lang)
    message = clin["refusals"][err.key].format(**err.args_shown)
    response = current_app.make_response((
        render_template("clinician_refused.html", ui=ui, clin=clin, lang=lang, title=clin["unauthorized_title"],
                        message=message, status=err.status, next=request.path),
        err.status,
    ))
    if err.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lbp-pathway"'
    return response


@bp.after_app_request
def _audit_clinician_views(response):
    if request.blueprint == "web" and g.get("web_audit"):
        response = audit.record(response)  # a 503 instead of the page while its AuditEvent cannot be stored
    return response


# -- session ---------------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("web.clinician_session")


@bp.get("/clinician/session")
def clinician_session():
    lang = _ui_lang()
    return render_template("clinician_session.html", ui=texts("ui", lang), clin=texts("clinician", lang), lang=lang,
                           title=texts("clinician", lang)["session_title"], next=request.args.get("next", ""),
                           error=None, started=request.args.get("started") == "1")


@bp.post("/clinician/session")
def start_session():
    lang = _ui_lang()
    clin = texts("clinician", lang)
    token = (request.form.get("access_token") or "").strip()
    try:
        principal = auth().tokens.principal(token) if token else None
    except AuthError:
        principal = None
    if principal is None:
        return render_template("clinician_session.html", ui=texts("ui", lang), clin=clin, lang=lang,
                               title=clin["session_title"], next=request.form.get("next", ""),
                               error=clin["session_invalid"], started=False), 401
    named = (request.form.get("practitioner") or "").strip()
    practitioner = practitioner_reference(named) if named else None
    if named and practitioner is None:
        return render_template("clinician_session.html", ui=texts("ui", lang), clin=clin, lang=lang,
                               title=clin["session_title"], next=request.form.get("next", ""),
                               error=clin["practitioner_unknown"].format(value=named), started=False), 400
    target = request.form.get("next") or ""
    response = redirect(_safe_next(target) if target else url_for("web.clinician_session", started=1, lang=lang),
                        303)
    secret = sessions.start(current_app.extensions["lbp"].store, principal, practitioner)
    hours = float(current_app.config.get("CLINICIAN_SESSION_HOURS", sessions.SESSION_HOURS))
    response.set_cookie(COOKIE, secret, max_age=int(hours * 3600), httponly=True,
                        samesite="Strict", secure=request.is_secure, path="/")
    return response


def practitioner_reference(value: str) -> str | None:
    """`Practitioner/<id>` for a Practitioner in the record named as `Practitioner/<id>` or `<id>`; else None."""
    res_id = value.removeprefix("Practitioner/")
    if not res_id or "/" in res_id:
        return None
    stored = current_app.extensions["lbp"].store.read("Practitioner", res_id)
    if stored is None or stored.deleted:
        return None
    return f"Practitioner/{res_id}"


def session_practitioner() -> str | None:
    """The Practitioner the browser's clinician session was opened for, if one was named."""
    secret = request.cookies.get(COOKIE)
    return sessions.practitioner(current_app.extensions["lbp"].store, secret) if secret else None


@bp.post("/clinician/session/end")
def end_session():
    secret = request.cookies.get(COOKIE)
    if secret:
        sessions.revoke(current_app.extensions["lbp"].store, secret)
    response = redirect(url_for("web.clinician_session"), 303)
    response.delete_cookie(COOKIE, path="/", samesite="Strict", httponly=True, secure=request.is_secure)
    return response


# -- the patient's record -------------------------------------------------------------------------------


def read_record(patient_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The Patient and every resource of the data-contract types with patient=<id>."""
    lbp = current_app.extensions["lbp"]
    stored = lbp.store.read("Patient", patient_id)
    if stored is None or stored.deleted or stored.content is None:
        return None, []
    patient = stored.resource()
    resources: list[dict[str, Any]] = [patient]
    for res_type in RECORD_TYPES:
        params = lbp.store.search_params.params_for(res_type)
        name = "patient" if "patient" in params else "subject" if "subject" in params else None
        if name is None:
            continue
        value = f"Patient/{patient_id}"
        req = engine.parse(lbp.store, res_type, [(name, value), ("_count", str(MAX_RECORD))], strict=False)
        result = engine.execute(lbp.store, req, resolve_valueset=lbp.knowledge.valueset_matcher)
        resources.extend(s.resource() for s in result.matches)
    return patient, resources


def _actions_by_id(kb: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def visit(actions: list[dict[str, Any]] | None, plan: dict[str, Any]) -> None:
        for action in actions or []:
            if action.get("id"):
                found.setdefault(action["id"], {"action": action, "plan": plan})
            visit(action.get("action"), plan)

    for plan in kb.resources("PlanDefinition"):
        visit(plan.get("action"), plan)
    return found


def _rules(action: dict[str, Any]) -> list[str]:
    return [c["code"] for cc in action.get("code", []) or [] for c in cc.get("coding", [])
            if c.get("system") == RULES_SYSTEM and c.get("code")]


def _citations(action: dict[str, Any], primary: str | None) -> list[dict[str, str]]:
    """The action's source sentences, each with its language (citation-language) and its English version."""
    out = []
    for doc in action.get("documentation", []) or []:
        if not doc.get("citation") and not doc.get("display"):
            continue
        english = None
        for ext in (doc.get("_citation") or {}).get("extension", []) or []:
            if ext.get("url", "").endswith("/citation-en"):
                english = ext.get("valueString")
        out.append({"label": doc.get("label", ""), "display": doc.get("display", ""),
                    "citation": doc.get("citation", ""), "english": english or "",
                    "language": (citation_language(doc, primary) or "").split("-")[0]})
    return out


def _date(value: Any) -> date | None:
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _observation_value(obs: dict[str, Any]) -> Any:
    for key in ("valueInteger", "valueDecimal"):
        if key in obs:
            return obs[key]
    if "valueQuantity" in obs:
        return (obs["valueQuantity"] or {}).get("value")
    if "valueCodeableConcept" in obs:
        concept = obs["valueCodeableConcept"] or {}
        coding = (concept.get("coding") or [{}])[0]
        return coding.get("code") or concept.get("text")
    return None


def score_codes(kb: Any) -> frozenset[str]:
    """The score codes the project extracts: every concept of the lbp-observation CodeSystem."""
    system = kb.resolve(OBSERVATION_SYSTEM, "CodeSystem") or {}
    codes: set[str] = set()
    stack = list(system.get("concept") or [])
    while stack:
        concept = stack.pop()
        codes.add(concept.get("code", ""))
        stack.extend(concept.get("concept") or [])
    return frozenset(codes)


def score_history(resources: list[dict[str, Any]], codes: frozenset[str]) -> list[dict[str, Any]]:
    rows = []
    for r in resources:
        if r.get("resourceType") != "Observation" or r.get("status") not in ("final", "amended", "corrected"):
            continue
        for coding in (r.get("code") or {}).get("coding", []) or []:
            if coding.get("system") == OBSERVATION_SYSTEM and coding.get("code") in codes:
                rows.append({"date": (r.get("effectiveDateTime") or r.get("issued") or "")[:10],
                             "code": coding["code"], "display": coding.get("display") or coding["code"],
                             "value": _observation_value(r), "reference": f"Observation/{r.get('id')}"})
    rows.sort(key=lambda row: (row["date"], row["code"]))
    return rows


def _series(resources: list[dict[str, Any]], system: str, code: str) -> list[tuple[date, float]]:
    out = []
    for r in resources:
        if r.get("resourceType") != "Observation" or r.get("status") not in ("final", "amended", "corrected"):
            continue
        codings = (r.get("code") or {}).get("coding", [])
        if not any(c.get("system") == system and c.get("code") == code for c in codings):
            continue
        value = _observation_value(r)
        when = _date(r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start") or r.get("issued"))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and when:
            out.append((when, float(value)))
    return sorted(out)


def _first_value(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else None


def pathway_view(patient_id: str, variant: str, lang: str) -> dict[str, Any] | None:
    """Everything the page shows, from the reasoning engine's pathway status and the case features."""
    from app.reasoning.status import pathway_status

    patient, record = read_record(patient_id)
    if patient is None:
        return None
    audit.add_entities(*(f"{r['resourceType']}/{r['id']}" for r in record if r.get("id")))
    kb = current_app.extensions["lbp"].knowledge.base
    pathway = variants()[variant].pathway
    plan = kb.artifact(pathway, "PlanDefinition")
    if plan is None:
        raise FHIRError("not-found", f"PlanDefinition {pathway} is not loaded", "variant")
    computed = pathway_status(kb, plan, record, subject=patient)
    status = computed.to_dict()  # once: reading the result as a mapping builds its JSON shape each time
    fields = _case_fields(kb, plan, record, patient, computed.features)
    actions = _actions_by_id(kb)
    step = status.get("step")
    asked = _questionnaires_to_collect(kb, computed, lang)
    collect = [c for c in asked if not c["clinician"]]  # the patient's forms; the clinician's are listed apart
    chart = _progress_chart(kb, record, lang)
    clinical_lang = variants()[variant].language  # the patient link's language unless the clinician picks one
    next_step = _action_info(actions, step.get("because"), lang) if step else None
    fired = _fired(kb, status, record, lang)
    return {
        "who": _who(patient, status.get("date"), lang),
        "fired": fired,
        "next_rules": _next_rules(next_step, fired),
        "next_deadline": _next_deadline(status, next_step),
        "missing_words": _missing_in_words(kb, plan, status, lang, lang, actions),
        "step_display": _step_display(kb, status, lang),
        "pathway_title": translated(plan.resource, "title", lang, plan.resource.get("language")),
        "clinical_lang": clinical_lang,
        "risk_display": _risk_display(kb, status, lang),
        "patient": patient,
        "variant": variant,
        "status": status,
        "next_step": next_step,
        "recommendations": _recommendations(kb, actions, computed, lang),
        "flags": status.get("flags", []),
        "screening": status.get("screening"),
        "scores": score_history(record, score_codes(kb)),
        "nrs": status.get("nrs") or {},
        **fields,
        "pathway_start": _pathway_start(computed),
        "deadlines": [{**d, "title": _action_title(actions, d.get("action"), lang) or d.get("title")}
                      for d in status.get("deadlines", [])],
        "missing": status.get("missing", []),
        "collect": collect,
        "others": _other_questionnaires(kb, {c["id"] for c in collect}, lang),
        "clinician_forms": _clinician_forms(kb, plan, lang, {c["id"]: c["because"] for c in asked if c["clinician"]}),
        **chart,
        "issues": status.get("issues", []),
        "today": status.get("date"),
    }


def _who(patient: dict[str, Any], today: str | None, lang: str) -> dict[str, Any]:
    """Name, age and sex as the page's first line (the id only when the record has no name)."""
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    text = None
    if name:
        text = name.get("text") or " ".join([*(name.get("given") or []), name.get("family") or ""]).strip()
    born = _date(patient.get("birthDate"))
    now = _date(today) or date.today()
    age = None
    if born:
        age = now.year - born.year - ((now.month, now.day) < (born.month, born.day))
    identifier = next((i.get("value") for i in patient.get("identifier") or [] if i.get("value")), None)
    sex = texts("clinician", lang).get("sex", {}).get(patient.get("gender") or "unknown")
    return {"name": text, "age": age, "sex": sex, "birthDate": patient.get("birthDate"), "identifier": identifier}


def _concepts(kb: Any, system: str, lang: str) -> dict[str, str]:
    """code -> display in `lang` (the concept's designation in that language, else its display)."""
    out = {}
    for concept in (kb.resolve(system, "CodeSystem") or {}).get("concept", []) or []:
        shown = concept.get("display") or concept.get("code")
        for d in concept.get("designation", []) or []:
            if (d.get("language") or "").split("-")[0] == lang and d.get("value"):
                shown = d["value"]
                break
        out[concept.get("code")] = shown
    return out


def _entry_words(resource: dict[str, Any] | None, fallback: str | None) -> dict[str, Any]:
    """A record entry as a clinician reads it: what (code display or text), when."""
    if resource is None:
        return {"what": fallback, "when": None}
    concept = resource.get("code") or {}
    codings = concept.get("coding") or []
    what = concept.get("text") or next((c.get("display") for c in codings if c.get("display")), None)
    code = next((c.get("code") for c in codings if c.get("code")), None)
    if what and code and code not in what:
        what = f"{what} ({code})"
    what = what or code or fallback
    when = None
    for key in ("onsetDateTime", "effectiveDateTime", "authored", "recordedDate", "performedDateTime", "issued"):
        if resource.get(key):
            when = str(resource[key])[:10]
            break
    return {"what": what, "when": when}


def _fired(kb: Any, status: dict[str, Any], record: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Each flag found, in the variant's language, with the record entries behind it."""
    from app.reasoning.status import CONVENTIONS

    rules = _concepts(kb, CONVENTIONS.rules_system, lang)
    kinds = _concepts(kb, CONVENTIONS.flag_type_system, lang)
    by_ref = {f"{r.get('resourceType')}/{r.get('id')}": r for r in record}
    out = []
    for f in status.get("flags", []):
        evidence = [{"reference": e.get("reference"), **_entry_words(by_ref.get(e.get("reference") or ""),
                                                                   e.get("display") or e.get("reference"))}
                    for e in f.get("evidence", [])]
        out.append({"rule": f["rule"], "type": f.get("type"), "kind": kinds.get(f.get("type"), f.get("type")),
                    "display": rules.get(f["rule"]) or f.get("display") or f["rule"], "evidence": evidence})
    return out


def _risk_display(kb: Any, status: dict[str, Any], lang: str) -> str | None:
    from app.reasoning.status import CONVENTIONS

    screening = status.get("screening")
    if not screening:
        return None
    return _concepts(kb, CONVENTIONS.risk_system, lang).get(str((screening.get("risk") or {}).get("code")))


def _next_rules(next_step: dict[str, Any] | None, fired: list[dict[str, Any]]) -> list[str]:
    """The next step's rules that actually fired (else all its rules, each once)."""
    if not next_step:
        return []
    own = list(dict.fromkeys(next_step.get("rules") or []))
    fired_rules = [r for r in own if any(f["rule"] == r for f in fired)]
    return fired_rules or own


def _next_deadline(status: dict[str, Any], next_step: dict[str, Any] | None) -> dict[str, Any] | None:
    """The open deadline of the next step if it has one, else the earliest open one (a met deadline is history)."""
    deadlines = [d for d in status.get("deadlines", []) if not d.get("metOn")]
    own = [d for d in deadlines if next_step and d.get("action") == next_step.get("id")]
    ordered = sorted(own or deadlines, key=lambda d: d.get("due") or "")
    return ordered[0] if ordered else None


def _forms_of_features(kb: Any, plan: Any) -> dict[str, list[str]]:
    """Case feature -> the patient questionnaires (ids) its value is read from, through the features it reads."""
    library = kb.library_for(plan.resource)
    if library is None:
        return {}
    offered = set(patient_questionnaires(kb))
    direct: dict[str, set[str]] = {}
    deps: dict[str, frozenset[str]] = {}
    for feature in library.features:
        text = feature.expression.text
        direct[feature.name] = {q for q in offered if f"Questionnaire/{q}" in text or f"'{q}'" in text}
        deps[feature.name] = feature.depends_on
    variables = {}
    for ext in library.resource.get("extension", []) or []:
        value = ext.get("valueExpression") or {}
        if value.get("name"):
            variables[value["name"]] = value.get("expression", "")
    out: dict[str, list[str]] = {}
    for name in direct:
        seen, stack, forms = set(), [name], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            forms |= direct.get(current, set())
            forms |= {q for q in offered if f"Questionnaire/{q}" in variables.get(current, "")}
            stack.extend(deps.get(current, ()))
        out[name] = sorted(forms)
    return out


def _step_display(kb: Any, status: dict[str, Any], lang: str) -> str | None:
    from app.reasoning.status import CONVENTIONS

    step = status.get("step") or {}
    return _concepts(kb, CONVENTIONS.step_system, lang).get(str(step.get("code"))) or step.get("display")


def _missing_in_words(kb: Any, plan: Any, status: dict[str, Any], clinical_lang: str,
                      lang: str, actions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What the rules cannot decide for lack of data: the decisions in words, and the forms that collect it."""
    from app.reasoning.status import CONVENTIONS

    rules = _concepts(kb, CONVENTIONS.rules_system, clinical_lang)  # names of rules for untitled actions
    forms = _forms_of_features(kb, plan)
    out = []
    for m in status.get("missing", []):
        collected = []
        for qid in forms.get(m["feature"], []):
            questionnaire = kb.get("Questionnaire", qid) or {}
            collected.append({"id": qid, "title": translated(questionnaire, "title", lang,
                                                             questionnaire.get("language")) or qid})
        # what waits for the fact: each blocked action by its title (the artifact's words), with its rules;
        # an action without a title by its rules' names
        decides: list[dict[str, Any]] = []
        for b in m.get("blocks", []):
            title = _action_title(actions, b.get("action"), lang)
            codes = list(dict.fromkeys(b.get("rules", [])))
            shown = title or ", ".join(rules.get(r, r) for r in codes[:3])
            if shown and all(d["display"] != shown for d in decides):
                decides.append({"display": shown, "rules": codes[:4], "more": max(0, len(codes) - 4)})
        # the Library's descriptions are English: shown to English readers, the decisions in words to everyone
        out.append({"decides": decides, "description": m.get("description") if lang == "en" else None,
                    "forms": collected})
    return out


# Fields of the page -> the clinician-field tag of the case feature that fills them (app/web/artifacts.py).
CASE_FIELDS = {"weeks_since_onset": "weeks-since-onset", "onset_date": "onset-date",
               "weeks_of_treatment": "weeks-of-treatment", "treatment_start": "treatment-start"}


def _case_fields(kb: Any, plan: Any, record: list[dict[str, Any]], patient: dict[str, Any],
                 evaluated: Any = None) -> dict[str, Any]:
    """The durations and dates the page shows, from the case features the Library tags for them.

    `evaluated` is the status's own evaluation of the features (each feature is evaluated once per view).
    """
    from app.reasoning.features import evaluate_features, patient_context

    library = kb.library_for(plan.resource)
    if library is None:
        return dict.fromkeys(CASE_FIELDS)
    if evaluated is None or evaluated.library.resource is not library.resource:
        evaluated = evaluate_features(kb, library, patient_context(record, subject=patient,
                                                                   terminology=kb.terminology))
    features = evaluated.values()
    named = clinician_fields(library.resource)
    return {field: _first_value(features.get(named.get(tag, ""), [])) for field, tag in CASE_FIELDS.items()}


def _action_title(actions: dict[str, dict[str, Any]], action_id: str | None, lang: str) -> str | None:
    """An action's title in `lang` (its translation extension), by the action's id."""
    entry = actions.get(action_id or "")
    if entry is None:
        return None
    return translated(entry["action"], "title", lang, entry["plan"].get("language"))


def _action_info(actions: dict[str, dict[str, Any]], action_id: str | None, lang: str) -> dict[str, Any] | None:
    entry = actions.get(action_id or "")
    if entry is None:
        return None
    action = entry["action"]
    return {"id": action_id, "title": _action_title(actions, action_id, lang), "priority": action.get("priority"),
            "rules": _rules(action), "citations": _citations(action, entry["plan"].get("language")),
            "plan": entry["plan"].get("title") or entry["plan"].get("id")}


def _recommendations(kb: Any, actions: dict[str, dict[str, Any]], status: PathwayStatus,
                     lang: str) -> list[dict[str, Any]]:
    """The prioritised actions of every pathway step, each once, with the step it belongs to (in `lang`)."""
    from app.reasoning.status import CONVENTIONS

    steps = _concepts(kb, CONVENTIONS.step_system, lang)
    recommendations = []
    seen: set[str | None] = set()
    for s in status.steps:
        for a in s.actions:
            if a.priority and a.id not in seen:
                seen.add(a.id)
                info = _action_info(actions, a.id, lang) or {"id": a.id, "title": a.title, "rules": list(a.rules),
                                                             "citations": [], "priority": a.priority}
                info["step"] = steps.get(str(s.code)) or s.display or s.code
                recommendations.append(info)
    return recommendations


def _questionnaires_to_collect(kb: Any, status: PathwayStatus, lang: str) -> list[dict[str, Any]]:
    """The forms the rules ask for, each marked whether the clinician fills it (never sent to the patient)."""
    from .patient import clinician_form

    collect = []
    for c in status.collect:
        qid = c.questionnaire.rstrip("/").rsplit("/", 1)[-1].split("|")[0]
        questionnaire = kb.resolve(c.questionnaire, "Questionnaire") or {}
        title = translated(questionnaire, "title", lang, questionnaire.get("language")) or c.title or qid
        collect.append({"id": qid, "title": title, "because": list(c.because),
                        "clinician": clinician_form(questionnaire)})
    return collect


def _other_questionnaires(kb: Any, offered: set[str], lang: str) -> list[dict[str, Any]]:
    """The patient's questionnaires not already offered, for a link the clinician may send anyway."""
    others = []
    for qid in patient_questionnaires(kb):
        questionnaire = kb.get("Questionnaire", qid)
        if questionnaire is not None and qid not in offered:
            others.append({"id": qid, "title": translated(questionnaire, "title", lang, questionnaire.get("language"))})
    return others


def _clinician_forms(kb: Any, plan: Any, lang: str, asked: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The forms the clinician fills in (Questionnaires marked filled-by clinician) that the variant's pathway
    uses, for the fill-in page; `asked`: those the rules ask for now, with the rules that ask."""
    from .patient import clinician_form

    used = kb.derived(("pathway-questionnaires", plan.label), lambda: _pathway_questionnaires(kb, plan.resource))
    forms = [{"id": q.get("id"), "title": translated(q, "title", lang, q.get("language")) or q.get("id"),
              "because": asked.get(str(q.get("id")), [])}
             for q in kb.resources("Questionnaire") if clinician_form(q) and q.get("url") in used]
    return sorted(forms, key=lambda f: (not f["because"], f["title"] or ""))


def _pathway_questionnaires(kb: Any, plan: dict[str, Any]) -> frozenset[str]:
    """The canonical URLs of the Questionnaires a pathway reaches through its PlanDefinitions and
    ActivityDefinitions (not through the Library's expressions)."""
    found: set[str] = set()
    seen: set[str] = set()
    stack: list[Any] = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node.startswith(("http://", "https://")):
            url = node.split("|", 1)[0]
            if url in seen:
                continue
            seen.add(url)
            target = kb.resolve(url)
            kind = (target or {}).get("resourceType")
            if kind == "Questionnaire":
                found.add(url)
            elif kind in ("PlanDefinition", "ActivityDefinition"):
                stack.append(target)
    return frozenset(found)


def _progress_chart(kb: Any, record: list[dict[str, Any]], lang: str) -> dict[str, Any]:
    """The chart of the plotted series (each on its own scale) and the series themselves."""
    clin = texts("clinician", lang)
    series = [(s, _series(record, s.system, s.code)) for s in plotted_series(kb)]
    described = ", ".join(clin["plot_series"].format(label=s.label, count=len(values), maximum=f"{s.maximum:g}")
                          for s, values in series)
    plot = line_chart([(s.label, s.maximum, values) for s, values in series if values],
                      title=clin["plot_title"], description=clin["plot_desc"].format(series=described))
    return {"plot": plot, "series": [{"label": s.label, "maximum": s.maximum, "values": values}
                                     for s, values in series]}


def _pathway_start(status: PathwayStatus) -> str | None:
    """When the patient's pathway began, as the engine counts its milestones (the deadlines' `from`)."""
    starts = [d.from_date for d in status.deadlines if d.from_source not in (None, "today")]
    return min(starts) if starts else None


_SPEAKS: dict[tuple[int, str, str], tuple[Any, bool]] = {}


def pathway_speaks(kb: Any, pathway: str, lang: str) -> bool:
    """The variant's artifacts carry `lang` for every text the pathway page can show: the titles of the pathway's
    actions (through its definitionCanonical rules), the names of its rules, steps, risk groups and flag types,
    and the titles of the patient's questionnaires. Quotations are shown in their own language, marked."""
    from app.reasoning.status import CONVENTIONS

    key = (id(kb), pathway, lang)
    hit = _SPEAKS.get(key)
    if hit is not None and hit[0] is kb:
        return hit[1]
    rules: set[str] = set()
    seen: set[str] = set()
    stack = [kb.resolve(pathway, "PlanDefinition")]
    answer = True
    while stack and answer:
        plan = stack.pop()
        if plan is None or plan.get("url") in seen:
            continue
        seen.add(plan.get("url"))
        if plan.get("url") == pathway:  # the page names the variant's pathway, not the plans it includes
            answer = speaks(plan, "title", lang, plan.get("language"))
        actions = list(plan.get("action", []) or [])
        while actions and answer:
            action = actions.pop()
            answer = speaks(action, "title", lang, plan.get("language"))
            rules.update(_rules(action))
            if action.get("definitionCanonical"):
                stack.append(kb.resolve(action["definitionCanonical"], "PlanDefinition"))
            actions.extend(action.get("action", []) or [])
    for system, codes in ((CONVENTIONS.rules_system, rules), (CONVENTIONS.step_system, None),
                          (CONVENTIONS.risk_system, None), (CONVENTIONS.flag_type_system, None)):
        if not answer:
            break
        codesystem = kb.resolve(system, "CodeSystem") or {}
        if (codesystem.get("language") or "en").split("-")[0] == lang:
            continue
        named = {c.get("code") for c in codesystem.get("concept", []) or []
                 if any((d.get("language") or "").split("-")[0] == lang and d.get("value")
                        for d in c.get("designation", []) or [])}
        answer = (codes if codes is not None else {c.get("code") for c in codesystem.get("concept", []) or []}) \
            <= named
    for qid in patient_questionnaires(kb) if answer else []:
        questionnaire = kb.get("Questionnaire", qid) or {}
        answer = answer and speaks(questionnaire, "title", lang, questionnaire.get("language"))
    if len(_SPEAKS) > 64:
        _SPEAKS.clear()
    _SPEAKS[key] = (kb, answer)
    return answer


def page_lang(variant: str) -> str:
    """The pathway page's one language: the reader's when the variant's artifacts carry it, else the variant's."""
    kb = current_app.extensions["lbp"].knowledge.base
    pathway = variants()[variant].pathway
    return page_language(requested_language(request.args.get("lang")), variants()[variant].language,
                         lambda lang: kb is not None and pathway_speaks(kb, pathway, lang))


def _variant() -> str:
    variant = request.values.get("variant") or current_app.config.get("DEFAULT_VARIANT") or "se"
    if variant not in variant_codes():
        raise NotAuthorized(400, f"Unknown variant {variant!r}; use one of {', '.join(variant_codes())}", "variant",
                            variant=variant, choices=", ".join(variant_codes()))
    return variant


def _page_title(view: dict[str, Any], clin: dict[str, Any]) -> str:
    who = view["who"]
    return f"{who['name'] or clin['patient']} – {clin['title']}"


def _render_pathway(patient_id: str, *, link: str | None = None, link_error: str | None = None):
    g.web_audit = True
    n = note()
    n.interaction = "read"
    n.action = "R"
    n.resource_type = "Patient"
    audit.add_entities(f"Patient/{patient_id}")
    try:
        authenticate_clinician()
        variant = _variant()
    except NotAuthorized as err:
        return _refuse(err)
    lang = page_lang(variant)
    clin = texts("clinician", lang)
    view = pathway_view(patient_id, variant, lang)
    if view is None:
        return render_template("clinician_refused.html", ui=texts("ui", lang), clin=clin, lang=lang,
                               title=clin["not_found"], message=clin["not_found"], status=404, next=None), 404
    return render_template("clinician.html", ui=texts("ui", lang), clin=clin, lang=lang, v=view,
                           variants=variant_codes(), languages=LANGUAGES, title=_page_title(view, clin),
                           link=link, variant_labels={code: v.label for code, v in variants().items()},
                           variant_languages={code: v.language for code, v in variants().items()},
                           link_error=link_error, patient_id=patient_id, wide=True)


@bp.get("/patients/<patient_id>/pathway")
def pathway(patient_id: str):
    return _render_pathway(patient_id)


@bp.post("/patients/<patient_id>/pathway/link")
def create_link(patient_id: str):
    """Creates a patient link for the questionnaires chosen (the missing ones are preselected)."""
    g.web_audit = True
    try:
        authenticate_clinician()
        variant = _variant()
    except NotAuthorized as err:
        return _refuse(err)
    chosen = [q for q in request.form.getlist("questionnaire") if q]
    lang = request.form.get("link_lang") or None
    if lang not in LANGUAGES:
        lang = None
    if not chosen:
        return _render_pathway(patient_id, link_error=texts("clinician", _ui_lang())["link_none"])
    kb = current_app.extensions["lbp"].knowledge.base
    unknown = [q for q in chosen if kb.get("Questionnaire", q) is None]
    if unknown:
        return _render_pathway(patient_id, link_error=", ".join(unknown))
    from .patient import clinician_form

    # the clinician's own forms are filled in on their page, never sent to the patient
    theirs = [q for q in chosen if clinician_form(kb.get("Questionnaire", q))]
    if theirs:
        return _render_pathway(patient_id, link_error=texts("clinician", page_lang(variant))["link_clinician_form"]
                               .format(forms=", ".join(theirs)))
    start = request.form.get("start") or None
    url = patient_link(patient_id, chosen, lang=lang, variant=variant, start=start)
    return _render_pathway(patient_id, link=url)
