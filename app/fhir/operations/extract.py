"""QuestionnaireResponse/$extract (SDC) — the Observations a response yields, as a transaction Bundle, unstored.

https://hl7.org/fhir/uv/sdc/OperationDefinition-QuestionnaireResponse-extract.html
Storing a response (POST /fhir/QuestionnaireResponse) does the same and stores them.
"""
from __future__ import annotations

from flask import current_app

from app.errors import FHIRError
from app.records.responses import check, completed_with_scores, observations_for, questionnaire_for

from ..http import fhir_response
from . import operation
from .parameters import read_parameters, single


@operation("extract", types=frozenset({"QuestionnaireResponse"}), type_level=True, instance=True,
           permission="r", definition="http://hl7.org/fhir/uv/sdc/OperationDefinition/QuestionnaireResponse-extract")
def extract(res_type: str, res_id: str | None):
    if res_id is not None:
        stored = current_app.extensions["lbp"].store.read(res_type, res_id)
        if stored is None or stored.deleted:
            raise FHIRError("not-found", f"QuestionnaireResponse/{res_id} is not known", "QuestionnaireResponse.id")
        response = stored.resource()
    else:
        response = single(read_parameters("questionnaire-response"), "questionnaire-response", required=True)
    if not isinstance(response, dict) or response.get("resourceType") != "QuestionnaireResponse":
        raise FHIRError("invalid", "Expected a QuestionnaireResponse", "Parameters.parameter('questionnaire-response')")
    questionnaire = questionnaire_for(response)
    if questionnaire is None:
        raise FHIRError("not-found", f"The Questionnaire {response.get('questionnaire')} is not known",
                        "QuestionnaireResponse.questionnaire")
    errors = check(response, questionnaire)
    if errors:
        raise FHIRError("required", errors[0].text, issues=errors)
    response = completed_with_scores(response, questionnaire)
    reference = f"QuestionnaireResponse/{response['id']}" if response.get("id") else "urn:uuid:response"
    entries = []
    if not response.get("id"):
        entries.append({"fullUrl": "urn:uuid:response", "resource": response,
                        "request": {"method": "POST", "url": "QuestionnaireResponse"}})
    for obs in observations_for(response, questionnaire, reference):
        entries.append({"resource": obs, "request": {"method": "POST", "url": "Observation"}})
    return fhir_response({"resourceType": "Bundle", "type": "transaction", "entry": entries})
