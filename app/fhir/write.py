"""FHIR create, update and delete — https://hl7.org/fhir/R4/http.html#create #update #delete

HTTP only: the body and headers in, the response out. What may be written, and what follows a write,
is decided by `app.records` (the gate every write passes, from every entry point).
"""
from __future__ import annotations

from flask import request

from app import records
from app.auth import audit
from app.errors import Issue

from .http import (
    check_id,
    check_type,
    fhir_response,
    if_match_version,
    json_body,
    resource_response,
)

# ------------------------------------------------------------------ interactions

def create(res_type: str):
    check_type(res_type)
    resource = json_body(res_type)
    condition = request.headers.get("If-None-Exist")
    written = records.create(resource, res_type, if_none_exist=condition.lstrip("?") if condition else None)
    if condition:  # the query is audited under what it matched
        audit.add_query(res_type, condition.lstrip("?"), [] if written.created else [written.stored.res_id])
    return resource_response(written.stored, 201 if written.created else 200, location=True)


def update(res_type: str, res_id: str):
    check_type(res_type)
    check_id(res_id, res_type)
    resource = json_body(res_type)
    written = records.update(resource, res_type, res_id, if_match=if_match_version())
    return resource_response(written.stored, 201 if written.created else 200, location=written.created)


def conditional_update(res_type: str):
    check_type(res_type)
    resource = json_body(res_type)
    written = records.conditional_update(resource, res_type, request.query_string.decode(),
                                         if_match=if_match_version())
    audit.add_query(res_type, request.query_string.decode(), [] if written.created else [written.stored.res_id])
    return resource_response(written.stored, 201 if written.created else 200, location=written.created)


def delete(res_type: str, res_id: str):
    check_type(res_type)
    check_id(res_id, res_type)
    stored = records.delete(res_type, res_id, if_match=if_match_version())
    if stored is None:
        return fhir_response(
            {"resourceType": "OperationOutcome", "issue": [Issue(
                "information", "informational", f"{res_type}/{res_id} did not exist or was already deleted",
                [f"{res_type}.id"]).to_fhir()]},
            200,
        )
    return fhir_response(
        {"resourceType": "OperationOutcome", "issue": [Issue(
            "information", "informational", f"Deleted {res_type}/{res_id}", [f"{res_type}.id"]).to_fhir()]},
        200,
        {"ETag": stored.etag},
    )


def conditional_delete(res_type: str):
    check_type(res_type)
    stored = records.conditional_delete(res_type, request.query_string.decode())
    audit.add_query(res_type, request.query_string.decode(), [stored.res_id] if stored is not None else [])
    text = f"Deleted {res_type}/{stored.res_id}" if stored is not None else "No resource matched; nothing deleted"
    return fhir_response({"resourceType": "OperationOutcome", "issue": [Issue(
        "information", "informational", text, [f"{res_type}?"]).to_fhir()]}, 200)
