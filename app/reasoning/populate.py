"""SDC expression-based population: a QuestionnaireResponse pre-filled from the record by `initialExpression`.

The expressions see the same context as the case features (focus: the record as a Bundle;
`%patient`, `%today`, `%now`) plus `%questionnaire` and the Questionnaire's SDC `variable`s (root
and item level, in order). An item is answered when its expression yields a value that fits its
type (else its static `initial[x]` / `initialSelected` option); other items are left out, with
their enclosing groups kept. https://build.fhir.org/ig/HL7/sdc/populate.html#expression-based-population
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from app.errors import Issue
from app.fhirpath import FHIRPATH, compile_expression, evaluate, to_json
from app.reasoning.features import PatientContext, patient_context
from app.reasoning.scoring import VARIABLE, answer_for
from app.reasoning.terminology import TerminologyIndex

INITIAL_EXPRESSION = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression"


def _expressions(element: Mapping[str, Any], url: str, path: str) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (f"{path}.extension[{j}].valueExpression.expression", ext.get("valueExpression") or {})
        for j, ext in enumerate(element.get("extension", []) or [])
        if ext.get("url") == url and (ext.get("valueExpression") or {}).get("language") == FHIRPATH
    ]


def _static_initial(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    answers = []
    for initial in item.get("initial", []) or []:
        answers.extend({key: value} for key, value in initial.items() if key.startswith("value"))
    for option in item.get("answerOption", []) or []:
        if option.get("initialSelected"):
            answers.extend({key: value} for key, value in option.items() if key.startswith("value"))
    return answers


def populate(
    questionnaire: Mapping[str, Any],
    record: Any,
    *,
    subject: Any,
    today: date | datetime | None = None,
    terminology: TerminologyIndex | None = None,
    context: PatientContext | None = None,
    issues: list[Issue] | None = None,
) -> dict[str, Any]:
    """A QuestionnaireResponse (status in-progress) with what the initialExpressions yield.

    Expression errors do not stop population: the item stays empty and, when `issues` is given, an
    Issue naming the Questionnaire, the item and the expression is appended to it.
    """
    if context is None:
        context = patient_context(record, subject=subject, today=today, terminology=terminology)
    label = f"Questionnaire/{questionnaire.get('id', '')}"
    collected: list[Issue] = issues if issues is not None else []
    variables: dict[str, Any] = {**context.variables(), "questionnaire": questionnaire}

    def run(text: str, path: str, scope: dict[str, Any]) -> list[Any] | None:
        try:
            compiled = compile_expression(text, artifact=label, path=path)
            return evaluate(compiled, context.focus, scope, context.env)
        except Exception as exc:
            collected.append(
                Issue(
                    "warning",
                    "processing",
                    f"{label}: {path} could not be evaluated ({exc}): {text}",
                    [path],
                    diagnostics=text,
                )
            )
            return None

    def declare(element: Mapping[str, Any], path: str, scope: dict[str, Any]) -> dict[str, Any]:
        scope = dict(scope)
        for where, expression in _expressions(element, VARIABLE, path):
            if expression.get("name"):
                value = run(expression.get("expression", ""), where, scope)
                scope[expression["name"]] = value if value is not None else []
        return scope

    def fill(items: list[dict[str, Any]] | None, path: str, scope: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for i, item in enumerate(items or []):
            here = f"{path}.item[{i}]"
            item_scope = declare(item, here, scope)
            answers: list[dict[str, Any]] = []
            found = _expressions(item, INITIAL_EXPRESSION, here)
            for where, expression in found[:1]:
                values = run(expression.get("expression", ""), where, item_scope)
                for value in to_json(values or []):
                    answer = answer_for(item, value)
                    if answer is None:
                        collected.append(
                            Issue(
                                "information",
                                "value",
                                f"{label}: {item.get('linkId')} got {value!r} from its initialExpression, "
                                f"which does not fit an item of type {item.get('type')}",
                                [where],
                            )
                        )
                        continue
                    if answer not in answers:
                        answers.append(answer)
            if not answers:
                answers = _static_initial(item)
            if answers and not item.get("repeats"):
                answers = answers[:1]
            children = fill(item.get("item"), here, item_scope)
            if not answers and not children:
                continue
            response_item: dict[str, Any] = {"linkId": item.get("linkId")}
            if item.get("text"):
                response_item["text"] = item["text"]
            if answers and item.get("type") not in ("group", "display"):
                response_item["answer"] = answers
            if children:
                response_item["item"] = children
            out.append(response_item)
        return out

    root_scope = declare(questionnaire, "Questionnaire", variables)
    canonical = questionnaire.get("url", f"Questionnaire/{questionnaire.get('id', '')}")
    if questionnaire.get("version") and questionnaire.get("url"):
        canonical += f"|{questionnaire['version']}"
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": canonical,
        "status": "in-progress",
    }
    if context.subject:
        response["subject"] = dict(context.subject)
    now = context.env.now if context.env.now.tzinfo else context.env.now.astimezone()
    response["authored"] = now.isoformat(timespec="seconds")
    items = fill(questionnaire.get("item"), "Questionnaire", root_scope)
    if items:
        response["item"] = items
    return response
