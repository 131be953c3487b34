"""Storing a QuestionnaireResponse: validated against its Questionnaire, scored, extracted — in one transaction.

The one path for responses, from `POST /fhir/QuestionnaireResponse`, `$extract` and the patient pages:
a completed response to a known Questionnaire must answer every enabled required item; calculated items
(scores, risk categories) are filled in; the Observations the Questionnaire declares are created with
`derivedFrom` the response. An invalid response stores nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from app.errors import FHIRError, Issue
from app.store.db import Stored

from .write import after_write, conditional_ids, prepare


@dataclass
class SubmitResult:
    response: Stored
    observations: list[Stored] = field(default_factory=list)
    created: bool = True


def questionnaire_for(response: dict) -> dict | None:
    canonical = response.get("questionnaire")
    if not isinstance(canonical, str):
        return None
    return current_app.extensions["lbp"].knowledge.resolve(canonical)


def check(response: dict, questionnaire: dict | None) -> list[Issue]:
    """Errors of the response against its Questionnaire (missing required items only count when completed)."""
    if questionnaire is None:
        return []
    from app.reasoning.scoring import validate_response

    kb = current_app.extensions["lbp"].knowledge.base
    issues = validate_response(questionnaire, response, terminology=kb.terminology if kb else None)
    completed = response.get("status") == "completed"
    return [i for i in issues if i.is_error and (completed or i.code != "required")]


def completed_with_scores(response: dict, questionnaire: dict | None) -> dict:
    if questionnaire is None:
        return response
    from app.reasoning.scoring import complete_response

    kb = current_app.extensions["lbp"].knowledge.base
    return complete_response(questionnaire, response, terminology=kb.terminology if kb else None)


def observations_for(response: dict, questionnaire: dict | None, reference: str) -> list[dict[str, Any]]:
    if questionnaire is None or response.get("status") not in ("completed", "amended"):
        return []
    from app.reasoning.scoring import extract_observations

    kb = current_app.extensions["lbp"].knowledge.base
    return extract_observations(questionnaire, response, response_reference=reference,
                                terminology=kb.terminology if kb else None)


def submit(response: Any, *, if_none_exist: str | None = None, res_id: str | None = None) -> SubmitResult:
    """Validate, score and store a response with its Observations; FHIRError (nothing stored) when invalid.

    With `if_none_exist`, a response that already matches is returned as it is (created=False), whatever
    this one says: a repeated submit is answered by the first, not validated again.
    """
    store = current_app.extensions["lbp"].store
    if if_none_exist:
        ids = conditional_ids("QuestionnaireResponse", if_none_exist)
        existing = store.read("QuestionnaireResponse", ids[0]) if ids else None
        if existing is not None:
            return SubmitResult(existing, [], created=False)
    prepare(response, expected_type="QuestionnaireResponse", expected_id=res_id)
    questionnaire = questionnaire_for(response)
    errors = check(response, questionnaire)
    if errors:
        raise FHIRError("required" if any(i.code == "required" for i in errors) else "invalid", errors[0].text,
                        issues=errors)
    response = completed_with_scores(response, questionnaire)
    with store.transaction() as tx:
        if if_none_exist:
            ids = conditional_ids("QuestionnaireResponse", if_none_exist, tx.conn)
            if ids:
                existing = tx.read("QuestionnaireResponse", ids[0])
                assert existing is not None
                return SubmitResult(existing, [], created=False)
        if res_id is not None:
            stored, _ = tx.update(response)
        else:
            response.pop("id", None)
            stored = tx.create(response)
        observations = []
        for obs in observations_for(response, questionnaire, f"QuestionnaireResponse/{stored.res_id}"):
            prepare(obs)
            observations.append(tx.create(obs))
        written = list(tx.written)
    after_write(written)
    return SubmitResult(stored, observations, created=True)
