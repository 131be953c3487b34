"""Admitting a resource to the store and what follows every write: the one gate all writes pass.

`admit` checks type and id, validates (R4 JSON schema and own checks, at the configured level) and runs
the artifact checks on knowledge artifacts; it raises FHIRError with FHIRPath expressions, rewritten to
the bundle entry when `where` is given. `after_write` audits what was written and lets this process see
knowledge changes at once (other workers follow the knowledge epoch).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from flask import current_app
from sqlalchemy.engine import Connection

from app.auth import audit
from app.errors import FHIRError
from app.store import jsonio
from app.store.db import KNOWLEDGE_TYPES, Stored
from app.store.search import count_matches
from app.validation import validate_at_level
from app.validation.rules import id_problem

FHIRJson = dict[str, Any]


def services() -> Any:
    """The application's services (store, knowledge, resource types), as wired by create_app."""
    return current_app.extensions["lbp"]


def admit(
    resource: Any,
    *,
    expected_type: str | None = None,
    expected_id: str | None = None,
    require_id: bool = False,
    validate: bool | None = None,
    where: str | None = None,
) -> FHIRJson:
    """Check a resource about to be written; raise FHIRError (with expressions) when it may not be.

    `where` rewrites expressions for bundle entries: `Patient.birthDate` -> `Bundle.entry[3].resource.birthDate`.
    """
    try:
        res_type = _check_identity(resource, expected_type, expected_id, require_id)
        if validate is None:
            validate = bool(current_app.config["VALIDATE_WRITES"])
        if validate:
            exact_decimals = _scan_numbers(resource, res_type)
            # exact decimals are JSON numbers to the validator; most resources hold none and are not copied
            _check_valid(jsonio.plain(resource) if exact_decimals else resource)
        if res_type in KNOWLEDGE_TYPES:
            check_artifact(resource)
    except FHIRError as err:
        raise at_entry(err, where) from None
    return cast(FHIRJson, resource)


# FHIR integer, positiveInt and unsignedInt are 32-bit (https://hl7.org/fhir/R4/datatypes.html#primitive)
_INT32 = {"valueInteger": (-2**31, 2**31 - 1), "valuePositiveInt": (1, 2**31 - 1), "valueUnsignedInt": (0, 2**31 - 1)}


def _scan_numbers(resource: FHIRJson, res_type: str) -> bool:
    """Whether the resource holds an exact decimal (`jsonio.FHIRDecimal`); raises FHIRError (with the element's
    path) for a FHIR integer outside its 32-bit range. One walk without paths: a path is made only for an error."""
    exact_decimal = False
    stack: list[Any] = [resource]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            for key, value in node.items():
                kind = type(value)
                if kind is dict or kind is list:
                    push(value)
                elif kind is int:
                    bounds = _INT32.get(key)
                    if bounds is not None and not bounds[0] <= value <= bounds[1]:
                        _check_integer_ranges(resource, res_type)
                elif kind is jsonio.FHIRDecimal:
                    exact_decimal = True
        else:
            for value in node:
                kind = type(value)
                if kind is dict or kind is list:
                    push(value)
                elif kind is jsonio.FHIRDecimal:
                    exact_decimal = True
    return exact_decimal


def _check_integer_ranges(resource: FHIRJson, res_type: str) -> None:
    stack: list[tuple[Any, str]] = [(resource, res_type)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                bounds = _INT32.get(key)
                if bounds is not None and isinstance(value, int) and not isinstance(value, bool) and not (
                        bounds[0] <= value <= bounds[1]):
                    raise FHIRError("value", f"{key} {value} is outside the range of a FHIR {key[5:]} "
                                    f"({bounds[0]}..{bounds[1]})", f"{path}.{key}")
                if isinstance(value, (dict, list)):
                    stack.append((value, f"{path}.{key}"))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node) if isinstance(v, (dict, list)))


def _check_identity(resource: Any, expected_type: str | None, expected_id: str | None, require_id: bool) -> str:
    """The resource's type, after checking type and id against what the URL (or the caller) expects."""
    if not isinstance(resource, dict):
        raise FHIRError("structure", "A resource must be a JSON object", "Resource")
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str) or res_type not in services().resource_types:
        raise FHIRError("invalid", f"Unknown or missing resourceType '{res_type}'", "Resource.resourceType")
    if expected_type and res_type != expected_type:
        raise FHIRError("invalid", f"resourceType '{res_type}' does not match the URL type '{expected_type}'",
                        f"{res_type}.resourceType")
    res_id = resource.get("id")
    if expected_id is not None:
        if res_id is None:
            raise FHIRError("required", "The resource must carry the id given in the URL", f"{res_type}.id")
        if res_id != expected_id:
            raise FHIRError("invalid", f"The id '{res_id}' does not match the URL id '{expected_id}'",
                            f"{res_type}.id")
    if require_id and res_id is None:
        raise FHIRError("required", "An id is required", f"{res_type}.id")
    if res_id is not None:
        if not isinstance(res_id, str):
            raise FHIRError("invalid", "id must be a string", f"{res_type}.id")
        if id_problem(res_id) is not None:
            raise FHIRError("invalid", f"'{res_id}' is not a valid resource id", f"{res_type}.id")
    return res_type


def _check_valid(resource: FHIRJson) -> None:
    issues = validate_at_level(resource, current_app.config["WRITE_VALIDATION_LEVEL"])
    errors = [i for i in issues if i.is_error]
    if errors:
        raise FHIRError("invalid", errors[0].text, issues=errors)


def check_artifact(resource: FHIRJson) -> None:
    """Artifact checks on write: refuse a knowledge artifact the engine could not use.

    Today: the artifact must load into a KnowledgeBase on its own (its expressions compile, its
    references are well formed). Further static checks of artifacts belong here, so that every write
    path (REST, bundles, loader) applies them.
    """
    services().knowledge.check(resource)


def at_entry(err: FHIRError, where: str | None) -> FHIRError:
    """The error with its expressions rewritten to a bundle entry (`where`), e.g. `Bundle.entry[3].resource`."""
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


def conditional_ids(res_type: str, query: str, conn: Connection | None = None) -> list[str]:
    """Ids matching a conditional query (If-None-Exist, conditional update/delete/reference): at most two."""
    app_services = services()
    return count_matches(app_services.store, res_type, query, conn, app_services.knowledge.valueset_matcher)


def after_write(written: Iterable[Stored]) -> None:
    """Audit what was written; let this process see knowledge changes at once (other workers follow the epoch)."""
    written = list(written)
    for s in written:
        if s.res_type not in KNOWLEDGE_TYPES:
            audit.add_entities(f"{s.res_type}/{s.res_id}")
            if s.content is not None:
                audit.add_entities(*audit.patient_refs(s.resource()))
    if any(s.res_type in KNOWLEDGE_TYPES for s in written):
        services().knowledge.refresh(force=True)
