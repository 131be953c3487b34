"""FHIR patch — https://hl7.org/fhir/R4/http.html#patch — JSON Patch (RFC 6902) and FHIRPath Patch.

The patched resource is written as an update through `app.records` (same admission, validation and audit),
with the client's If-Match as the version it patched. FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html)
supports add, insert, delete, replace and move; a path names its element by a FHIRPath whose last step is an
element name (`Patient.birthDate`, `Patient.name.where(use='official').given`), or, for replace and delete,
any expression that selects exactly one complex element (`Patient.identifier.where(system='x')`).
A value is a `value[x]`, or, for a complex element, nested `part`s named by its elements (each again a `value[x]`
or parts); elements that repeat in R4 become arrays.
"""
from __future__ import annotations

import copy
import re
from typing import Any

import jsonpatch
import orjson
from flask import request

from app import records
from app.errors import FHIRError

from .http import check_id, check_type, if_match_version, resource_response

JSON_PATCH = "application/json-patch+json"
_LAST_STEP = re.compile(r"^(?P<parent>.+)\.(?P<name>[A-Za-z][A-Za-z0-9_]*)$")


def patch(res_type: str, res_id: str):
    from flask import current_app

    check_type(res_type)
    check_id(res_id, res_type)
    stored = current_app.extensions["lbp"].store.read(res_type, res_id)
    if stored is None or stored.deleted or stored.content is None:
        raise FHIRError("not-found", f"{res_type}/{res_id} is not known", f"{res_type}.id")
    if_match = if_match_version()
    if if_match is not None and if_match != stored.version:
        raise FHIRError("conflict", f"If-Match names version {if_match}; the current version is {stored.version}",
                        "If-Match", status=412)
    current = stored.resource()
    mimetype = (request.mimetype or "").lower()
    body = _body(mimetype)
    if mimetype == JSON_PATCH:
        patched = _json_patch(current, body)
    else:
        patched = fhirpath_patch(current, body)
    if not isinstance(patched, dict) or patched.get("resourceType") != res_type or patched.get("id") != res_id:
        raise FHIRError("invalid", "A patch may not change the resource's type or id", f"{res_type}.id")
    written = records.update(patched, res_type, res_id, if_match=stored.version if if_match is None else if_match)
    return resource_response(written.stored)


def _body(mimetype: str) -> Any:
    if mimetype not in (JSON_PATCH, "application/fhir+json", "application/json"):
        raise FHIRError("not-supported", f"PATCH takes {JSON_PATCH} (JSON Patch) or application/fhir+json "
                        "(FHIRPath Patch Parameters)", "Content-Type", status=415)
    try:
        return orjson.loads(request.get_data(cache=False) or b"null")
    except orjson.JSONDecodeError as exc:
        raise FHIRError("structure", f"The body is not valid JSON: {exc}", "Parameters") from None


def _json_patch(resource: dict[str, Any], body: Any) -> Any:
    if not isinstance(body, list):
        raise FHIRError("invalid", "A JSON Patch document is an array of operations", "$")
    try:
        return jsonpatch.JsonPatch(body).apply(resource)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise FHIRError("conflict", f"JSON Patch test failed: {exc}", "$", status=422) from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise FHIRError("invalid", f"JSON Patch cannot be applied: {exc}", "$", status=422) from None


# ------------------------------------------------------------------ FHIRPath Patch

