"""Reading and writing FHIR Parameters for operations (POST body or GET query)."""
from __future__ import annotations

from typing import Any

from flask import request

from app.errors import FHIRError

from ..http import json_body


def read_parameters(resource_param: str | None = "resource") -> dict[str, list[Any]]:
    """Operation input as name -> values. A POSTed bare resource counts as the `resource_param`."""
    out: dict[str, list[Any]] = {}
    for k, v in request.args.items(multi=True):
        if k != "_format":
            out.setdefault(k, []).append(v)
    if request.method == "POST" and request.content_length:
        body = json_body("Parameters")
        if not isinstance(body, dict):
            raise FHIRError("structure", "The body must be a Parameters resource or a resource", "Parameters")
        if body.get("resourceType") == "Parameters":
            for i, p in enumerate(body.get("parameter") or []):
                if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                    raise FHIRError("structure", "Each parameter needs a name", f"Parameters.parameter[{i}]")
                value = p.get("resource")
                if value is None:
                    value = next((v for k, v in p.items() if k.startswith("value")), None)
                if value is None and "part" in p:
                    value = p["part"]
                out.setdefault(p["name"], []).append(value)
        elif resource_param:
            out.setdefault(resource_param, []).append(body)
        else:
            raise FHIRError("invalid", "The body must be a Parameters resource", "Parameters")
    return out


# The JSON type each operation parameter this server reads must have (strings: FHIR string, uri, code,
# canonical, date; objects: a resource or a complex datatype). A value of another type is a 400 naming it.
_TEXT, _OBJECT = (str,), (dict,)
PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    **{name: _TEXT for name in ("url", "system", "code", "display", "filter", "version", "subject", "encounter",
                                "practitioner", "organization", "today", "mode", "profile", "canonical",
                                "identifier", "language")},
    **{name: _OBJECT for name in ("coding", "codeableConcept", "data", "resource", "questionnaire-response",
                                  "valueSet")},
    "count": (str, int), "offset": (str, int), "useServerData": (str, bool), "questionnaire": (str, dict),
}


def single(params: dict[str, list[Any]], name: str, *, required: bool = False) -> Any:
    values = params.get(name) or []
    if len(values) > 1:
        raise FHIRError("invalid", f"Parameter '{name}' may appear once", f"Parameters.parameter('{name}')")
    if not values:
        if required:
            raise FHIRError("required", f"Parameter '{name}' is required", f"Parameters.parameter('{name}')")
        return None
    value = values[0]
    kinds = PARAMETER_TYPES.get(name)
    if value is not None and kinds is not None and (
            not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
        wanted = " or ".join({"str": "a string", "dict": "an object", "int": "an integer",
                              "bool": "a boolean"}[k.__name__] for k in kinds)
        raise FHIRError("structure", f"Parameter '{name}' must be {wanted}", f"Parameters.parameter('{name}')")
    return value


def parameters(**values: Any) -> dict:
    """Build a Parameters resource; dict values that are resources go into `resource`."""
    out: list[dict[str, Any]] = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict) and "resourceType" in value:
            out.append({"name": name, "resource": value})
        elif isinstance(value, bool):
            out.append({"name": name, "valueBoolean": value})
        elif isinstance(value, int):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": name, "valueString": str(value)})
    return {"resourceType": "Parameters", "parameter": out}
