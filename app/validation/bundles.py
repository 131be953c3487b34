"""Bundle rules beyond bdl-1..12: literal references resolved against fullUrls, searchset and history rules.

References (https://hl7.org/fhir/R4/bundle.html#references): a reference inside an entry's resource
is looked up among the Bundle's `fullUrl`s -
- `urn:uuid:` and `urn:oid:` references have no meaning outside the Bundle, so one that matches no
  fullUrl is an error (a warning in a searchset or history Bundle, which a server assembles);
- an absolute URL is matched as it is (one that matches nothing may live outside the Bundle);
- a relative reference (`Patient/123`, optionally `/_history/v`, which is ignored for the match) is
  resolved against the base of the referring entry's fullUrl when that is a RESTful URL
  (`http://server/fhir/Observation/1` -> `http://server/fhir/Patient/123`), else matched to the
  entry whose resource has that type and id;
- in a `document` or `message` Bundle, which must be self-contained, a reference that resolves to no
  entry is a warning.
Searchset (https://hl7.org/fhir/R4/bundle.html#searchset, search.html): `total`, when present, is at
least the number of `match` entries; an entry holding a resource should have a `fullUrl` (warning).
History (https://hl7.org/fhir/R4/http.html#history): an entry whose request is a DELETE carries no
resource.
"""
from __future__ import annotations

import re
from typing import Any

from app.errors import Issue

_RESTFUL = re.compile(r"^(?P<base>.+)/(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?$")
_RELATIVE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?$")
_ENTRY = re.compile(r"\.entry\[(\d+)\]")
SERVER_ASSEMBLED = frozenset({"searchset", "history"})
SELF_CONTAINED = frozenset({"document", "message"})


def bundle_rule_issues(bundle: dict[str, Any], expr: str, references: list[tuple[str, str]]) -> list[Issue]:
    """`references`: (location, Reference.reference) of every reference inside this Bundle's entries."""
    issues: list[Issue] = []
    raw = bundle.get("entry")
    entries: list[Any] = raw if type(raw) is list else []
    bundle_type = bundle.get("type")
    full_urls: set[str] = set()
    by_type_id: set[str] = set()
    for entry in entries:
        if type(entry) is not dict:
            continue
        if isinstance(entry.get("fullUrl"), str):
            full_urls.add(entry["fullUrl"])
        resource = entry.get("resource")
        if type(resource) is dict and isinstance(resource.get("id"), str):
            by_type_id.add(f"{resource.get('resourceType')}/{resource['id']}")
    prefix = f"{expr}.entry["
    for location, reference in references:
        if not location.startswith(prefix) or reference.startswith("#") or "?" in reference:
            continue
        match = _ENTRY.match(location, len(expr))
        if match is None:
            continue
        entry = entries[int(match.group(1))] if int(match.group(1)) < len(entries) else None
        entry_url = entry.get("fullUrl") if type(entry) is dict else None
        if _resolves(reference, entry_url, full_urls, by_type_id):
            continue
        if reference.startswith(("urn:uuid:", "urn:oid:")):
            severity = "warning" if bundle_type in SERVER_ASSEMBLED else "error"
            issues.append(Issue(severity, "not-found", f"The reference '{reference}' matches no fullUrl in the "
                                "Bundle (a urn: reference can only be resolved inside it)", [location]))
        elif bundle_type in SELF_CONTAINED:
            issues.append(Issue("warning", "not-found", f"The reference '{reference}' resolves to no entry of the "
                                f"{bundle_type} Bundle, which should be self-contained", [location]))
    issues.extend(_searchset_and_history(bundle_type, entries, bundle, expr))
    return issues


def _resolves(reference: str, entry_url: Any, full_urls: set[str], by_type_id: set[str]) -> bool:
    bare = reference.split("/_history/", 1)[0]
    if bare in full_urls or reference in full_urls:
        return True
    relative = _RELATIVE.match(reference)
    if relative is None:
        return False
    target = f"{relative.group('type')}/{relative.group('id')}"
    restful = _RESTFUL.match(entry_url) if isinstance(entry_url, str) else None
    if restful is not None:
        return f"{restful.group('base')}/{target}" in full_urls
    return target in by_type_id


def _searchset_and_history(bundle_type: Any, entries: list[Any], bundle: dict[str, Any],
                           expr: str) -> list[Issue]:
    issues: list[Issue] = []
    if bundle_type == "searchset":
        matches = sum(1 for e in entries if type(e) is dict and type(e.get("search")) is dict
                      and e["search"].get("mode") == "match")
        total = bundle.get("total")
        if type(total) is int and total < matches:
            issues.append(Issue("error", "invariant", f"total is {total} but the Bundle holds {matches} matches: "
                                "total counts every match of the search", [f"{expr}.total"]))
        for index, entry in enumerate(entries):
            if type(entry) is dict and "resource" in entry and "fullUrl" not in entry:
                issues.append(Issue("warning", "required", "An entry of a searchset should have the fullUrl of "
                                    "its resource", [f"{expr}.entry[{index}]"]))
    elif bundle_type == "history":
        for index, entry in enumerate(entries):
            if type(entry) is not dict:
                continue
            request = entry.get("request")
            if type(request) is dict and request.get("method") == "DELETE" and "resource" in entry:
                issues.append(Issue("error", "invariant", "A history entry for a DELETE carries no resource",
                                    [f"{expr}.entry[{index}].resource"]))
    return issues
