"""Patient/[id]/$everything — the patient and the resources in their Patient compartment, as a paged searchset.

https://hl7.org/fhir/R4/patient-operation-everything.html. The compartment is the R4 Patient
CompartmentDefinition (https://hl7.org/fhir/R4/compartmentdefinition-patient.html, shipped as
`app/fhir/patient_compartment.json`): a resource of a listed type is in it when any of the type's listed search
parameters refers to the patient (AuditEvents excluded: the audit trail is about access to the record, not part
of it; other Patients that `link` to this one are not followed). Only the types the access token may read are
searched (the others are named in an outcome entry); every resource returned is audited.
Parameters: `_since` (lastUpdated on or after), `_type` (comma-separated types), `_count` and `_offset` paging.
The page is cut in the database (ordered by type and id; a resource that matches by several parameters is
counted once): only the page's resources are read.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from urllib.parse import urlencode

from flask import current_app, request

from app import auth as access
from app.auth import audit
from app.errors import FHIRError, Issue, operation_outcome
from app.store import record
from app.store import search as engine
from app.store.db import KNOWLEDGE_TYPES
from app.store.indexing import date_range

from ..http import base_url, check_id, fhir_response
from . import operation

DEFAULT_COUNT = 100


COMPARTMENT_FILE = Path(__file__).resolve().parents[1] / "patient_compartment.json"


@cache
def compartment_params() -> dict[str, tuple[str, ...]]:
    """Resource type -> the search parameters that put a resource of it in the Patient compartment."""
    data = json.loads(COMPARTMENT_FILE.read_text(encoding="utf-8"))
    return {t: tuple(params) for t, params in data["params"].items()}


def _updated_since(patient, since: str) -> bool:
    """Whether the Patient was last updated on or after `since` (the same test `_lastUpdated=ge` makes)."""
    low = date_range(since)
    if low is None:
        raise FHIRError("invalid", f"_since must be a FHIR date or dateTime, got '{since}'", "_since")
    return float(patient.last_updated) >= low[0]


def _int(name: str, default: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise FHIRError("invalid", f"{name} must be an integer 0…{high}, got '{raw}'", name)
    return int(raw)


@operation("everything", types=frozenset({"Patient"}), type_level=False, instance=True, idempotent=True,
           definition="http://hl7.org/fhir/OperationDefinition/Patient-everything")
def everything(res_type: str, res_id: str | None):
    assert res_id is not None
    check_id(res_id, "Patient")
    lbp = current_app.extensions["lbp"]
    store = lbp.store
    patient = store.read("Patient", res_id)
    if patient is None or patient.deleted:
        raise FHIRError("not-found", f"Patient/{res_id} is not known", "Patient.id")
    since = request.args.get("_since")
    wanted = request.args.get("_type")
    # the audit trail is about access to the record, not part of it
    compartment = compartment_params()
    types = sorted(t for t in compartment if t in lbp.resource_types and t not in KNOWLEDGE_TYPES
                   and t not in ("Patient", "AuditEvent"))
    if wanted:
        asked = [t.strip() for t in wanted.split(",") if t.strip()]
        unknown = [t for t in asked if t != "Patient" and t not in types]
        if unknown:
            raise FHIRError("not-supported", f"_type: {', '.join(unknown)} not in the patient compartment", "_type")
        types = [t for t in types if t in asked]
    include_patient = not wanted or "Patient" in wanted.split(",")
    withheld = [t for t in types if not access.allowed(t, "r")]
    types = [t for t in types if t not in withheld]
    count = _int("_count", DEFAULT_COUNT, engine.MAX_COUNT)
    offset = _int("_offset", 0, 10**9)

    with_patient = include_patient and (not since or _updated_since(patient, since))
    # the Patient leads the first page; the compartment's resources follow, ordered by type and id
    skip = max(0, offset - 1) if with_patient else offset
    room = count - (1 if with_patient and offset == 0 else 0)
    total, page = record.compartment_page(store, res_id, {t: compartment[t] for t in types}, since=since,
                                          offset=skip, count=max(0, room))
    found = [patient, *page] if with_patient and offset == 0 and count > 0 else page
    total += 1 if with_patient else 0
    base = base_url()
    entries = []
    for stored in found:
        audit.add_entities(f"{stored.res_type}/{stored.res_id}")
        entries.append({"fullUrl": f"{base}/{stored.res_type}/{stored.res_id}", "resource": stored.resource(),
                        "search": {"mode": "match"}})
    if withheld:
        entries.append({"resource": operation_outcome([Issue(
            "information", "suppressed", f"Not searched, the access token does not cover them: {', '.join(withheld)}",
            ["Patient/$everything"])]), "search": {"mode": "outcome"}})
    echo = [(k, v) for k, v in request.args.items(multi=True) if k in ("_since", "_type")] + [("_count", str(count))]

    def url(at: int) -> str:
        return f"{base}/Patient/{res_id}/$everything?{urlencode([*echo, ('_offset', str(at))])}"

    links = [{"relation": "self", "url": url(offset)}]
    if offset + count < total:
        links.append({"relation": "next", "url": url(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": url(max(0, offset - count))})
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    if entries:
        bundle["entry"] = entries
    return fhir_response(bundle)
