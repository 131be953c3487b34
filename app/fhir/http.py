"""HTTP plumbing shared by the FHIR interactions: media types, bodies, headers, responses."""
from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Response, current_app, g, request

from app.auth.public import primary_base
from app.errors import FHIRError, Issue, operation_outcome
from app.store import jsonio
from app.store.db import Stored, http_date

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
FORMAT_JSON = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_DEPTH = 100


def check_format() -> None:
    """`_format` and `Accept` must allow JSON; XML and other formats are not served (406)."""
    fmt = request.args.get("_format")
    if fmt is not None:
        fmt = fmt.replace(" ", "+")  # an unencoded "+" arrives as a space
    if fmt is not None and fmt not in FORMAT_JSON:
        raise FHIRError("not-supported", f"_format={fmt} is not supported; use json", "_format", status=406)
    accept = request.headers.get("Accept")
    if fmt is None and accept:
        types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
        if not any(t in JSON_TYPES or t in ("*/*", "application/*") for t in types):
            raise FHIRError("not-supported", f"Accept: {accept} is not served; use {FHIR_JSON}", "Accept",
                            status=406)


def json_body(expected_type: str | None = None, *, check_nesting: bool = True) -> Any:
    """The request body as JSON, after media-type, size and depth checks."""
    ctype = (request.mimetype or "").lower()
    if ctype not in JSON_TYPES:
        raise FHIRError(
            "not-supported", f"Content-Type '{request.content_type or ''}' is not supported; send {FHIR_JSON}",
            "Content-Type", status=415,
        )
    raw = request.get_data(cache=False)
    if not raw:
        raise FHIRError("invalid", "The request body is empty", expected_type or "Resource")
    try:
        body = jsonio.loads(raw)  # decimals keep their exact text (1.50 stays 1.50)
    except orjson.JSONDecodeError as exc:
        raise FHIRError("structure", f"The body is not valid JSON: {exc}", expected_type or "Resource") from None
    if not isinstance(body, dict):
        raise FHIRError("structure", "The body must be a JSON object (a FHIR resource)", expected_type or "Resource")
    if check_nesting:
        check_depth(body, expected_type or "Resource")
    return body


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> None:
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise FHIRError("too-costly", f"JSON nested deeper than {limit} levels", where, status=400)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


def check_type(res_type: str) -> None:
    if not _TYPE_RE.match(res_type) or res_type not in current_app.extensions["lbp"].resource_types:
        raise FHIRError("not-supported", f"Unknown resource type '{res_type}'", "Resource.resourceType", status=404)


def check_id(res_id: str, res_type: str) -> None:
    if not _ID_RE.match(res_id):
        raise FHIRError("invalid", f"'{res_id}' is not a valid resource id", f"{res_type}.id")


def if_match_version() -> int | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    return parse_etag(value, "If-Match")


def parse_etag(value: str, where: str) -> int:
    m = re.match(r'^(?:W/)?"?(\d+)"?$', value.strip())
    if not m:
        raise FHIRError("invalid", f"{where} must be an ETag like W/\"3\", got '{value}'", where)
    return int(m.group(1))


def base_url() -> str:
    configured = primary_base(current_app.config.get("PUBLIC_BASE_URL"))
    if configured:
        return configured.rstrip("/") + current_app.config["FHIR_BASE_PATH"]
    return request.host_url.rstrip("/") + current_app.config["FHIR_BASE_PATH"]


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    data = bytes(body) if isinstance(body, (bytes, bytearray)) else orjson.dumps(body)
    resp = Response(data, status=status, mimetype=FHIR_JSON)
    resp.headers["Content-Type"] = FHIR_JSON + "; charset=utf-8"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def resource_response(stored: Stored, status: int = 200, *, location: bool = False) -> Response:
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = f"{base_url()}/{stored.res_type}/{stored.res_id}/_history/{stored.version}"
    prefer = request.headers.get("Prefer", "")
    if "return=minimal" in prefer and request.method in ("POST", "PUT"):
        return fhir_response(b"", status, headers)
    if "return=OperationOutcome" in prefer and request.method in ("POST", "PUT"):
        return fhir_response(operation_outcome([]), status, headers)
    assert stored.content is not None
    return fhir_response(stored.content, status, headers)


def error_response(err: FHIRError) -> Response:
    return fhir_response(err.outcome(), err.status, err.headers)


def strict_handling() -> bool:
    return "handling=strict" in request.headers.get("Prefer", "").replace(" ", "")


def warnings_header(issues: list[Issue]) -> None:
    g.setdefault("warnings", []).extend(issues)
