"""FHIR search interaction (GET and POST _search) — https://hl7.org/fhir/R4/http.html#search"""
from __future__ import annotations

from urllib.parse import urlencode

import orjson
from flask import current_app, request

from app import auth as access
from app.auth import audit
from app.errors import FHIRError, Issue, operation_outcome
from app.store import search as engine
from app.store.db import KNOWLEDGE_TYPES

from .http import base_url, check_type, fhir_response, strict_handling

MANDATORY_ELEMENTS = ("resourceType", "id", "meta")
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def search(res_type: str):
    check_type(res_type)
    items = list(request.args.items(multi=True))
    if request.method == "POST":
        if request.mimetype != "application/x-www-form-urlencoded":
            raise FHIRError("not-supported", "POST _search takes application/x-www-form-urlencoded",
                            "Content-Type", status=415)
        items.extend(request.form.items(multi=True))
    return search_bundle(res_type, items)


def search_bundle(res_type: str, items: list[tuple[str, str]]):
    lbp = current_app.extensions["lbp"]
    req = engine.parse(lbp.store, res_type, items, strict=strict_handling())
    req.max_included = int(current_app.config["MAX_INCLUDED"])
    result = engine.execute(lbp.store, req, resolve_valueset=lbp.knowledge.valueset_matcher)
    base = base_url()
    entries = []
    # _include/_revinclude return only what the token may read; the rest is left out, not leaked
    included = [s for s in result.included if access.allowed(s.res_type, "r") or access.allowed(s.res_type, "s")]
    withheld = len(result.included) - len(included)
    if withheld:
        req.warnings.append(Issue("information", "suppressed",
                                  f"{withheld} included resource(s) left out: the access token does not cover them",
                                  [f"{res_type}?_include"]))
    size, limit = 0, int(current_app.config["MAX_RESPONSE_BYTES"])
    for stored in result.matches + included:
        size += len(stored.content or b"")
        if size > limit:
            raise FHIRError("too-costly", f"The search result would be larger than {limit // (1024 * 1024)} MB; "
                            "lower _count or leave out _include/_revinclude", "_count", status=400)
        resource = _shape(stored.content, req)
        if stored.res_type not in KNOWLEDGE_TYPES:
            audit.add_entities(f"{stored.res_type}/{stored.res_id}", *audit.patient_refs(resource))
        whole = not req.elements and req.summary not in ("data", "text")
        entries.append({
            "fullUrl": f"{base}/{stored.res_type}/{stored.res_id}",
            # the stored text itself when the resource is whole: decimals keep their exact text
            "resource": orjson.Fragment(stored.content) if whole and stored.content else resource,
            "search": {"mode": "include" if stored.method == "include" else "match"},
        })
    if req.warnings:
        entries.append({"resource": operation_outcome(req.warnings), "search": {"mode": "outcome"}})
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": result.total,
              "link": _links(base, res_type, req, result.total)}
    if entries:
        bundle["entry"] = entries
    return fhir_response(bundle)


def _links(base: str, res_type: str, req: engine.SearchRequest, total: int) -> list[dict]:
    echo = list(req.echo)
    if not any(k == "_count" for k, _ in echo):
        echo.append(("_count", str(req.count)))

    def url(offset: int) -> str:
        return f"{base}/{res_type}?{urlencode(echo + [('_offset', str(offset))])}"

    links = [{"relation": "self", "url": url(req.offset)}]
    if req.summary != "count" and req.count and req.offset + req.count < total:
        links.append({"relation": "next", "url": url(req.offset + req.count)})
    if req.offset > 0 and req.count:
        links.append({"relation": "previous", "url": url(max(0, req.offset - req.count))})
    return links


def _shape(content: bytes | None, req: engine.SearchRequest) -> dict:
    assert content is not None
    resource = orjson.loads(content)
    if req.elements:
        keep = set(req.elements) | set(MANDATORY_ELEMENTS)
        resource = {k: v for k, v in resource.items() if k in keep}
        _mark_subsetted(resource)
    elif req.summary == "data":
        resource.pop("text", None)
        _mark_subsetted(resource)
    elif req.summary == "text":
        resource = {k: v for k, v in resource.items() if k in ("resourceType", "id", "meta", "text")}
        _mark_subsetted(resource)
    return resource


def _mark_subsetted(resource: dict) -> None:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta


__all__ = ["search", "search_bundle", "Issue"]
