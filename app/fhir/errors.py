"""Maps every failure to an OperationOutcome: FHIRError by its category, HTTP errors by status, never a bare 500."""
from __future__ import annotations

import logging
import traceback
from pathlib import Path

from flask import Flask, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.errors import FHIRError
from app.store.errors import storage_cause

from .http import error_response

log = logging.getLogger("lbp")

_HTTP_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(FHIRError)
    def _fhir_error(err: FHIRError):
        return error_response(err)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_err):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return error_response(
            FHIRError("too-costly", f"The request body exceeds the limit of {limit} bytes", "Bundle", status=413)
        )

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        if not request.path.startswith(app.config["FHIR_BASE_PATH"]):
            return err
        code = _HTTP_CODES.get(err.code or 500, "processing")
        return error_response(FHIRError(code, err.description or err.name, "Resource", status=err.code))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        found = storage_cause(err)
        if found is not None:
            status, cause = found
            log.error("storage failure on %s %s: %s", request.method,
                      request.url_rule.rule if request.url_rule else "?", cause)
            return error_response(FHIRError("transient" if status == 503 else "exception",
                                            f"The request was not applied: {cause}", "Resource", status=status,
                                            headers={"Retry-After": "30"}))
        # Log the type and where it happened, not the message: it may quote patient data.
        frames = traceback.extract_tb(err.__traceback__)
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-4:]))
        log.error("unexpected %s on %s %s at %s", type(err).__name__, request.method,
                  request.url_rule.rule if request.url_rule else "?", where)
        return error_response(FHIRError("exception", "Internal error; the request was not applied", "Resource",
                                        status=500))
