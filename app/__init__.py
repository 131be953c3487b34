"""Application factory: the only place where configuration, storage and blueprints are wired."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from flask import Flask, g, request

from app.errors import FHIRError

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("lbp")

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'lbp.db'}",
    "FHIR_BASE_PATH": "/fhir",
    # absolute base(s) for links and the audience of client JWTs; default: the bind address (app/auth/public.py)
    "PUBLIC_BASE_URL": None,
    "PRODUCTION": False,  # production mode: refuses to start without PUBLIC_BASE_URL
    "VALIDATE_WRITES": True,
    # "write": R4 JSON schema + own checks on every write; "full" adds the R4B models ($validate always does)
    "WRITE_VALIDATION_LEVEL": "write",
    "MAX_BUNDLE_ENTRIES": 5000,
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
    "MAX_INCLUDED": 1000,  # _include/_revinclude resources per search page; beyond it 400
    "MAX_RESPONSE_BYTES": 32 * 1024 * 1024,  # a search page larger than this is refused (400)
    "LOAD_ARTIFACTS": True,
    "ARTIFACT_DIRS": [str(ROOT / "valuesets"), str(ROOT / "questionnaires"), str(ROOT / "plandefinitions")],
    "DEFAULT_VARIANT": "se",
    "AUTH_DISABLED": False,  # development only; loud in the log and the CapabilityStatement
    "PUBLIC_KNOWLEDGE": True,  # knowledge artifacts readable without a token
    "CLIENTS_FILE": str(ROOT / "var" / "clients.json"),
    "AUTH_ISSUER": None,
    # Origins browser apps may call the FHIR API from: "*" (any; the API uses bearer tokens, never cookies)
    # or a list (JSON list, or space-separated in LBP_FHIR_CORS_ORIGINS); empty: no CORS headers
    "FHIR_CORS_ORIGINS": "*",
    "JSON_LOGS": False,  # one JSON object per log line (route pattern, status, ms) instead of plain text
}


class LBP:
    """Per-application services, reachable as current_app.extensions['lbp']."""

    def __init__(self, app: Flask):
        from app.fhir.resource_types import R4_RESOURCE_TYPES
        from app.knowledge.runtime import Knowledge
        from app.store.db import Store

        self.app = app
        self.store = Store(app.config["DATABASE_URL"])
        self.resource_types = R4_RESOURCE_TYPES
        self.knowledge = Knowledge(self.store)
        from app.auth import Auth, ClientJWTVerifier, ReplayCache

        self.auth = Auth(app, self.store, ClientJWTVerifier(ReplayCache(self.store)))
        from app.auth.audit import AuditWriter

        self.audit = AuditWriter(self.store)


def _env_overrides() -> dict[str, Any]:
    out: dict[str, Any] = {}
    if os.environ.get("DATABASE_URL"):
        out["DATABASE_URL"] = os.environ["DATABASE_URL"]
    return out


def _open(app: Flask) -> LBP:
    """The services on the configured database; one clear log line and exit when it cannot be written."""
    from app.store.db import _ProbeDone
    from app.store.errors import storage_cause

    try:
        lbp = LBP(app)
        try:
            lbp.store.probe_write()
        except _ProbeDone:
            pass
    except Exception as exc:
        found = storage_cause(exc)
        if found is None:
            raise
        log.critical("cannot start: %s (%s)", found[1], app.config["DATABASE_URL"].split("@")[-1])
        raise SystemExit(3) from None  # gunicorn: the worker failed to boot, the server stops
    return lbp

def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


def _origins(value: Any) -> str | list[str]:
    if isinstance(value, str) and value.strip() != "*":
        return value.split()
    return value if isinstance(value, list) else "*"


def _fhir_cors(app: Flask) -> None:
    """CORS on the FHIR API (the CapabilityStatement declares it), for the configured origins."""
    from flask_cors import CORS

    origins = _origins(app.config["FHIR_CORS_ORIGINS"])
    if not origins:
        return
    base = app.config["FHIR_BASE_PATH"].rstrip("/")
    CORS(app, resources={rf"{base}(/.*)?$": {"origins": origins}}, supports_credentials=False,
         allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Match", "If-None-Exist", "Prefer"],
         expose_headers=["ETag", "Location", "Content-Location", "Last-Modified"],
         methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], max_age=600)


def _cds_cors(app: Flask) -> None:
    """CORS for browser-hosted CDS clients: discovery (GET) and hook calls (POST with a bearer JWT and JSON)."""
    from flask_cors import CORS

    origins = _origins(app.config["CDS_CORS_ORIGINS"])
    if not origins:
        return
    # "*" is sent as such (no credentials are ever involved: the client JWT is a bearer header)
    CORS(app, resources={r"/cds-services(/.*)?$": {"origins": origins}}, supports_credentials=False,
         send_wildcard=origins == "*", allow_headers=["Authorization", "Content-Type"],
         methods=["GET", "POST", "OPTIONS"], max_age=600)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(_env_overrides())
    app.config.from_prefixed_env("LBP")
    if config:
        app.config.update(config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    db_url = app.config["DATABASE_URL"]
    if db_url.startswith("sqlite:///") and not db_url.startswith("sqlite:///:memory:"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    if not log.handlers and not logging.getLogger().handlers:
        from app.metrics import JSONFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JSONFormatter() if _truthy(app.config["JSON_LOGS"])
                             else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(os.environ.get("LOG_LEVEL", "info").upper())
    from app.auth.public import check_configuration

    check_configuration(app)
    lbp = _open(app)
    app.extensions["lbp"] = lbp

    from app.auth.smart import bp as smart_bp
    from app.fhir import bp as fhir_bp
    from app.fhir.errors import register_error_handlers

    app.register_blueprint(fhir_bp, url_prefix=app.config["FHIR_BASE_PATH"])
    _fhir_cors(app)
    app.register_blueprint(smart_bp)
    from app.web import bp as web_bp
    app.register_blueprint(web_bp)
    from app.cds import init_app as init_cds

    init_cds(app)
    _cds_cors(app)
    from app.web.reports import bp as reports_bp

    app.register_blueprint(reports_bp)
    register_error_handlers(app)

    @app.get("/healthz")
    def healthz():
        """Liveness: the process answers. Readiness is /readyz."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        """Readiness: knowledge loaded and compiled; a load balancer sends traffic only after 200."""
        if not lbp.knowledge.ready:
            return {"status": "loading knowledge"}, 503
        return {"status": "ready"}

    @app.get("/metrics")
    def metrics():
        from app.metrics import exposition

        body, content_type = exposition(lbp.store.knowledge_epoch())
        return app.response_class(body, mimetype=None, content_type=content_type)

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        # Route pattern only: ids and query strings can identify a patient and stay out of the log.
        from app.metrics import observe_hook_call, observe_request, sync_failures

        rule = request.url_rule.rule if request.url_rule else "<unmatched>"
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info("%s %s %s %.1fms", request.method, rule, response.status_code, elapsed,
                 extra={"route": rule, "method": request.method, "status": response.status_code,
                        "ms": round(elapsed, 1)})
        observe_request(rule, request.method, response.status_code, elapsed / 1000)
        if request.endpoint == "cds.call" and request.method == "POST" and response.status_code != 404:
            observe_hook_call((request.view_args or {}).get("service_id", ""), response.status_code)
        sync_failures()
        return response

    from app.knowledge.loader import register_shipped_extensions

    # before any artifact is validated, loaded here or written later (also when another process loaded them)
    register_shipped_extensions(app.config["ARTIFACT_DIRS"])
    if app.config["LOAD_ARTIFACTS"]:
        from app.knowledge.loader import load_directories

        report = load_directories(lbp, app.config["ARTIFACT_DIRS"], validate=app.config["VALIDATE_WRITES"])
        if report.failures:
            for f in report.failures:
                log.error("artifact not loaded: %s", f)
        log.info("knowledge artifacts: %d loaded, %d unchanged, %d failed",
                 report.loaded, report.unchanged, len(report.failures))
    # Before the first request: knowledge compiled and CDS services built, so that a fresh worker (gunicorn
    # imports this factory before its accept loop) never answers from half-loaded knowledge, and its first
    # request is as fast as a warm one.
    lbp.knowledge.refresh(force=True)
    app.extensions["lbp_cds"].registry.services(lbp.knowledge.base, app.config["DEFAULT_VARIANT"],
                                                 warm_now=True)
    return app


__all__ = ["create_app", "FHIRError"]
