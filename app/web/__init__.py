"""Web pages: patient questionnaires and information (signed links, no login) and the clinician's pathway view."""
from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, request

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/web/static")


@bp.app_context_processor
def _language_links():
    def lang_url(code: str) -> str:
        """This page in another language: the same path and query, `lang` replaced."""
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"] + [("lang", code)]
        return f"{request.path}?{urlencode(args)}"

    return {"lang_url": lang_url}


@bp.record_once
def _tables(state) -> None:
    from .sessions import create_tables

    create_tables(state.app.extensions["lbp"].store.engine)


@bp.after_request
def _headers(response):
    # Pages carry patient data: never cached, never framed, no referrer leaking the link's token.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'",
    )
    return response


from . import clinician, clinician_forms, patient  # noqa: E402,F401  (routes register on bp)

__all__ = ["bp"]
