"""Own checks that neither the JSON schema nor the models make: ids, references and the Bundle rules.

- Resource ids: `[A-Za-z0-9\\-\\.]{1,64}` (https://hl7.org/fhir/R4/datatypes.html#id).
- References (https://hl7.org/fhir/R4/references.html#Reference): relative `Type/id` and
  `Type/id/_history/vid` with a known R4 type; an absolute URL; `urn:uuid:` and `urn:oid:`; a local
  `#id` that names a contained resource of the same resource (ref-1); and the conditional
  `Type?query`, allowed only inside a transaction or batch Bundle
  (https://hl7.org/fhir/R4/http.html#trules).
- The Bundle invariants of R4 (https://hl7.org/fhir/R4/bundle.html#invs): bdl-1 to bdl-12 (there is
  no bdl-6).
"""
from __future__ import annotations

import re
from typing import Any

from app.errors import Issue

ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RELATIVE_RE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?")
_CONDITIONAL_RE = re.compile(r"([A-Z][A-Za-z]+)\?(\S*)")
_ABSOLUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s/]+\S*")
_UUID_RE = re.compile(r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OID_RE = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
_ABSOLUTE_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")

CONDITIONAL_BUNDLE_TYPES = frozenset({"transaction", "batch"})


def id_problem(value: str) -> str | None:
    if ID_RE.fullmatch(value):
        return None
    return f"Invalid resource id '{value}': 1 to 64 of A-Z a-z 0-9 - ."


def reference_problem(
    value: str, resource_types: frozenset[str], local_ids: frozenset[str], conditional_ok: bool
) -> str | None:
    """Why `value` is no valid Reference.reference here, or None."""
    if value.startswith("#"):
        if value == "#" or value[1:] in local_ids:
            return None
        return f"Local reference '{value}' names no contained resource (ref-1)"
    if value.startswith("urn:"):
        if _UUID_RE.fullmatch(value) or _OID_RE.fullmatch(value):
            return None
        return f"Invalid reference '{value}': a urn reference must be urn:uuid:<uuid> or urn:oid:<oid>"
    if _ABSOLUTE_RE.fullmatch(value):
        return None
    match = _RELATIVE_RE.fullmatch(value)
    if match:
        if match.group(1) in resource_types:
            return None
        return f"Invalid reference '{value}': unknown resource type '{match.group(1)}'"
    match = _CONDITIONAL_RE.fullmatch(value)
    if match:
        if match.group(1) not in resource_types:
            return f"Invalid reference '{value}': unknown resource type '{match.group(1)}'"
        if conditional_ok:
            return None
        return f"Conditional reference '{value}' is allowed only inside a transaction or batch Bundle"
    return (f"Invalid reference '{value}': expected Type/id, Type/id/_history/version, an absolute URL, "
            "urn:uuid:, urn:oid: or #contained")


def bundle_issues(bundle: dict[str, Any], expr: str) -> list[Issue]:
    """The Bundle invariants bdl-1..bdl-12 of R4 for one Bundle (its entries' resources are walked apart)."""
    issues: list[Issue] = []

    def fail(key: str, text: str, where: str) -> None:
        issues.append(Issue("error", "invariant", f"{text} ({key})", [where]))

    bundle_type = bundle.get("type")
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        entries = []
    if "total" in bundle and bundle_type not in ("searchset", "history"):
        fail("bdl-1", "total is only allowed in a searchset or history Bundle", f"{expr}.total")
    request_required = bundle_type in ("batch", "transaction", "history")
    response_required = bundle_type in ("batch-response", "transaction-response", "history")
    seen_full_urls: dict[tuple[str, Any], int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        where = f"{expr}.entry[{index}]"
        if "search" in entry and bundle_type != "searchset":
            fail("bdl-2", "entry.search is only allowed in a searchset Bundle", f"{where}.search")
        if request_required and "request" not in entry:
            fail("bdl-3", f"entry.request is required in a {bundle_type} Bundle", where)
        elif not request_required and "request" in entry:
            fail("bdl-3", "entry.request is only allowed in a batch, transaction or history Bundle",
                 f"{where}.request")
        if response_required and "response" not in entry:
            fail("bdl-4", f"entry.response is required in a {bundle_type} Bundle", where)
        elif not response_required and "response" in entry:
            fail("bdl-4", "entry.response is only allowed in a batch-response, transaction-response or "
                          "history Bundle", f"{where}.response")
        if not ("resource" in entry or "request" in entry or "response" in entry):
            fail("bdl-5", "An entry must contain a resource, a request or a response", where)
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            if "/_history/" in full_url:
                fail("bdl-8", "fullUrl cannot be a version specific reference", f"{where}.fullUrl")
            elif not _ABSOLUTE_URI_RE.fullmatch(full_url):
                issues.append(Issue("error", "value", f"fullUrl '{full_url}' must be an absolute URI",
                                    [f"{where}.fullUrl"]))
            if bundle_type != "history":
                resource = entry.get("resource")
                meta = resource.get("meta") if isinstance(resource, dict) else None
                version = meta.get("versionId") if isinstance(meta, dict) else None
                key = (full_url, version)
                if key in seen_full_urls:
                    fail("bdl-7", f"fullUrl '{full_url}' is not unique in the Bundle (also entry "
                                  f"[{seen_full_urls[key]}])", f"{where}.fullUrl")
                else:
                    seen_full_urls[key] = index
    if bundle_type == "document":
        identifier = bundle.get("identifier")
        if not (isinstance(identifier, dict) and "system" in identifier and "value" in identifier):
            fail("bdl-9", "A document must have an identifier with a system and a value",
                 f"{expr}.identifier")
        if "timestamp" not in bundle:
            fail("bdl-10", "A document must have a date (timestamp)", f"{expr}.timestamp")
        _first_resource_is(entries, "Composition", "bdl-11", "A document", expr, fail)
    elif bundle_type == "message":
        _first_resource_is(entries, "MessageHeader", "bdl-12", "A message", expr, fail)
    return issues


def _first_resource_is(entries: list[Any], resource_type: str, key: str, what: str, expr: str, fail) -> None:
    first = entries[0] if entries else None
    resource = first.get("resource") if isinstance(first, dict) else None
    if not (isinstance(resource, dict) and resource.get("resourceType") == resource_type):
        where = f"{expr}.entry[0].resource" if entries else f"{expr}.entry"
        fail(key, f"{what} must have a {resource_type} as the first resource", where)
