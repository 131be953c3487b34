"""PlanDefinition/$apply and ActivityDefinition/$apply —
https://hl7.org/fhir/R4/plandefinition-operation-apply.html, https://hl7.org/fhir/R4/activitydefinition-operation-apply.html

Nothing is stored: the CarePlan (with its RequestGroup and requests contained) or the request resource is
returned for the caller to store. Issues met on the way (an expression that failed in one action) come back
as a contained OperationOutcome referenced from the result, and the rest of the evaluation goes on.
"""
from __future__ import annotations

from flask import current_app

from app.errors import FHIRError, operation_outcome

from ..http import fhir_response
from . import operation
from .parameters import read_parameters, single
from .reasoning_common import gather_record, knowledge_base, today_param


def _definition(res_type: str, res_id: str | None, url: str | None) -> dict:
    lbp = current_app.extensions["lbp"]
    if res_id is not None:
        stored = lbp.store.read(res_type, res_id)
        if stored is None or stored.deleted:
            raise FHIRError("not-found", f"{res_type}/{res_id} is not known", f"{res_type}.id")
        return stored.resource()
    if not url:
        raise FHIRError("required", f"Type-level $apply needs the canonical 'url' of the {res_type}",
                        "Parameters.parameter('url')")
    found = lbp.knowledge.resolve(url)
    if found is None or found.get("resourceType") != res_type:
        raise FHIRError("not-found", f"No {res_type} with url {url}", "Parameters.parameter('url')")
    return found


def _with_outcome(result: dict, issues) -> dict:
    if issues:
        oo = operation_outcome(issues)
        oo["id"] = "apply-outcome"
        result.setdefault("contained", []).append(oo)
        result.setdefault("extension", []).append({
            "url": "https://lbp-pathway.org/fhir/StructureDefinition/apply-outcome",
            "valueReference": {"reference": "#apply-outcome"}})
    return result


def _run(res_type: str, res_id: str | None):
    from app.reasoning.apply import apply_activity_definition, apply_plan_definition

    params = read_parameters(None)
    definition = _definition(res_type, res_id, single(params, "url"))
    subject = single(params, "subject", required=True)
    record = gather_record(subject, single(params, "data"), single(params, "useServerData"))
    kwargs = {"subject": subject if "/" in subject else f"Patient/{subject}", "record": record,
              "encounter": single(params, "encounter"), "practitioner": single(params, "practitioner"),
              "today": today_param(single(params, "today"))}
    kb = knowledge_base()
    if res_type == "PlanDefinition":
        result, issues = apply_plan_definition(kb, definition, **kwargs)
    else:
        result, issues = apply_activity_definition(kb, definition, **kwargs)
    return fhir_response(_with_outcome(result, issues))


@operation("apply", types=frozenset({"PlanDefinition"}), type_level=True, instance=True, idempotent=True,
           definition="http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply")
def plan_definition_apply(res_type: str, res_id: str | None):
    return _run(res_type, res_id)


@operation("apply", types=frozenset({"ActivityDefinition"}), type_level=True, instance=True, idempotent=True,
           definition="http://hl7.org/fhir/OperationDefinition/ActivityDefinition-apply")
def activity_definition_apply(res_type: str, res_id: str | None):
    return _run(res_type, res_id)
