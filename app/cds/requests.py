"""Hook requests checked as the CDS Hooks 2.0 hook definitions say, before any advice is computed.

https://cds-hooks.hl7.org/hooks/patient-view/, /order-select/, /order-sign/: `userId` is a relative
reference of the types each hook allows, `patientId` and `encounterId` are FHIR ids, `selections` are
references. Draft orders and prefetched resources are checked as R4 resources by the validator every
write uses (app.validation), Bundle entries one by one: a malformed one is a 400 naming it, never used
for advice. The `fhirServer` must be one this deployment allows (an allowlist when configured); loopback
and link-local addresses are refused unless configured, since the service sends the EHR's token there.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from app.errors import FHIRError, Issue

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
USER_TYPES = {
    "patient-view": ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"),
    "order-select": ("Practitioner", "PractitionerRole"),
    "order-sign": ("Practitioner", "PractitionerRole"),
}
MAX_VALIDATED = 2000  # resources per request; a prefetch larger than this is refused rather than skimmed


def check_hook_request(body: Mapping[str, Any], hook: str) -> None:
    """400 (an OperationOutcome naming each problem) unless the request is one the hook defines."""
    issues: list[Issue] = []

    def problem(text: str, where: str) -> None:
        issues.append(Issue("error", "invalid", text, [where]))

    context = body.get("context") or {}
    user = context.get("userId")
    match = _REFERENCE.match(user) if isinstance(user, str) else None
    allowed = USER_TYPES.get(hook, ())
    if match is None or match.group(1) not in allowed:
        problem(f"context.userId must be a reference to {' or '.join(allowed)} (Type/id) for {hook}",
                "context.userId")
    encounter = context.get("encounterId")
    if encounter is not None and (not isinstance(encounter, str) or not _ID.match(encounter)):
        problem("context.encounterId must be a FHIR id", "context.encounterId")
    server = body.get("fhirServer")
    if isinstance(server, str):
        refused = fhir_server_refused(server)
        if refused:
            problem(refused, "fhirServer")
    if current_app.config.get("CDS_VALIDATE_REQUESTS", True):
        budget = [MAX_VALIDATED]
        drafts = context.get("draftOrders")
        if isinstance(drafts, Mapping):
            _check_bundle(drafts, "context.draftOrders", problem, budget)
        prefetch = body.get("prefetch")
        if isinstance(prefetch, Mapping):
            _check_prefetch(prefetch, problem, budget)
    if issues:
        raise FHIRError("invalid", issues[0].text, issues=issues)


def check_prefetch_values(values: Mapping[str, Any], source: str) -> None:
    """The same checks for prefetch values the service fetched itself (FHIRError 400 naming each problem)."""
    if not current_app.config.get("CDS_VALIDATE_REQUESTS", True):
        return
    issues: list[Issue] = []

    def problem(text: str, where: str) -> None:
        issues.append(Issue("error", "invalid", f"{text} ({source})", [where]))

    _check_prefetch(values, problem, [MAX_VALIDATED])
    if issues:
        raise FHIRError("invalid", issues[0].text, issues=issues)


def _check_prefetch(prefetch: Mapping[str, Any], problem, budget: list[int]) -> None:
    for key, value in prefetch.items():
        if value is None:
            continue
        where = f"prefetch.{key}"
        if not isinstance(value, Mapping):
            problem("a prefetched value must be a FHIR resource or null", where)
        elif value.get("resourceType") == "Bundle":
            _check_bundle(value, where, problem, budget)
        else:
            _check_resource(value, where, problem, budget)


def _check_bundle(bundle: Mapping[str, Any], where: str, problem, budget: list[int]) -> None:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        problem("Bundle.entry must be a list", f"{where}.entry")
        return
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("resource"), Mapping):
            problem("each Bundle entry needs a resource (a JSON object)", f"{where}.entry[{i}]")
            continue
        _check_resource(entry["resource"], f"{where}.entry[{i}].resource", problem, budget)


def _check_resource(resource: Mapping[str, Any], where: str, problem, budget: list[int]) -> None:
    from app.validation import validate_at_level

    if resource.get("resourceType") == "OperationOutcome":
        return  # the client could not prefetch: the service fetches instead
    budget[0] -= 1
    if budget[0] < 0:
        if budget[0] == -1:
            problem(f"more than {MAX_VALIDATED} resources in one request", where)
        return
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str) or res_type not in current_app.extensions["lbp"].resource_types:
        problem(f"unknown or missing resourceType '{res_type}'", f"{where}.resourceType")
        return
    try:
        found = validate_at_level(dict(resource), current_app.config["WRITE_VALIDATION_LEVEL"])
    except FHIRError as err:
        found = err.issues
    for issue in [i for i in found if i.is_error][:5]:
        expressions = [_at(e, res_type, where) for e in (issue.expression or [res_type])]
        problem(f"{res_type} is not a valid R4 resource: {issue.text}", expressions[0])


def _at(expression: str, res_type: str, where: str) -> str:
    """`Observation.code` -> `prefetch.obs.entry[2].resource.code`."""
    if expression == res_type:
        return where
    if expression.startswith(res_type + "."):
        return where + expression[len(res_type):]
    return f"{where}.{expression}"


def _is_own_fhir_api(url: str) -> bool:
    """Whether `url` is this server's FHIR API under one of its configured public bases (never the Host header)."""
    from app.auth.public import public_bases

    path = str(current_app.config["FHIR_BASE_PATH"]).rstrip("/")
    normal = url.rstrip("/")
    return any(normal == base + path or normal.startswith(base + path + "/") for base in public_bases())


def fhir_server_refused(url: str) -> str | None:
    """Why this service will not send the EHR's token to `url`, or None when it may."""
    config = current_app.config
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "fhirServer must be an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "fhirServer must not carry user information"
    if _is_own_fhir_api(url):
        return None  # this server's own FHIR API, at its configured public URL: the service reads it, no SSRF
    allowlist = config.get("CDS_FHIR_SERVER_ALLOWLIST")
    if allowlist:
        bases = allowlist if isinstance(allowlist, (list, tuple)) else str(allowlist).split()
        normal = url.rstrip("/")
        if not any(normal == b.rstrip("/") or normal.startswith(b.rstrip("/") + "/") for b in bases):
            return "fhirServer is not on this service's allowlist of FHIR servers"
        return None
    if config.get("CDS_ALLOW_LOCAL_FHIR_SERVER"):
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443,
                                                               proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return None  # not resolvable here: the fetch fails and the call answers 412
    for address in addresses:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
            return "fhirServer is a loopback or link-local address; this deployment does not allow that"
    return None
