"""Questionnaire/$populate (SDC) — a QuestionnaireResponse pre-filled from the patient's record.

https://hl7.org/fhir/uv/sdc/OperationDefinition-Questionnaire-populate.html
"""
from __future__ import annotations

from flask import current_app

from app.errors import FHIRError, operation_outcome

from ..http import fhir_response
from . import operation
from .parameters import parameters, read_parameters, single
from .reasoning_common import gather_record, knowledge_base, today_param


@operation("populate", types=frozenset({"Questionnaire"}), type_level=True, instance=True, idempotent=True,
           definition="http://hl7.org/fhir/uv/sdc/OperationDefinition/Questionnaire-populate")
def populate(res_type: str, res_id: str | None):
    from app.reasoning.populate import populate as run

    params = read_parameters("questionnaire")
    lbp = current_app.extensions["lbp"]
    if res_id is not None:
        stored = lbp.store.read("Questionnaire", res_id)
        if stored is None or stored.deleted:
            raise FHIRError("not-found", f"Questionnaire/{res_id} is not known", "Questionnaire.id")
        questionnaire = stored.resource()
    else:
        questionnaire = single(params, "questionnaire")
        if questionnaire is None:
            canonical = single(params, "canonical") or single(params, "identifier")
            questionnaire = lbp.knowledge.resolve(canonical) if isinstance(canonical, str) else None
        if not isinstance(questionnaire, dict):
            raise FHIRError("required", "Give the Questionnaire (instance URL, 'questionnaire' or 'canonical')",
                            "Parameters.parameter('questionnaire')")
    subject = single(params, "subject", required=True)
    if isinstance(subject, dict):
        subject = subject.get("reference")
    record = gather_record(subject, single(params, "data"), single(params, "useServerData"))
    kb = knowledge_base()
    issues: list = []
    response = run(questionnaire, record, subject=subject if "/" in subject else f"Patient/{subject}",
                   today=today_param(single(params, "today")), terminology=kb.terminology, issues=issues)
    return fhir_response(parameters(response=response, issues=operation_outcome(issues) if issues else None))
