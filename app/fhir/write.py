"""FHIR create, update and delete — https://hl7.org/fhir/R4/http.html#create #update #delete

HTTP only: the body and headers in, the response out. What may be written, and what follows a write,
is decided by `app.records` (the gate every write passes, from every entry point).
"""
from __future__ import annotations

from flask import current_app, request

from app.auth import audit
from app.errors import FHIRError, Issue
from app.records import admit, after_write, conditional_ids, submit_response

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
    if res_type == "QuestionnaireResponse":  # scored and extracted on the way in
        condition = request.headers.get("If-None-Exist")
        result = submit_response(resource, if_none_exist=condition.lstrip("?") if condition else None)
        return resource_response(result.response, 201 if result.created else 200, location=True)
    admit(resource, expected_type=res_type)
    store = current_app.extensions["lbp"].store
    condition = request.headers.get("If-None-Exist")
    with store.transaction() as tx:
        if condition:
            ids = conditional_ids(res_type, condition.lstrip("?"), tx.conn)
            audit.add_query(res_type, condition.lstrip("?"), ids)
            if len(ids) > 1:
                raise FHIRError("multiple-matches", f"If-None-Exist matches {len(ids)} or more resources",
                                "If-None-Exist", status=412)
            if ids:
                existing = tx.read(res_type, ids[0])
                assert existing is not None
                return resource_response(existing, 200, location=True)
        resource.pop("id", None)
        stored = tx.create(resource)
    after_write([stored])
    return resource_response(stored, 201, location=True)


def update(res_type: str, res_id: str):
    check_type(res_type)
    check_id(res_id, res_type)
    resource = json_body(res_type)
    admit(resource, expected_type=res_type, expected_id=res_id)
    store = current_app.extensions["lbp"].store
    with store.transaction() as tx:
        stored, created = tx.update(resource, if_match=if_match_version())
    after_write([stored])
    return resource_response(stored, 201 if created else 200, location=created)


def conditional_update(res_type: str):
    check_type(res_type)
    resource = json_body(res_type)
    store = current_app.extensions["lbp"].store
    with store.transaction() as tx:
        ids = conditional_ids(res_type, request.query_string.decode(), tx.conn)
        audit.add_query(res_type, request.query_string.decode(), ids)
        if len(ids) > 1:
            raise FHIRError("multiple-matches", "The conditional update matches more than one resource",
                            f"{res_type}?", status=412)
        if ids:
            admit(resource, expected_type=res_type, expected_id=resource.get("id") and ids[0])
            resource["id"] = ids[0]
            stored, created = tx.update(resource, if_match=if_match_version())
        else:
            admit(resource, expected_type=res_type)
            if resource.get("id"):
                stored, created = tx.update(resource)
            else:
                stored, created = tx.create(resource), True
    after_write([stored])
    return resource_response(stored, 201 if created else 200, location=created)


def delete(res_type: str, res_id: str):
    check_type(res_type)
    check_id(res_id, res_type)
    store = current_app.extensions["lbp"].store
    with store.transaction() as tx:
        stored = tx.delete(res_type, res_id, if_match=if_match_version())
    if stored is None:
        return fhir_response(
            {"resourceType": "OperationOutcome", "issue": [Issue(
                "information", "informational", f"{res_type}/{res_id} did not exist or was already deleted",
                [f"{res_type}.id"]).to_fhir()]},
            200,
        )
    after_write([stored])
    return fhir_response(
        {"resourceType": "OperationOutcome", "issue": [Issue(
            "information", "informational", f"Deleted {res_type}/{res_id}", [f"{res_type}.id"]).to_fhir()]},
        200,
        {"ETag": stored.etag},
    )


def conditional_delete(res_type: str):
    check_type(res_type)
    store = current_app.extensions["lbp"].store
    with store.transaction() as tx:
        ids = conditional_ids(res_type, request.query_string.decode(), tx.conn)
        audit.add_query(res_type, request.query_string.decode(), ids)
        if len(ids) > 1:
            raise FHIRError("multiple-matches", "The conditional delete matches more than one resource",
                            f"{res_type}?", status=412)
        stored = tx.delete(res_type, ids[0]) if ids else None
    if stored is not None:
        after_write([stored])
    text = f"Deleted {res_type}/{ids[0]}" if stored is not None else "No resource matched; nothing deleted"
    return fhir_response({"resourceType": "OperationOutcome", "issue": [Issue(
        "information", "informational", text, [f"{res_type}?"]).to_fhir()]}, 200)