def _part(parts: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((p for p in parts if p.get("name") == name), None)


def _value(part: dict[str, Any] | None) -> Any:
    if part is None:
        return None
    for key, value in part.items():
        if key.startswith("value") and key != "value":
            return value
    return None


def _type_of(node: Any) -> str | None:
    return getattr(node, "type", None) or getattr(node, "path", None)


def _element_type(type_name: str | None, name: str) -> str | None:
    """The one type of element `name` of `type_name` (a backbone element's path), None when unknown or a choice."""
    from app.fhirpath.model import r4

    info = r4().element(type_name, name) if type_name else None
    return info.types[0] if info is not None and len(info.types) == 1 else None


def _from_parts(parts: Any, type_name: str | None, where: str) -> dict[str, Any]:
    """A complex value given as parts, one per element (https://hl7.org/fhir/R4/fhirpatch.html)."""
    from app.fhirpath.model import r4

    if not isinstance(parts, list) or not parts:
        raise FHIRError("required", "A value given as parts needs at least one part", where)
    out: dict[str, Any] = {}
    for j, part in enumerate(parts):
        at = f"{where}.part[{j}]"
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str) or not name:
            raise FHIRError("required", "Each part of a value names its element", f"{at}.name")
        info = r4().element(type_name, name) if type_name else None
        if type_name and info is None:
            raise FHIRError("invalid", f"{type_name} has no element {name!r}", f"{at}.name", status=422)
        value = _from_parts(part["part"], _element_type(type_name, name), at) if "part" in part else _value(part)
        if value is None:
            raise FHIRError("required", f"The part {name!r} has no value", at)
        if (info is not None and info.many) or isinstance(out.get(name), list):
            out.setdefault(name, []).append(value)
        elif name in out:
            if info is not None:
                raise FHIRError("invalid", f"{type_name}.{name} does not repeat; it is given twice", at, status=422)
            out[name] = [out[name], value]  # of a type the model does not know: repeated parts are a list
        else:
            out[name] = value
    return out


def _operation_value(value_part: dict[str, Any] | None, type_name: str | None, where: str) -> Any:
    """The operation's value: its value[x], or the complex value its parts describe, typed as `type_name`."""
    if value_part is not None and "part" in value_part and _value(value_part) is None:
        return _from_parts(value_part["part"], type_name, f"{where}.part('value')")
    return _value(value_part)


def _nodes(resource: dict[str, Any], path: str, where: str) -> list[Any]:
    from app.fhirpath import FHIRPathError, compile_expression, evaluate, make_environment

    compiled = compile_expression(path, path=where)
    try:
        items = evaluate(compiled, resource, None, make_environment())
    except FHIRPathError as exc:
        raise FHIRError("invalid", f"The path {path!r} cannot be evaluated: {exc}", where, status=422) from None
    return list(items)


def _repeats(node: Any, name: str) -> bool:
    """Whether the element `name` of the node's type repeats (FHIR JSON then holds it as an array)."""
    from app.fhirpath.model import r4

    type_name = getattr(node, "type", None) or getattr(node, "path", None)
    info = r4().element(type_name, name) if type_name else None
    return bool(info and info.many)


def _container(resource: dict[str, Any], path: str, where: str) -> tuple[dict[str, Any], str, str | None]:
    """The one element holding the path's last step, that step's name, and the step's type when known."""
    m = _LAST_STEP.match(path.strip())
    if m is None:
        raise FHIRError("invalid", f"The path {path!r} must end with an element name", where, status=422)
    parents = [p for p in _nodes(resource, m["parent"], where) if isinstance(getattr(p, "data", p), dict)]
    if len(parents) != 1:
        raise FHIRError("invalid", f"The path {m['parent']!r} selects {len(parents)} elements; it must select one",
                        where, status=422)
    return getattr(parents[0], "data", parents[0]), m["name"], _element_type(_type_of(parents[0]), m["name"])


def _find_owner(node: Any, target: Any) -> tuple[Any, Any] | None:
    """(container, key or index) of `target` (by identity) inside `node`."""
    stack = [node]
    while stack:
        current = stack.pop()
        items = current.items() if isinstance(current, dict) else enumerate(current)
        for key, child in items:
            if child is target:
                return current, key
            if isinstance(child, (dict, list)):
                stack.append(child)
    return None


