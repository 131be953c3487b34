"""FHIR read and vread — https://hl7.org/fhir/R4/http.html#read #vread"""
from __future__ import annotations

from flask import current_app, request

from app.auth import audit
from app.errors import FHIRError
from app.store.db import KNOWLEDGE_TYPES, Stored, http_date

from .http import check_id, check_type, fhir_response, resource_response
from .shaping import read_subset, shape


def _not_found(res_type: str, res_id: str) -> FHIRError:
    return FHIRError("not-found", f"{res_type}/{res_id} is not known", f"{res_type}.id")


def _gone(stored: Stored) -> FHIRError:
    return FHIRError("deleted", f"{stored.res_type}/{stored.res_id} was deleted", f"{stored.res_type}.id",
                     status=410, headers={"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)})


def read(res_type: str, res_id: str):
    check_type(res_type)
    check_id(res_id, res_type)
    stored = current_app.extensions["lbp"].store.read(res_type, res_id)
    if stored is None:
        raise _not_found(res_type, res_id)
    if stored.deleted:
        raise _gone(stored)
    if request.headers.get("If-None-Match") == stored.etag:
        return fhir_response(b"", 304, {"ETag": stored.etag})
    _audit_patient(stored)
    return _subset_response(stored)


def _subset_response(stored: Stored):
    """The stored resource, or the subset `_summary` / `_elements` ask for."""
    summary, elements = read_subset(request.args, stored.res_type)
    if summary is None and not elements:
        return resource_response(stored)
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}
    return fhir_response(shape(stored.resource(), summary, elements), 200, headers)


def vread(res_type: str, res_id: str, vid: str):
    check_type(res_type)
    check_id(res_id, res_type)
    if not (vid.isascii() and vid.isdigit()):
        raise FHIRError("invalid", f"'{vid}' is not a version id", f"{res_type}.meta.versionId")
    stored = current_app.extensions["lbp"].store.vread(res_type, res_id, int(vid))
    if stored is None:
        raise FHIRError("not-found", f"{res_type}/{res_id} has no version {vid}", f"{res_type}.meta.versionId")
    if stored.deleted:
        raise _gone(stored)
    _audit_patient(stored)
    return _subset_response(stored)


def _audit_patient(stored: Stored) -> None:
    if stored.res_type not in KNOWLEDGE_TYPES and stored.content is not None:
        audit.add_entities(*audit.patient_refs(stored.resource()))
