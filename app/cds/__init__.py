"""CDS Hooks 2.0 service (https://cds-hooks.hl7.org/2.0/): discovery, service calls, feedback, client JWTs, CORS.

Routes: `GET /cds-services` (discovery), `POST /cds-services/<id>` (a hook call),
`POST /cds-services/<id>/feedback` (https://cds-hooks.hl7.org/2.0/#feedback), `GET /cds-feedback`
(feedback counted by rule, indicator and outcome), `GET /cds-catalogue` (the rule catalogue the cards
link to). Configuration keys are listed in docs/cds-hooks.md.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request

from app.auth.links import make_token
from app.auth.public import primary_base
from app.auth.scopes import FEEDBACK_SCOPE
from app.cds.auth import IssuersFile, Unauthorized, Verifier
from app.cds.registry import Registry
from app.cds.tables import create_tables
from app.conventions import RULES_SYSTEM
from app.errors import FHIRError

log = logging.getLogger("lbp.cds")
ROOT = Path(__file__).resolve().parents[2]

bp = Blueprint("cds", __name__)

CONFIG_DEFAULTS: dict[str, Any] = {
    "CDS_AUTH_DISABLED": False,  # development only: loud in the log
    "CDS_TRUSTED_ISSUERS": None,  # inline list of issuers (tests); see docs/cds-hooks.md
    "CDS_TRUSTED_ISSUERS_FILE": str(ROOT / "var" / "cds-issuers.json"),
    "CDS_CLIENT_VARIANTS": {},  # "iss" or "iss|tenant" -> variant
    "CDS_HOOKS_DIR": str(ROOT / "hooks"),
    "CDS_PUBLIC_BASE_URL": None,  # absolute base for links and for the JWT aud; else PUBLIC_BASE_URL, else the request
    "CDS_CATALOGUE_URL": None,  # where the rule catalogue is published; default: this server's /cds-catalogue
    "CDS_SMART_LAUNCH_URL": None,  # a SMART app launch URL to offer on every card (link type smart)
    "CDS_CORS_ORIGINS": "*",
    # development: a refused call's reason (the check that failed) in the 401's body and WWW-Authenticate
    "CDS_DEBUG_REFUSALS": False,
    "CDS_FETCH_TIMEOUT": 3.0,
    "CDS_FETCH_CONNECT_TIMEOUT": 1.0,
    "CDS_FETCH_BATCH": True,  # fetch the templates as one FHIR batch, falling back to parallel reads
    "CDS_PREFETCH_DEADLINE": 5.0,  # seconds for the whole prefetch of one call; then 412
    "CDS_FHIR_SERVER_ALLOWLIST": None,  # fhirServer bases this service may fetch from (list or space-separated)
    "CDS_ALLOW_LOCAL_FHIR_SERVER": False,  # loopback / link-local fhirServer (development, tests, the demo)
    "CDS_VALIDATE_REQUESTS": True,  # draft orders and prefetched resources through the write validator
    "CDS_RECORD_CARDS": True,
    "CDS_BENCH_FLOOR": False,  # adds /cds-services/_floor ({"cards": []}) for bench/cds.py
    "CDS_TODAY": None,
    "REASONING_FAIL_FEATURES": (),  # fault injection (tests only): case features forced to fail
}


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


class CDSState:
    """Per-application CDS services: the registry, the JWT verifier, and caches keyed by knowledge snapshot."""

    def __init__(self, app: Any):
        config = app.config
        self.registry = Registry(Path(config["CDS_HOOKS_DIR"]))
        self.issuers = IssuersFile(config.get("CDS_TRUSTED_ISSUERS"), config.get("CDS_TRUSTED_ISSUERS_FILE"))
        lbp = app.extensions["lbp"]
        store = lbp.store
        self.verifier = Verifier(lbp.auth.client_jwt, self.issuers, timeout=float(config["CDS_FETCH_TIMEOUT"]))
        from app.cds.service import CardLog

        self.card_log = CardLog(store)
        self.anchors = self._catalogue_anchors()
        self._lock = threading.Lock()
        # (id(kb), ...) -> (kb, value): the kb is kept and compared so a recycled id never hits
        self._displays: dict[tuple[int, str], tuple[Any, dict[str, str]]] = {}
        self._languages: dict[tuple[int, str], tuple[Any, dict[str, str]]] = {}

    @staticmethod
    def _catalogue_anchors() -> dict[str, str]:
        path = ROOT / "docs" / "catalogue.md"
        anchors: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                m = re.match(r"^###\s+([A-Z]+[0-9]+)\s+(.*)$", line)
                if m:
                    anchors[m.group(1)] = _slug(line.lstrip("#"))
        return anchors

    def rule_displays(self, kb: Any, language: str) -> dict[str, str]:
        key = (id(kb), language)
        hit = self._displays.get(key)
        if hit is not None and hit[0] is kb:
            return hit[1]
        out: dict[str, str] = {}
        cs = kb.resolve(RULES_SYSTEM, "CodeSystem") if kb else None
        for concept in (cs or {}).get("concept", []) or []:
            display = concept.get("display", "")
            for d in concept.get("designation", []) or []:
                if d.get("language") == language and d.get("value"):
                    display = d["value"]
                    break
            out[concept["code"]] = display
        with self._lock:
            if len(self._displays) > 16:
                self._displays.clear()
            self._displays[key] = (kb, out)
        return out

    def plan_languages(self, kb: Any, pathway: str) -> dict[str, str]:
        """Card action id -> the language its texts are primarily written in (its PlanDefinition's)."""
        key = (id(kb), pathway)
        hit = self._languages.get(key)
        if hit is not None and hit[0] is kb:
            return hit[1]
        out: dict[str, str] = {}
        plan = kb.resolve(pathway, "PlanDefinition") if kb else None
        stack = [plan] if plan else []
        seen: set[str] = set()
        while stack:
            current = stack.pop()
            language = current.get("language", "sv")
            actions = list(current.get("action", []) or [])
            while actions:
                action = actions.pop()
                if action.get("id"):
                    out.setdefault(action["id"], language)
                canonical = action.get("definitionCanonical")
                if canonical and canonical not in seen:
                    seen.add(canonical)
                    target = kb.resolve(canonical, "PlanDefinition")
                    if target is not None:
                        stack.append(target)
                actions.extend(action.get("action", []) or [])
        with self._lock:
            if len(self._languages) > 16:
                self._languages.clear()
            self._languages[key] = (kb, out)
        return out


class Links:
    """Absolute links the cards carry, built from the configured public base."""

    def __init__(self, state: CDSState):
        config = current_app.config
        self.base = str(primary_base(config.get("CDS_PUBLIC_BASE_URL")) or primary_base(config.get("PUBLIC_BASE_URL"))
                        or request.host_url).rstrip("/")
        self.catalogue = str(config.get("CDS_CATALOGUE_URL") or f"{self.base}/cds-catalogue")
        self.smart_url = config.get("CDS_SMART_LAUNCH_URL")
        self.anchors = state.anchors
        caller = g.get("cds_caller")
        self.issuer = caller.iss if caller is not None else None  # recorded in every link this call mints

    def rule(self, rule_id: str) -> str:
        anchor = self.anchors.get(rule_id, rule_id.lower())
        return f"{self.catalogue}#{anchor}"

    def pathway(self, patient_id: str, variant: str) -> str:
        """The clinician's pathway page of the variant the card came from (not the server's default one)."""
        return f"{self.base}/patients/{patient_id}/pathway?variant={variant}"

    def clinician_form(self, patient_id: str, canonical: str, variant: str) -> str:
        """The clinician's fill-in page of a form the clinician fills (referral template, discharge letter …)."""
        questionnaire_id = canonical.split("|", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return f"{self.base}/patients/{patient_id}/forms/{questionnaire_id}?variant={variant}"

    def questionnaire(self, patient_id: str, canonical: str, language: str, variant: str) -> str | None:
        questionnaire_id = canonical.split("|", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        try:
            token = make_token(patient_id, [questionnaire_id], lang=language, variant=variant, issuer=self.issuer)
        except ValueError as exc:  # a language or variant the patient pages do not offer: the card goes without
            log.warning("questionnaire link not made: %s", exc)
            return None
        return f"{self.base}/q/{token}"

    def smart(self, patient_id: str) -> dict[str, Any] | None:
        if not self.smart_url:
            return None
        return {"label": "LBP pathway (SMART)", "url": str(self.smart_url), "type": "smart",
                "appContext": json.dumps({"patientId": patient_id})}


def state() -> CDSState:
    return current_app.extensions["lbp_cds"]


def init_app(app: Any) -> None:
    """Wire the CDS service into an application (called by create_app): configuration, tables, state, routes."""
    for key, value in CONFIG_DEFAULTS.items():
        app.config.setdefault(key, value)
    create_tables(app.extensions["lbp"].store.engine)
    app.extensions["lbp_cds"] = CDSState(app)
    if app.config["CDS_AUTH_DISABLED"]:
        log.warning("CDS HOOKS CLIENT AUTHENTICATION IS DISABLED (LBP_CDS_AUTH_DISABLED=true): any caller gets "
                    "cards and may post feedback. Development only.")
    if app.config["CDS_BENCH_FLOOR"]:
        log.warning("CDS bench floor route /cds-services/_floor is enabled (LBP_CDS_BENCH_FLOOR)")
    app.register_blueprint(bp)  # CORS on /cds-services: app._cds_cors, from CDS_CORS_ORIGINS


# ------------------------------------------------------------------ security and CORS
_OPEN = {"cds.floor", "cds.catalogue"}


@bp.before_request
def _authenticate():
    if request.method == "OPTIONS":
        return Response(status=204)  # CORS preflight: no JWT (browsers send none); flask-cors adds the headers
    if request.endpoint in _OPEN:
        return None
    if request.endpoint == "cds.feedback_report":
        return None  # checked with a FHIR API token in the view
    if current_app.config["CDS_AUTH_DISABLED"]:
        g.cds_caller = None
        return None
    from app.cds.service import endpoint_url

    try:
        g.cds_caller = state().verifier.verify(request.headers.get("Authorization"), endpoint_url(request.path))
    except Unauthorized as exc:
        log.warning("CDS call refused (401): issuer %s: %s", exc.iss or "(none)", exc)
        if current_app.config["CDS_DEBUG_REFUSALS"]:
            reason = str(exc).replace('"', "'")
            return Response(json.dumps({"error": "invalid_token", "error_description": str(exc),
                                        "iss": exc.iss}), status=401, mimetype="application/json",
                            headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'})
        return Response(status=401, headers={"WWW-Authenticate": "Bearer"})
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")  # cards and discovery are per call, never cached
    return response


# ------------------------------------------------------------------ routes
def _json(body: Any, status: int = 200) -> Response:
    try:
        data = orjson.dumps(body)  # UTF-8, as json.dumps(ensure_ascii=False) would write it, a few times faster
    except TypeError:  # orjson.JSONEncodeError: a value orjson does not take (an integer beyond 64 bits)
        data = json.dumps(body, ensure_ascii=False).encode()
    return current_app.response_class(data, status=status, mimetype="application/json")


def _request_json() -> Any:
    """The request body as JSON, or None when it is not JSON (the call's checks answer 400 for it)."""
    if not request.is_json:
        return None
    try:
        return orjson.loads(request.get_data(cache=False))
    except orjson.JSONDecodeError:
        return None


@bp.route("/cds-services", methods=["GET", "OPTIONS"])
def discovery():
    kb = current_app.extensions["lbp"].knowledge.base
    return _json(state().registry.discovery(kb, current_app.config["DEFAULT_VARIANT"]))


@bp.route("/cds-services/_floor", methods=["POST", "OPTIONS"])
def floor():
    if not current_app.config["CDS_BENCH_FLOOR"]:
        raise FHIRError("not-found", "no such CDS service", "id", status=404)
    return _json({"cards": []})


@bp.route("/cds-services/<service_id>", methods=["POST", "OPTIONS"])
def call(service_id: str):
    from app.cds.requests import check_hook_request
    from app.cds.service import check_request, run

    kb = current_app.extensions["lbp"].knowledge.base
    services = state().registry.services(kb, current_app.config["DEFAULT_VARIANT"])
    service = services.get(service_id)
    if service is None:
        raise FHIRError("not-found", f"no CDS service {service_id}", "id", status=404)
    body = _request_json()
    check_request(body, service)  # raises unless body is a well-formed request
    assert isinstance(body, dict)
    check_hook_request(body, service.hook)  # the hook's context forms, fhirServer, valid R4 resources
    from app.metrics import observe_cards

    answer = run(service, body, g.get("cds_caller"), Links(state()))
    observe_cards(service_id, answer.get("cards") if isinstance(answer, dict) else None)
    return _json(answer)


@bp.route("/cds-services/<service_id>/feedback", methods=["POST", "OPTIONS"])
def feedback(service_id: str):
    from app.cds.feedback import store_feedback

    kb = current_app.extensions["lbp"].knowledge.base
    if service_id not in state().registry.services(kb, current_app.config["DEFAULT_VARIANT"]):
        raise FHIRError("not-found", f"no CDS service {service_id}", "id", status=404)
    caller = g.get("cds_caller")
    state().card_log.flush()  # cards this process issued a moment ago are counted too
    result = store_feedback(service_id, request.get_json(silent=True), caller.iss if caller else None)
    return _json(result)


@bp.route("/cds-feedback", methods=["GET", "OPTIONS"])
def feedback_report():
    from app.cds.feedback import report

    if not current_app.config["CDS_AUTH_DISABLED"]:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            principal = current_app.extensions["lbp"].auth.tokens.principal(header[7:].strip())
        except Exception:
            return Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if FEEDBACK_SCOPE not in principal.scope.split():
            return Response(status=403, headers={
                "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{FEEDBACK_SCOPE}"'})
    state().card_log.flush()
    return _json(report(request.args))


@bp.route("/cds-catalogue", methods=["GET"])
def catalogue():
    from app.cds.catalogue_page import render

    path = ROOT / "docs" / "catalogue.md"
    if not path.exists():
        raise FHIRError("not-found", "the rule catalogue is not installed", "catalogue", status=404)
    text = path.read_text(encoding="utf-8")
    if request.args.get("format") == "md":
        return Response(text, mimetype="text/markdown")
    return Response(render(text, _slug), mimetype="text/html")
