"""FHIR history (instance, type, system) — https://hl7.org/fhir/R4/http.html#history"""
from __future__ import annotations

from urllib.parse import urlencode

from flask import current_app, request

from app.errors import FHIRError
from app.store.db import instant
from app.store.indexing import date_range

from .http import base_url, check_id, check_type, fhir_response


def history(res_type: str | None = None, res_id: str | None = None):
    if res_type:
        check_type(res_type)
    if res_id:
        check_id(res_id, res_type or "Resource")
    count = _int_arg("_count", 50, 1, 1000)
    offset = _int_arg("_offset", 0, 0, 10**9)
    since = None
    if "_since" in request.args:
        rng = date_range(request.args["_since"])
        if rng is None:
            raise FHIRError("invalid", "_since must be an instant", "_since")
        since = rng[0]
    store = current_app.extensions["lbp"].store
    total, versions = store.history(res_type, res_id, since=since, count=count, offset=offset)
    if res_id and total == 0:
        raise FHIRError("not-found", f"{res_type}/{res_id} is not known", f"{res_type}.id")
    base = base_url()
    path = "/".join(p for p in (base, res_type, res_id, "_history") if p)
    params = {k: v for k, v in request.args.items() if k not in ("_offset",)}
    links = [{"relation": "self", "url": f"{path}?{urlencode({**params, '_offset': offset})}"}]
    if offset + count < total:
        links.append({"relation": "next", "url": f"{path}?{urlencode({**params, '_offset': offset + count})}"})
    entries = []
    for v in versions:
        full = f"{base}/{v.res_type}/{v.res_id}"
        entry: dict = {"fullUrl": full}
        if v.content is not None and not v.deleted:
            entry["resource"] = v.resource()
        entry["request"] = {
            "method": v.method,
            "url": f"{v.res_type}/{v.res_id}" if v.method != "POST" else v.res_type,
        }
        entry["response"] = {
            "status": "204" if v.deleted else ("201" if v.version == 1 else "200"),
            "etag": v.etag,
            "lastModified": instant(v.last_updated),
        }
        entries.append(entry)
    return fhir_response({"resourceType": "Bundle", "type": "history", "total": total, "link": links,
                          "entry": entries})


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise FHIRError("invalid", f"{name} must be a non-negative integer", name)
    return max(lo, min(int(raw), hi))
