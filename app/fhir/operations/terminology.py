"""ValueSet/$expand, ValueSet/$validate-code and CodeSystem/$lookup over the local terminology.

https://hl7.org/fhir/R4/valueset-operation-expand.html, /valueset-operation-validate-code.html,
/codesystem-operation-lookup.html
"""
from __future__ import annotations

from flask import current_app

from app.errors import FHIRError

from ..http import fhir_response
from . import operation
from .parameters import read_parameters, single
from .reasoning_common import knowledge_base


def _url(res_type: str, res_id: str | None, params: dict, name: str = "url") -> str:
    if res_id is not None:
        stored = current_app.extensions["lbp"].store.read(res_type, res_id)
        if stored is None or stored.deleted:
            raise FHIRError("not-found", f"{res_type}/{res_id} is not known", f"{res_type}.id")
        url = stored.resource().get("url")
        if not url:
            raise FHIRError("invalid", f"{res_type}/{res_id} has no url", f"{res_type}.url")
        return url
    url = single(params, name)
    if not url:
        raise FHIRError("required", f"Parameter '{name}' is required", f"Parameters.parameter('{name}')")
    return url


def _int(params: dict, name: str, default: int | None) -> int | None:
    raw = single(params, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise FHIRError("invalid", f"'{name}' must be an integer", f"Parameters.parameter('{name}')") from None
    if value < 0:
        raise FHIRError("invalid", f"'{name}' must not be negative", f"Parameters.parameter('{name}')")
    return value


@operation("expand", types=frozenset({"ValueSet"}), type_level=True, instance=True, idempotent=True,
           definition="http://hl7.org/fhir/OperationDefinition/ValueSet-expand")
def expand(res_type: str, res_id: str | None):
    params = read_parameters("valueSet")
    url = _url(res_type, res_id, params)
    result = knowledge_base().terminology.expand(url, filter=single(params, "filter"),
                                                 count=_int(params, "count", None), offset=_int(params, "offset", 0))
    return fhir_response(result)


@operation("validate-code", types=frozenset({"ValueSet", "CodeSystem"}), type_level=True, instance=True,
           idempotent=True, definition="http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code")
def validate_code(res_type: str, res_id: str | None):
    params = read_parameters(None)
    url = _url(res_type, res_id, params)
    system, code, display = single(params, "system"), single(params, "code"), single(params, "display")
    coding = single(params, "coding")
    if isinstance(coding, dict):
        system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
    concept = single(params, "codeableConcept")
    if isinstance(concept, dict):
        results = [knowledge_base().terminology.validate_code(url, c.get("system"), c.get("code", ""),
                                                              c.get("display"))
                   for c in concept.get("coding") or []]
        ok = next((r for r in results if _result(r)), results[0] if results else None)
        if ok is None:
            raise FHIRError("required", "codeableConcept has no coding", "Parameters.parameter('codeableConcept')")
        return fhir_response(ok)
    if not code:
        raise FHIRError("required", "Give code (with system), coding or codeableConcept",
                        "Parameters.parameter('code')")
    return fhir_response(knowledge_base().terminology.validate_code(url, system, code, display))


def _result(parameters: dict) -> bool:
    return any(p.get("name") == "result" and p.get("valueBoolean") for p in parameters.get("parameter", []))


@operation("lookup", types=frozenset({"CodeSystem"}), type_level=True, instance=True, idempotent=True,
           definition="http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup")
def lookup(res_type: str, res_id: str | None):
    params = read_parameters(None)
    coding = single(params, "coding")
    if isinstance(coding, dict):
        system, code = coding.get("system"), coding.get("code")
    else:
        system = _url(res_type, res_id, params, "system") if res_id is None else _url(res_type, res_id, params)
        code = single(params, "code")
    if not code:
        raise FHIRError("required", "Parameter 'code' is required", "Parameters.parameter('code')")
    return fhir_response(knowledge_base().terminology.lookup(system, code))
