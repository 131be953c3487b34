"""Storing a QuestionnaireResponse: validated against its Questionnaire, scored, extracted — in one transaction.

The one path for responses, from `POST /fhir/QuestionnaireResponse`, `$extract` and the patient pages:
a completed response to a known Questionnaire must answer every enabled required item; calculated items
(scores, risk categories) are filled in; the Observations the Questionnaire declares are created with
`derivedFrom` the response. An invalid response stores nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from app.errors import FHIRError, Issue
from app.reasoning.scoring import complete_response, extract_observations, validate_response
from app.reasoning.terminology import TerminologyIndex
from app.store.db import Stored, Transaction

from .admission import FHIRJson, admit, after_write, at_entry, conditional_ids, services


@dataclass
class SubmitResult:
    response: Stored
    observations: list[Stored] = field(default_factory=list)
    created: bool = True


def _terminology() -> TerminologyIndex | None:
    kb = services().knowledge.base
    return cast(TerminologyIndex, kb.terminology) if kb is not None else None


def questionnaire_for(response: FHIRJson) -> FHIRJson | None:
    """The Questionnaire a response answers, resolved by its canonical among the loaded artifacts."""
    canonical = response.get("questionnaire")
    if not isinstance(canonical, str):
        return None
    return cast("FHIRJson | None", services().knowledge.resolve(canonical))


def check(response: FHIRJson, questionnaire: FHIRJson | None) -> list[Issue]:
    """Errors of the response against its Questionnaire (missing required items only count when completed)."""
    if questionnaire is None:
        return []
    issues = validate_response(questionnaire, response, terminology=_terminology())
    completed = response.get("status") == "completed"
    return [i for i in issues if i.is_error and (completed or i.code != "required")]


def completed_with_scores(response: FHIRJson, questionnaire: FHIRJson | None) -> FHIRJson:
    """The response with its calculated items (scores, risk categories) filled in."""
    if questionnaire is None:
        return response
    return complete_response(questionnaire, response, terminology=_terminology())


def observations_for(response: FHIRJson, questionnaire: FHIRJson | None, reference: str) -> list[FHIRJson]:
    """The Observations a completed (or amended) response yields, each `derivedFrom` the response."""
    if questionnaire is None or response.get("status") not in ("completed", "amended"):
        return []
    return extract_observations(questionnaire, response, response_reference=reference, terminology=_terminology())


@dataclass
class ScoredResponse:
    """A response checked against its Questionnaire, its calculated items filled in, ready to be written."""

    response: FHIRJson
    questionnaire: FHIRJson | None

    def observations(self, response_id: str, *, where: str | None = None) -> list[FHIRJson]:
        """The Observations the response yields once stored as QuestionnaireResponse/`response_id`, admitted."""
        return [admit(obs, where=where) for obs in
                observations_for(self.response, self.questionnaire, f"QuestionnaireResponse/{response_id}")]


def scored(response: FHIRJson, *, where: str | None = None) -> ScoredResponse:
    """Check a response against its Questionnaire and fill in its scores; FHIRError (at `where`) when invalid."""
    questionnaire = questionnaire_for(response)
    try:
        errors = check(response, questionnaire)
        if errors:
            raise FHIRError("required" if any(i.code == "required" for i in errors) else "invalid", errors[0].text,
                            issues=errors)
        return ScoredResponse(completed_with_scores(response, questionnaire), questionnaire)
    except FHIRError as err:
        raise at_entry(err, where) from None


def _existing(if_none_exist: str, tx: Transaction | None = None) -> Stored | None:
    """The response an If-None-Exist query already matches, if any."""
    ids = conditional_ids("QuestionnaireResponse", if_none_exist, tx.conn if tx is not None else None)
    if not ids:
        return None
    if tx is not None:
        return tx.read("QuestionnaireResponse", ids[0])
    return cast("Stored | None", services().store.read("QuestionnaireResponse", ids[0]))


def submit_response(response: Any, *, if_none_exist: str | None = None, res_id: str | None = None) -> SubmitResult:
    """Validate, score and store a response with its Observations; FHIRError (nothing stored) when invalid.

    With `if_none_exist`, a response that already matches is returned as it is (created=False), whatever
    this one says: a repeated submit is answered by the first, not validated again.
    """
    store = services().store
    if if_none_exist:
        existing = _existing(if_none_exist)
        if existing is not None:
            return SubmitResult(existing, [], created=False)
    admit(response, expected_type="QuestionnaireResponse", expected_id=res_id)
    ready = scored(response)
    response = ready.response
    with store.transaction() as tx:
        if if_none_exist:
            existing = _existing(if_none_exist, tx)
            if existing is not None:
                return SubmitResult(existing, [], created=False)
        if res_id is not None:
            stored, _ = tx.update(response)
        else:
            response.pop("id", None)
            stored = tx.create(response)
        observations = [tx.create(obs) for obs in ready.observations(stored.res_id)]
        written = list(tx.written)
    after_write(written)
    return SubmitResult(stored, observations, created=True)
