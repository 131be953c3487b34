"""Clinical reasoning over FHIR R4 JSON: FHIRPath, terminology, case features, $apply, SDC scoring, status.

Pure Python (no Flask, no database): inputs are dicts (FHIR JSON) and the loaded knowledge. The
engine holds no clinical constant; thresholds, codes and texts come from the artifacts
(docs/artifact-conventions.md).

Knowledge (load once, share between threads; every change swaps a snapshot)::

    kb = KnowledgeBase(resources=(), *, prefix_families=None)   # prefix_families: see terminology
    kb.add(resource) -> Artifact            # compiles every FHIRPath; FHIRError('invalid') names
                                            # artifact, element path and expression
    kb.add_all(resources) -> list[Artifact] # all or nothing
    kb.remove(resource_type, id) -> bool
    kb.resolve(canonical_or_type_id, resource_type=None) -> dict | None   # url or url|version; latest wins
    kb.artifact(canonical_or_resource, resource_type=None) -> Artifact | None
    kb.resources(resource_type=None) -> list[dict];  kb.get(resource_type, id) -> dict | None
    kb.terminology -> TerminologyIndex;  kb.warm() builds it ahead of the first request
    kb.check() -> list[Issue]               # unknown canonicals / features / ValueSets (load-order free)

Terminology (``kb.terminology``; ICD-10 family and ATC match by prefix, see ``PREFIX_FAMILIES``)::

    expand(url, filter=None, count=None, offset=0) -> ValueSet
    validate_code(url, system, code, display=None) -> Parameters(result, message, display)
    lookup(system, code) -> Parameters(name, version, display, designation, property)
    contains(url, system, code) -> bool;  member_of(value, url) -> bool | None

Operations (``record``: resources, a Bundle, or a CDS prefetch mapping; ``today``: a date, or a
datetime to fix ``now()`` too; every function returns issues instead of raising for the parts of
an artifact that fail, and raises FHIRError only for requests that cannot be served)::

    apply_plan_definition(kb, plan_definition, *, subject, record, encounter=None, practitioner=None,
                          today=None, trigger=None, draft_orders=(), selections=(), context=None,
                          fail_features=())
        -> (CarePlan dict, list[Issue])   # a rule reading a failed feature: a "could not be evaluated" action
    apply_activity_definition(kb, activity_definition, *, subject, record=(), encounter=None,
                              practitioner=None, today=None, draft_orders=(), selections=(), context=None)
        -> (request resource dict, list[Issue])
    evaluate_features(kb, library, context, *, only=None, fail=(), lazy=False) -> FeatureValues
        # .values(), .issues, .timings_ms, .failures (feature -> FeatureFailure), .failed, .evaluated_count;
        # .trace(expression) -> value, error, failed features read; lazy=True: computed on first read
    patient_context(record, *, subject=None, today=None, draft_orders=(), selections=(),
                    terminology=None, encounter=None, practitioner=None, fail_features=(),
                    unknown_features=()) -> PatientContext

Fail-safe evaluation (docs/fail-safe.md): ``fail``/``fail_features`` force named case features to
fail (fault injection); ``unknown_features`` reads them as unknown without failing (the baseline);
``failures.FAILURES`` counts failures per (library, feature) and not-evaluated actions per (plan, action).
    score_response(questionnaire, response, *, today=None, terminology=None) -> {linkId: value}
    complete_response(questionnaire, response, *, today=None, terminology=None) -> QuestionnaireResponse
    validate_response(questionnaire, response, *, today=None, terminology=None) -> list[Issue]
    extract_observations(questionnaire, response, *, today=None, terminology=None,
                         response_reference=None) -> list[Observation]
    populate(questionnaire, record, *, subject, today=None, terminology=None, context=None,
             issues=None) -> QuestionnaireResponse
    pathway_status(kb, pathway_plan_definition, record, *, today=None, subject=None, draft_orders=(),
                   conventions=CONVENTIONS, fail_features=()) -> PathwayStatus   # .to_dict(), or read as a dict

FHIRPath (compiled once, cached by text)::

    compile_expression(text, *, artifact="", path="") -> CompiledExpression
    evaluate(compiled, focus, variables, env) -> collection;  to_json(collection) -> list
    make_environment(today=None, *, terminology=None, references=None) -> Environment
"""

from app.fhirpath import (
    CompiledExpression,
    Environment,
    FHIRPathError,
    Scope,
    compile_expression,
    evaluate,
    make_environment,
    to_json,
)
from app.reasoning.apply import apply_activity_definition, apply_plan_definition
from app.reasoning.features import (
    FeatureValues,
    PatientContext,
    evaluate_features,
    patient_context,
    record_resources,
)
from app.reasoning.knowledge import Artifact, Feature, KnowledgeBase
from app.reasoning.populate import populate
from app.reasoning.scoring import complete_response, extract_observations, score_response, validate_response
from app.reasoning.status import CONVENTIONS, StatusConventions, pathway_status
from app.reasoning.status_result import PathwayStatus
from app.reasoning.terminology import PREFIX_FAMILIES, TerminologyIndex

__all__ = [
    "CONVENTIONS",
    "PREFIX_FAMILIES",
    "Artifact",
    "CompiledExpression",
    "Environment",
    "FHIRPathError",
    "Feature",
    "FeatureValues",
    "KnowledgeBase",
    "PathwayStatus",
    "PatientContext",
    "Scope",
    "StatusConventions",
    "TerminologyIndex",
    "apply_activity_definition",
    "apply_plan_definition",
    "compile_expression",
    "complete_response",
    "evaluate",
    "evaluate_features",
    "extract_observations",
    "make_environment",
    "pathway_status",
    "patient_context",
    "populate",
    "record_resources",
    "score_response",
    "to_json",
    "validate_response",
]
