"""The region's indicator report page (`/reports/<variant>?period=START/END&lang=en|sv`), behind the API's auth.

The access token comes as for the clinician page (bearer header, or the clinician session cookie) and needs
read scope on the patient data; every view is audited with the patients it counted.
"""
from __future__ import annotations

from datetime import UTC, date, datetime

from flask import Blueprint, Response, current_app, g, request

from app.auth import audit, note
from app.measures import engine
from app.measures.report import build_report, parse_period, render_report
from app.measures.store_cohort import cohort_records

from .clinician import NotAuthorized, authenticate_clinician

bp = Blueprint("reports", __name__)

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # No script at all; the page's one style block is inline.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "frame-ancestors 'none'; base-uri 'none'",
}


def _text(status: int, message: str, **headers: str) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain", headers={**HEADERS, **headers})


@bp.get("/reports/<variant>")
def variant_report(variant: str):
    g.report_audit = True
    n = note()
    n.interaction = "operation"  # an evaluation of every Measure of the variant over the records
    n.query = request.full_path.rstrip("?")
    try:
        authenticate_clinician()
    except NotAuthorized as err:
        extra = {"WWW-Authenticate": 'Bearer realm="lbp-pathway"'} if err.status == 401 else {}
        return _text(err.status, err.message, **extra)
    today = datetime.now(UTC).date()
    try:
        period = parse_period(request.args.get("period") or f"{date(today.year, 1, 1)}/{date(today.year, 12, 31)}")
    except ValueError as exc:
        return _text(400, f"period: {exc}")
    lbp = current_app.extensions["lbp"]
    kb = lbp.knowledge.base
    if kb is None or variant not in engine.pathway_variants(kb):
        return _text(404, f"No pathway variant {variant!r} is loaded")
    lang = request.args.get("lang") if request.args.get("lang") in ("sv", "da", "en") else "en"
    result = build_report(kb, cohort_records(lbp.store), variant=variant, period=period, lang=lang)
    audit.add_entities(*(f"Patient/{pid}" for pid in result.patients))
    html = render_report(kb, result, variant=variant, period=period)
    return Response(html, mimetype="text/html", headers=HEADERS)


@bp.after_request
def _audit(response):
    if g.get("report_audit"):
        audit.record(response)
    return response