def _replace_or_delete(resource: dict[str, Any], op: str, path: str, value_part: dict[str, Any] | None,
                       where: str) -> None:
    m = _LAST_STEP.match(path.strip())
    if m is not None:
        owner, name, type_name = _container(resource, path, where)
        value = _operation_value(value_part, type_name, where)
        if name not in owner:
            raise FHIRError("invalid", f"{path} has no value to {op}", where, status=422)
        current = owner[name]
        if isinstance(current, list) and len(current) != 1:
            raise FHIRError("invalid", f"{path} has {len(current)} values; select one", where, status=422)
        if op == "delete":
            del owner[name]
        else:
            owner[name] = [value] if isinstance(current, list) else value
        return
    nodes = _nodes(resource, path, where)
    targets = [getattr(item, "data", item) for item in nodes]
    value = _operation_value(value_part, _type_of(nodes[0]) if len(nodes) == 1 else None, where)
    if len(targets) != 1 or not isinstance(targets[0], dict):
        if op == "delete" and not targets:
            return  # deleting what is not there is no error (fhirpatch.html#delete)
        raise FHIRError("invalid", f"The path {path!r} selects {len(targets)} elements; it must select one "
                        "complex element", where, status=422)
    found = _find_owner(resource, targets[0])
    if found is None:
        raise FHIRError("invalid", f"The path {path!r} does not select an element of the resource", where, status=422)
    owner, key = found
    if op == "replace":
        owner[key] = value
    elif isinstance(owner, list):
        del owner[key]
        parent = _find_owner(resource, owner)
        if not owner and parent is not None:
            del parent[0][parent[1]]
    else:
        del owner[key]


def fhirpath_patch(resource: dict[str, Any], body: Any) -> dict[str, Any]:
    """Apply a FHIRPath Patch Parameters resource to a copy of `resource`."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FHIRError("invalid", "A FHIRPath Patch is a Parameters resource", "Parameters")
    result = copy.deepcopy(resource)
    for i, param in enumerate(body.get("parameter") or []):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(param, dict) or param.get("name") != "operation":
            raise FHIRError("invalid", "Each parameter of a FHIRPath Patch is named 'operation'", f"{where}.name")
        parts = param.get("part") or []
        op = _value(_part(parts, "type"))
        path = _value(_part(parts, "path"))
        if not isinstance(path, str) or not path.strip():
            raise FHIRError("required", "The operation needs a path", f"{where}.part('path')")
        value_part = _part(parts, "value")
        if op in ("add", "replace", "insert") and (value_part is None or (_value(value_part) is None
                                                                           and not value_part.get("part"))):
            raise FHIRError("required", f"The {op} operation needs a value", f"{where}.part('value')")
        if op in ("replace", "delete"):
            _replace_or_delete(result, op, path, value_part, where)
        elif op == "add":
            name = _value(_part(parts, "name"))
            if not isinstance(name, str) or not name:
                raise FHIRError("required", "The add operation needs a name", f"{where}.part('name')")
            nodes = [n for n in _nodes(result, path, where) if isinstance(getattr(n, "data", None), dict)]
            if len(nodes) != 1:
                raise FHIRError("invalid", f"The path {path!r} selects {len(nodes)} elements; it must select one",
                                where, status=422)
            owner = nodes[0].data
            value = _operation_value(value_part, _element_type(_type_of(nodes[0]), name), where)
            if isinstance(owner.get(name), list):
                owner[name].append(value)
            elif name in owner:
                raise FHIRError("invalid", f"{path}.{name} already has a value (use replace)", where, status=422)
            else:
                owner[name] = [value] if _repeats(nodes[0], name) else value
        elif op in ("insert", "move"):
            owner, name, type_name = _container(result, path, where)
            values = owner.setdefault(name, [])
            if not isinstance(values, list):
                raise FHIRError("invalid", f"{path} is not a list", where, status=422)
            if op == "insert":
                index = _value(_part(parts, "index"))
                if not isinstance(index, int) or not 0 <= index <= len(values):
                    raise FHIRError("invalid", f"index must be 0…{len(values)}", f"{where}.part('index')", status=422)
                values.insert(index, _operation_value(value_part, type_name, where))
            else:
                source = _value(_part(parts, "source"))
                destination = _value(_part(parts, "destination"))
                if not (isinstance(source, int) and isinstance(destination, int)
                        and 0 <= source < len(values) and 0 <= destination < len(values)):
                    raise FHIRError("invalid", f"source and destination must be 0…{len(values) - 1}", where,
                                    status=422)
                values.insert(destination, values.pop(source))
        else:
            raise FHIRError("not-supported", f"FHIRPath Patch operation type {op!r} is not supported "
                            "(add, insert, delete, replace, move are)", f"{where}.part('type')")
    return result
