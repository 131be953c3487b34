"""FHIR create, update and delete — https://hl7.org/fhir/R4/http.html#create #update #delete

`prepare` is the one gate every write passes, from the REST API, from bundles, from the loader and
from the web pages: type and id checks, validation, and the knowledge checks for artifacts.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, request

from app.errors import FHIRError, Issue
from app.store.db import KNOWLEDGE_TYPES
from app.store.search import count_matches

from .http import (
    check_id,
    check_type,
    fhir_response,
    if_match_version,
    json_body,
    resource_response,
)


def prepare(
    resource: Any,
    *,
    expected_type: str | None = None,
    expected_id: str | None = None,
    require_id: bool = False,
    validate: bool | None = None,
    where: str | None = None,
) -> dict:
    """Check a resource about to be written; raise FHIRError (with expressions) when it may not be.

    `where` rewrites expressions for bundle entries: `Patient.birthDate` -> `Bundle.entry[3].resource.birthDate`.
    """
    lbp = current_app.extensions["lbp"]
    if not isinstance(resource, dict):
        raise _at(FHIRError("structure", "A resource must be a JSON object", "Resource"), where)
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str) or res_type not in lbp.resource_types:
        raise _at(FHIRError("invalid", f"Unknown or missing resourceType '{res_type}'", "Resource.resourceType"),
                  where)
    if expected_type and res_type != expected_type:
        raise _at(FHIRError("invalid", f"resourceType '{res_type}' does not match the URL type '{expected_type}'",
                            f"{res_type}.resourceType"), where)
    res_id = resource.get("id")
    if expected_id is not None:
        if res_id is None:
            raise _at(FHIRError("required", "The resource must carry the id given in the URL", f"{res_type}.id"),
                      where)
        if res_id != expected_id:
            raise _at(FHIRError("invalid", f"The id '{res_id}' does not match the URL id '{expected_id}'",
                                f"{res_type}.id"), where)
    if require_id and res_id is None:
        raise _at(FHIRError("required", "An id is required", f"{res_type}.id"), where)
    if res_id is not None:
        if not isinstance(res_id, str):
            raise _at(FHIRError("invalid", "id must be a string", f"{res_type}.id"), where)
        check_id(res_id, res_type)
    if validate is None:
        validate = current_app.config["VALIDATE_WRITES"]
    if validate:
        from app.validation import validate_at_level

        issues = validate_at_level(resource, current_app.config["WRITE_VALIDATION_LEVEL"])
        errors = [i for i in issues if i.is_error]
        if errors:
            raise _at(FHIRError("invalid", errors[0].text, issues=errors), where)
    if res_type in KNOWLEDGE_TYPES:
        try:
            lbp.knowledge.check(resource)
        except FHIRError as err:
            raise _at(err, where) from None
    return resource


def _at(err: FHIRError, where: str | None) -> FHIRError:
    if where is None:
        return err
    for issue in err.issues:
        issue.expression = [_prefix_expression(e, where) for e in issue.expression] or [where]
    return err


def _prefix_expression(expr: str, where: str) -> str:
    head, dot, rest = expr.partition(".")
    if head[:1].isupper() and "(" not in head:
        return where + (dot + rest if dot else "")
    return f"{where}.{expr}"


def conditional_ids(res_type: str, query: str, conn=None) -> list[str]:
    lbp = current_app.extensions["lbp"]
    return count_matches(lbp.store, res_type, query, conn, lbp.knowledge.valueset_codes)


# ------------------------------------------------------------------ interactions

def create(res_type: str):
    check_type(res_type)
    resource = json_body(res_type)
    if res_type == "QuestionnaireResponse":  # scored and extracted on the way in
        from .qr import submit

        condition = request.headers.get("If-None-Exist")
        result = submit(resource, if_none_exist=condition.lstrip("?") if condition else None)
        return resource_response(result.response, 201 if result.created else 200, location=True)
    prepare(resource, expected_type=res_type)
    store = current_app.extensions["lbp"].store
    condition = request.headers.get("If-None-Exist")
    with store.transaction() as tx:
        if condition:
            ids = conditional_ids(res_type, condition.lstrip("?"), tx.conn)
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
    prepare(resource, expected_type=res_type, expected_id=res_id)
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
        if len(ids) > 1:
            raise FHIRError("multiple-matches", "The conditional update matches more than one resource",
                            f"{res_type}?", status=412)
        if ids:
            prepare(resource, expected_type=res_type, expected_id=resource.get("id") and ids[0])
            resource["id"] = ids[0]
            stored, created = tx.update(resource, if_match=if_match_version())
        else:
            prepare(resource, expected_type=res_type)
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
        if len(ids) > 1:
            raise FHIRError("multiple-matches", "The conditional delete matches more than one resource",
                            f"{res_type}?", status=412)
        stored = tx.delete(res_type, ids[0]) if ids else None
    if stored is not None:
        after_write([stored])
    text = f"Deleted {res_type}/{ids[0]}" if stored is not None else "No resource matched; nothing deleted"
    return fhir_response({"resourceType": "OperationOutcome", "issue": [Issue(
        "information", "informational", text, [f"{res_type}?"]).to_fhir()]}, 200)


def after_write(written) -> None:
    """Audit what was written; let this process see knowledge changes at once (other workers follow the epoch)."""
    from app.auth import audit

    for s in written:
        if s.res_type not in KNOWLEDGE_TYPES:
            audit.add_entities(f"{s.res_type}/{s.res_id}")
            if s.content is not None:
                audit.add_entities(*audit.patient_refs(s.resource()))
    lbp = current_app.extensions["lbp"]
    if any(s.res_type in KNOWLEDGE_TYPES for s in written):
        lbp.knowledge.refresh(force=True)
