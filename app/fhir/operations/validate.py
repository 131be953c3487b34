"""$validate — https://hl7.org/fhir/R4/resource-operation-validate.html"""
from __future__ import annotations

from flask import current_app

from app.errors import FHIRError, Issue, operation_outcome
from app.store.db import KNOWLEDGE_TYPES

from ..http import fhir_response
from . import operation
from .parameters import read_parameters, single

MODES = ("create", "update", "delete", "profile")


@operation("validate", type_level=True, instance=True,
           definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
           documentation="Validates against the R4 structure (R4B models), the official R4 JSON schema, the "
                         "server's own checks and the R4 core invariants, bindings and extension definitions; "
                         "issues carry FHIRPath expressions and name the constraint or binding.")
def validate(res_type: str | None, res_id: str | None):
    params = read_parameters("resource")
    resource = single(params, "resource")
    mode = single(params, "mode")
    profile = single(params, "profile")
    if mode is not None and mode not in MODES:
        raise FHIRError("invalid", f"mode must be one of {', '.join(MODES)}", "Parameters.parameter('mode')")
    lbp = current_app.extensions["lbp"]
    if res_id is not None:
        current = lbp.store.read(res_type, res_id)
        if mode == "delete":
            if current is None or current.deleted:
                raise FHIRError("not-found", f"{res_type}/{res_id} is not known", f"{res_type}.id")
            return fhir_response(operation_outcome([]))
        if resource is None:
            if current is None or current.deleted:
                raise FHIRError("not-found", f"{res_type}/{res_id} is not known", f"{res_type}.id")
            resource = current.resource()
    if mode == "delete":
        raise FHIRError("required", "mode=delete needs an instance: POST [type]/[id]/$validate",
                        "Parameters.parameter('mode')")
    if not isinstance(resource, dict):
        raise FHIRError("required", "Nothing to validate: send a resource or Parameters with 'resource'",
                        "Parameters.parameter('resource')")
    issues = _validate(resource, res_type, res_id, mode, profile)
    return fhir_response(operation_outcome(issues))


def _validate(resource: dict, res_type: str | None, res_id: str | None, mode: str | None,
              profile: str | None) -> list[Issue]:
    from app.validation import validate_resource

    issues: list[Issue] = []
    actual = resource.get("resourceType")
    if res_type and actual != res_type:
        issues.append(Issue("error", "invalid", f"resourceType '{actual}' does not match the URL type '{res_type}'",
                            [f"{actual}.resourceType"]))
    if mode == "create" and res_id is None and resource.get("id"):
        issues.append(Issue("warning", "informational", "The id is ignored on create", [f"{actual}.id"]))
    if mode == "update" and not resource.get("id"):
        issues.append(Issue("error", "required", "An id is required for update", [f"{actual}.id"]))
    if res_id is not None and resource.get("id") not in (None, res_id):
        issues.append(Issue("error", "invalid", f"The id does not match the URL id '{res_id}'", [f"{actual}.id"]))
    issues.extend(validate_resource(resource, profile=profile, mode=mode, check_rules=True))
    if actual in KNOWLEDGE_TYPES and not any(i.is_error for i in issues):
        try:
            current_app.extensions["lbp"].knowledge.check(resource)
        except FHIRError as err:
            issues.extend(err.issues)
    return issues
