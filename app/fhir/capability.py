"""CapabilityStatement — https://hl7.org/fhir/R4/http.html#capabilities

Generated from what is registered (search parameters that are indexed, operations that exist), so it
cannot claim more than the server does.
"""
from __future__ import annotations

from functools import lru_cache

from flask import current_app

from app.store.db import KNOWLEDGE_TYPES

from .http import base_url, fhir_response
from .operations import OPERATIONS, all_operations

SOFTWARE_VERSION = "0.1.0"
TYPE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                     "search-type"]


def metadata():
    return fhir_response(capability_statement(base_url()))


def capability_statement(base: str) -> dict:
    lbp = current_app.extensions["lbp"]
    statement = dict(_build(base, tuple(sorted(lbp.resource_types)), tuple(sorted(OPERATIONS))))
    rest = dict(statement["rest"][0])
    rest["security"] = _security(base, lbp.auth)
    statement["rest"] = [rest]
    return statement


def _security(base: str, auth) -> dict:
    root = base.rsplit(current_app.config["FHIR_BASE_PATH"], 1)[0]
    if auth.disabled:
        return {"cors": True, "description": "WARNING: AUTHENTICATION IS DISABLED on this server "
                                             "(LBP_AUTH_DISABLED=true). Anyone can read and write patient data."}
    return {
        "cors": True,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}], "text": "SMART Backend Services (client credentials, "
                                                                    "private_key_jwt with ES384 or RS384)"}],
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                       "extension": [{"url": "token", "valueUri": root + "/auth/token"}]}],
        "description": "Bearer access tokens from the token endpoint; SMART v2 (system/Type.cruds) and v1 "
                       "(system/Type.read|write) scopes. Knowledge artifacts are readable without a token"
                       + ("" if auth.public_knowledge else " only with a token") + "; patient data never.",
    }


@lru_cache(maxsize=4)
def _build(base: str, types: tuple[str, ...], _ops: tuple[str, ...]) -> dict:
    lbp = current_app.extensions["lbp"]
    registry = lbp.store.search_params
    resources = []
    for t in types:
        params = [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]
        for code, sp in sorted(registry.params_for(t).items()):
            params.append({"name": code, "definition": sp.url, "type": sp.type})
        entry = {
            "type": t,
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "local"],
            "searchInclude": ["*"] + sorted(f"{t}:{c}" for c, sp in registry.params_for(t).items()
                                            if sp.type == "reference"),
            "searchRevInclude": ["*"],
            "searchParam": params,
        }
        ops = [
            {"name": op.name, "definition": op.definition}
            for op in sorted(all_operations(), key=lambda o: o.name)
            if (op.type_level or op.instance) and (op.types is None or t in op.types) and op.definition
        ]
        if ops:
            entry["operation"] = ops
        if t in KNOWLEDGE_TYPES:
            entry["documentation"] = "Knowledge artifact: loaded at start-up from the project's folders and " \
                                     "replaceable by a region's Bundle."
        resources.append(entry)
    system_ops = [{"name": op.name, "definition": op.definition}
                  for op in sorted(all_operations(), key=lambda o: o.name) if op.system and op.definition]
    rest = {
        "mode": "server",
        "documentation": "Search: token (system|code, :not, :in, :not-in), string (:exact, :contains), date with "
                         "prefixes, reference (Type/id, :Type), uri (:below, :above), number, quantity, :missing; "
                         "_count with next links, _sort, _include, _revinclude (one level), _summary=count|data|"
                         "text|false, _elements; chained parameters and _has, one level each (deeper: 400). "
                         "Read: _summary=true|data|text|false, _elements; _pretty. PATCH: JSON Patch and FHIRPath "
                         "Patch, with If-Match. Unknown "
                         "parameters are ignored with a warning unless Prefer: handling=strict.",
        "resource": resources,
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
    }
    if system_ops:
        rest["operation"] = system_ops
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "LBP Pathway project",
        "kind": "instance",
        "software": {"name": "lbp-pathway", "version": SOFTWARE_VERSION},
        "implementation": {"description": "Low back pain pathway FHIR server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }
