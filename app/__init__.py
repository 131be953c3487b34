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
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    app.register_blueprint(smart_bp)
    from app.web import bp as web_bp
    app.register_blueprint(web_bp)
    from app.cds import init_app as init_cds

    init_cds(app)
    from app.measures.web import bp as reports_bp

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

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        # Route pattern only: ids and query strings can identify a patient and stay out of the log.
        rule = request.url_rule.rule if request.url_rule else "<unmatched>"
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info("%s %s %s %.1fms", request.method, rule, response.status_code, elapsed)
        return response

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
