"""`_summary` and `_elements` on a read: the subset of a resource the client asked for.

https://hl7.org/fhir/R4/search.html#summary and #elements — a subsetted resource carries the SUBSETTED tag.
`_summary=true` keeps the elements the models mark as summary elements (isSummary in the specification).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from app.errors import FHIRError
from app.fhirmodels import model_class

MANDATORY_ELEMENTS = ("resourceType", "id", "meta")
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
READ_SUMMARIES = ("true", "false", "text", "data")


@lru_cache(maxsize=256)
def summary_elements(res_type: str) -> frozenset[str]:
    """JSON names of the top-level summary elements of a resource type (choice types by their JSON names)."""
    cls = model_class(res_type)
    if cls is None:
        return frozenset()
    names = set()
    for name, field in getattr(cls, "model_fields", {}).items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("summary_element_property"):
            names.add(field.alias or name)
    return frozenset(names)


def mark_subsetted(resource: dict[str, Any]) -> None:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta


def shape(resource: dict[str, Any], summary: str | None, elements: list[str] | None) -> dict[str, Any]:
    """The resource as `_summary` / `_elements` ask (elements wins when both are given, as on a search)."""
    if elements:
        keep = set(elements) | set(MANDATORY_ELEMENTS)
        out = {k: v for k, v in resource.items() if k in keep}
    elif summary == "true":
        keep = set(summary_elements(resource.get("resourceType", ""))) | set(MANDATORY_ELEMENTS)
        out = {k: v for k, v in resource.items() if k in keep}
    elif summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        out = {k: v for k, v in resource.items() if k in ("resourceType", "id", "meta", "text")}
    else:
        return resource
    mark_subsetted(out)
    return out


def read_subset(args: Any, res_type: str) -> tuple[str | None, list[str] | None]:
    """(summary, elements) from a read's query; an unsupported `_summary` is a 400 naming it."""
    summary = args.get("_summary")
    if summary is not None and summary not in READ_SUMMARIES:
        raise FHIRError("not-supported", f"_summary={summary} is not supported on a read "
                        f"({', '.join(READ_SUMMARIES)} are)", "_summary")
    raw = args.get("_elements")
    elements = [e.strip() for e in raw.split(",") if e.strip()] if raw else None
    if summary == "false":
        summary = None
    return summary, elements
