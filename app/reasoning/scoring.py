"""SDC scoring, validation and observation-based extraction of QuestionnaireResponses.

- Scores: items with `sdc-questionnaire-calculatedExpression` are evaluated over the response
  (`%resource`, the focus too; `%questionnaire`; `%context` the response item) in item order, each
  answer written into a copy of the response before the next is evaluated, so a risk category can
  read the score above it. `weight()` returns the itemWeight of an answer Coding, looked up on the
  answerOption of the very item the answer belongs to (reversed items carry reversed weights).
- Validation (https://hl7.org/fhir/R4/questionnaireresponse.html#link): unknown linkIds, answer
  types, options, repeats, min/max values, required items missing (with enableWhen and
  enableWhenExpression considered), each with the FHIRPath of the offending element.
- Extraction (SDC observation-based extraction): items with `sdc-questionnaire-observationExtract`
  true (on the item, an ancestor group or the root) and a `code` become Observations.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from app.errors import FHIRError, Issue
from app.fhirpath import (
    FHIRPATH,
    CompiledExpression,
    Environment,
    compile_expression,
    evaluate,
    make_environment,
    singleton_boolean,
    to_decimal,
    to_json,
    weight_extension,
)
from app.reasoning.terminology import TerminologyIndex, canonical_parts

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CALCULATED = SDC + "sdc-questionnaire-calculatedExpression"
ENABLE_WHEN_EXPRESSION = SDC + "sdc-questionnaire-enableWhenExpression"
OBSERVATION_EXTRACT = SDC + "sdc-questionnaire-observationExtract"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
SURVEY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey",
            "display": "Survey",
        }
    ]
}

# Questionnaire.item.type -> the answer value[x] it takes (R4)
ANSWER_TYPES: dict[str, tuple[str, ...]] = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime",),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "choice": ("valueCoding",),
    "open-choice": ("valueCoding", "valueString"),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}


def extension_value(element: Mapping[str, Any], url: str) -> Any:
    for ext in element.get("extension", []) or []:
        if ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def answer_value(answer: Mapping[str, Any]) -> tuple[str, Any] | None:
    for key, value in answer.items():
        if key.startswith("value"):
            return key, value
    return None


def iter_items(
    items: list[dict[str, Any]] | None, path: str = "Questionnaire"
) -> Iterator[tuple[dict[str, Any], str, tuple[dict[str, Any], ...]]]:
    """(item, element path, ancestors) of a Questionnaire, depth first in item order."""

    def walk(children: list[dict[str, Any]] | None, where: str, ancestors: tuple[dict[str, Any], ...]):
        for i, item in enumerate(children or []):
            here = f"{where}.item[{i}]"
            yield item, here, ancestors
            yield from walk(item.get("item"), here, ancestors + (item,))

    yield from walk(items, path, ())


def _response_items(
    items: list[dict[str, Any]] | None, path: str = "QuestionnaireResponse"
) -> Iterator[tuple[dict[str, Any], str]]:
    for i, item in enumerate(items or []):
        here = f"{path}.item[{i}]"
        yield item, here
        yield from _response_items(item.get("item"), here)
        for j, answer in enumerate(item.get("answer", []) or []):
            yield from _response_items(answer.get("item"), f"{here}.answer[{j}]")


def _coding_matches(option: Mapping[str, Any], coding: Mapping[str, Any]) -> bool:
    if option.get("code") != coding.get("code"):
        return False
    return not option.get("system") or not coding.get("system") or option["system"] == coding["system"]


class _Scorer:
    """A Questionnaire prepared for scoring: items by linkId and the weights of its answer options."""

    def __init__(self, questionnaire: Mapping[str, Any], terminology: TerminologyIndex | None = None):
        if questionnaire.get("resourceType") != "Questionnaire":
            raise FHIRError("invalid", "Expected a Questionnaire", "Questionnaire")
        self.questionnaire = questionnaire
        self.label = f"Questionnaire/{questionnaire.get('id', '')}"
        self.terminology = terminology
        self.items: dict[str, tuple[dict[str, Any], str]] = {}
        by_code: dict[tuple[str | None, str | None], set[Decimal]] = {}
        for item, path, _ in iter_items(questionnaire.get("item")):
            self.items.setdefault(item.get("linkId", ""), (item, path))
            for option in item.get("answerOption", []) or []:
                coding = option.get("valueCoding")
                weight = weight_extension(option)
                if weight is None and coding:
                    weight = weight_extension(coding)
                if coding and weight is not None:
                    by_code.setdefault((coding.get("system"), coding.get("code")), set()).add(weight)
        # (system, code) -> weight only where every item agrees (else it must be looked up by item)
        self.weight_by_code = {key: next(iter(w)) if len(w) == 1 else None for key, w in by_code.items()}

    def compiled(self, item: Mapping[str, Any], path: str, url: str) -> CompiledExpression | None:
        for j, ext in enumerate(item.get("extension", []) or []):
            if ext.get("url") == url:
                expression = ext.get("valueExpression") or {}
                if expression.get("language") == FHIRPATH:
                    return compile_expression(
                        expression.get("expression", ""),
                        artifact=self.label,
                        path=f"{path}.extension[{j}].valueExpression.expression",
                    )
        return None

    def option_weight(self, item: Mapping[str, Any], coding: Mapping[str, Any]) -> Decimal | None:
        for option in item.get("answerOption", []) or []:
            if option.get("valueCoding") and _coding_matches(option["valueCoding"], coding):
                weight = weight_extension(option)
                return weight if weight is not None else weight_extension(option["valueCoding"])
        if self.terminology is not None and coding.get("system") and coding.get("code"):
            concept = self.terminology.codesystem_concept(coding["system"], coding["code"])
            for prop in (concept or {}).get("property", []):
                if prop.get("code") in ("itemWeight", "weight") and "valueDecimal" in prop:
                    return to_decimal(prop["valueDecimal"])
        return None

    def environment(self, response: Mapping[str, Any], today: date | datetime | None) -> Environment:
        by_id: dict[int, Decimal] = {}
        for qr_item, _ in _response_items(response.get("item")):
            definition = self.items.get(qr_item.get("linkId", ""), (None, ""))[0]
            if definition is None:
                continue
            for answer in qr_item.get("answer", []) or []:
                coding = answer.get("valueCoding")
                if isinstance(coding, dict):
                    weight = self.option_weight(definition, coding)
                    if weight is not None:
                        by_id[id(coding)] = weight
        env = make_environment(today, terminology=self.terminology)
        return env.with_(weight_by_id=by_id, weight_by_code=self.weight_by_code)

    def variables(self, response: Mapping[str, Any], env: Environment) -> dict[str, Any]:
        """%questionnaire and the root-level SDC `variable`s, evaluated in order."""
        out: dict[str, Any] = {"questionnaire": self.questionnaire, "resource": response, "context": response}
        for j, ext in enumerate(self.questionnaire.get("extension", []) or []):
            if ext.get("url") != VARIABLE:
                continue
            expression = ext.get("valueExpression") or {}
            if expression.get("language") != FHIRPATH or not expression.get("name"):
                continue
            compiled = compile_expression(
                expression["expression"],
                artifact=self.label,
                path=f"Questionnaire.extension[{j}].valueExpression.expression",
            )
            out[expression["name"]] = evaluate(compiled, response, out, env)
        return out


def _find_response_item(items: list[dict[str, Any]], link_id: str) -> dict[str, Any] | None:
    for item, _ in _response_items(items):
        if item.get("linkId") == link_id:
            return item
    return None


def _ensure_response_item(
    response: dict[str, Any], ancestors: tuple[dict[str, Any], ...], definition: Mapping[str, Any]
) -> dict[str, Any]:
    """The response item for a Questionnaire item, created (with its groups) where missing."""
    container = response
    for group in ancestors:
        children = container.setdefault("item", [])
        found = next((c for c in children if c.get("linkId") == group.get("linkId")), None)
        if found is None:
            found = {"linkId": group.get("linkId")}
            if group.get("text"):
                found["text"] = group["text"]
            children.append(found)
        container = found
    children = container.setdefault("item", [])
    found = next((c for c in children if c.get("linkId") == definition.get("linkId")), None)
    if found is None:
        found = {"linkId": definition.get("linkId")}
        if definition.get("text"):
            found["text"] = definition["text"]
        children.append(found)
    return found


def answer_for(definition: Mapping[str, Any], value: Any) -> dict[str, Any] | None:
    """A response answer of the item's type from a FHIRPath result (JSON), or None if it does not fit."""
    item_type = definition.get("type")
    if (
        isinstance(value, Mapping)
        and "value" in value
        and item_type in ("integer", "decimal")
        and "code" in value
    ):
        value = value["value"]  # a Quantity where a number is asked
    if item_type == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return None
        number = to_decimal(value)
        if number != number.to_integral_value():
            return None
        return {"valueInteger": int(number)}
    if item_type == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return None
        return {"valueDecimal": float(value) if not isinstance(value, int) else value}
    if item_type == "boolean":
        return {"valueBoolean": value} if isinstance(value, bool) else None
    if item_type in ("string", "text"):
        return {"valueString": value} if isinstance(value, str) else None
    if item_type == "url":
        return {"valueUri": value} if isinstance(value, str) else None
    if item_type == "date":
        return {"valueDate": value[:10]} if isinstance(value, str) and len(value) >= 4 else None
    if item_type == "dateTime":
        return {"valueDateTime": value} if isinstance(value, str) else None
    if item_type == "time":
        return {"valueTime": value} if isinstance(value, str) else None
    if item_type == "quantity":
        return {"valueQuantity": dict(value)} if isinstance(value, Mapping) and "value" in value else None
    if item_type == "reference":
        return {"valueReference": dict(value)} if isinstance(value, Mapping) else None
    if item_type in ("choice", "open-choice"):
        options = [o["valueCoding"] for o in definition.get("answerOption", []) or [] if o.get("valueCoding")]
        codings: list[Mapping[str, Any]] = []
        if isinstance(value, Mapping) and "coding" in value:
            codings = value.get("coding", [])
        elif isinstance(value, Mapping) and "code" in value:
            codings = [value]
        elif isinstance(value, str):
            codings = [{"code": value}]
        for coding in codings:
            match = next((o for o in options if _coding_matches(o, coding)), None)
            if match is not None:
                return {"valueCoding": dict(match)}
        if (
            codings
            and (not options or item_type == "open-choice")
            and isinstance(codings[0], Mapping)
            and codings[0].get("system")
        ):
            return {"valueCoding": dict(codings[0])}
        if item_type == "open-choice" and isinstance(value, str):
            return {"valueString": value}
        return None
    return None


def _complete(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    today: date | datetime | None,
    terminology: TerminologyIndex | None,
) -> tuple[dict[str, Any], dict[str, Any], list[Issue]]:
    scorer = _Scorer(questionnaire, terminology)
    filled = copy.deepcopy(dict(response))
    scores: dict[str, Any] = {}
    issues: list[Issue] = []
    calculated = [
        (item, path, ancestors, scorer.compiled(item, path, CALCULATED))
        for item, path, ancestors in iter_items(questionnaire.get("item"))
    ]
    for item, path, ancestors, compiled in calculated:
        if compiled is None:
            continue
        env = scorer.environment(filled, today)
        variables = scorer.variables(filled, env)
        existing = _find_response_item(filled.get("item", []), item.get("linkId", ""))
        if existing is not None:
            variables["context"] = existing
        try:
            values = to_json(evaluate(compiled, filled, variables, env))
        except Exception as exc:
            issues.append(
                Issue(
                    "error",
                    "processing",
                    f"{scorer.label}: the score {item.get('linkId')} could not be calculated ({exc}): {compiled.text}",
                    [f"{path}.extension"],
                    diagnostics=compiled.text,
                )
            )
            continue
        answers = [answer_for(item, v) for v in (values if item.get("repeats") else values[:1])]
        if any(a is None for a in answers):
            issues.append(
                Issue(
                    "error",
                    "processing",
                    f"{scorer.label}: the score {item.get('linkId')} yields {values!r}, which does not fit an item "
                    f"of type {item.get('type')}: {compiled.text}",
                    [f"{path}.extension"],
                    diagnostics=compiled.text,
                )
            )
            continue
        target = _ensure_response_item(filled, ancestors, item)
        if answers:
            target["answer"] = answers
            scores[item.get("linkId", "")] = (
                [v for a in answers for v in a.values()]
                if item.get("repeats")
                else next(iter(answers[0].values()))
            )
        else:
            target.pop("answer", None)
            scores[item.get("linkId", "")] = None
    return filled, scores, issues


def complete_response(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    today: date | datetime | None = None,
    terminology: TerminologyIndex | None = None,
) -> dict[str, Any]:
    """A copy of the response with every calculated item answered; FHIRError('processing') if a score fails."""
    filled, _, issues = _complete(questionnaire, response, today, terminology)
    if issues:
        raise FHIRError("processing", issues[0].text, issues=issues)
    return filled


def score_response(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    today: date | datetime | None = None,
    terminology: TerminologyIndex | None = None,
) -> dict[str, Any]:
    """linkId -> calculated value (number, Coding, ...; None when the expression yields nothing)."""
    _, scores, issues = _complete(questionnaire, response, today, terminology)
    if issues:
        raise FHIRError("processing", issues[0].text, issues=issues)
    return scores


# -- validation -----------------------------------------------------------------------------------


def _answers_by_link(response: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item, _ in _response_items(response.get("item")):
        out.setdefault(item.get("linkId", ""), []).extend(item.get("answer", []) or [])
    return out


def _comparable(value: Any) -> Any:
    if isinstance(value, Mapping):
        if "code" in value:
            return (value.get("system"), value.get("code"))
        if "value" in value:
            return to_decimal(value["value"])
        if "reference" in value:
            return value["reference"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return to_decimal(value)
    return value


def _condition_holds(condition: Mapping[str, Any], answers: list[dict[str, Any]]) -> bool:
    operator = condition.get("operator")
    expected = next(((k, v) for k, v in condition.items() if k.startswith("answer")), None)
    if operator == "exists":
        return bool(answers) == bool(expected[1] if expected else True)
    if expected is None:
        return False
    kind = "value" + expected[0][len("answer") :]
    values = [a[kind] for a in answers if kind in a]
    if kind == "valueCoding":
        equal = [
            _coding_matches(expected[1], v)
            if expected[1].get("system")
            else v.get("code") == expected[1].get("code")
            for v in values
        ]
        if operator == "=":
            return any(equal)
        if operator == "!=":
            return not any(equal)
        return False
    want = _comparable(expected[1])
    got = [_comparable(v) for v in values]
    try:
        if operator == "=":
            return any(g == want for g in got)
        if operator == "!=":
            return not any(g == want for g in got)
        if operator == ">":
            return any(g > want for g in got)
        if operator == "<":
            return any(g < want for g in got)
        if operator == ">=":
            return any(g >= want for g in got)
        if operator == "<=":
            return any(g <= want for g in got)
    except TypeError:
        return False
    return False


class _Enablement:
    """enableWhen / enableWhenExpression over one response (R4 semantics; R5's clarified `!=`)."""

    def __init__(self, scorer: _Scorer, response: Mapping[str, Any], today: date | datetime | None):
        self.scorer = scorer
        self.response = response
        self.answers = _answers_by_link(response)
        self.env = scorer.environment(response, today)
        self._variables: dict[str, Any] | None = None
        self.issues: list[Issue] = []

    def enabled(self, item: Mapping[str, Any], path: str, ancestors: tuple[dict[str, Any], ...]) -> bool:
        if ancestors and not self.enabled(ancestors[-1], path.rsplit(".item[", 1)[0], ancestors[:-1]):
            return False
        compiled = self.scorer.compiled(item, path, ENABLE_WHEN_EXPRESSION)
        if compiled is not None:
            if self._variables is None:
                self._variables = self.scorer.variables(self.response, self.env)
            try:
                return singleton_boolean(evaluate(compiled, self.response, self._variables, self.env)) is True
            except Exception as exc:
                self.issues.append(
                    Issue(
                        "error",
                        "processing",
                        f"{self.scorer.label}: enableWhenExpression of {item.get('linkId')} failed ({exc})",
                        [path],
                        diagnostics=compiled.text,
                    )
                )
                return True
        conditions = item.get("enableWhen") or []
        if not conditions:
            return True
        results = [_condition_holds(c, self.answers.get(c.get("question", ""), [])) for c in conditions]
        return any(results) if item.get("enableBehavior") == "any" else all(results)


def _number_limit(item: Mapping[str, Any], url: str) -> Any:
    value = extension_value(item, url)
    return _comparable(value) if value is not None else None


def validate_response(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    today: date | datetime | None = None,
    terminology: TerminologyIndex | None = None,
) -> list[Issue]:
    """Issues of a response against its Questionnaire; each names the FHIRPath of the element."""
    if response.get("resourceType") != "QuestionnaireResponse":
        return [Issue("error", "invalid", "Expected a QuestionnaireResponse", ["QuestionnaireResponse"])]
    scorer = _Scorer(questionnaire, terminology)
    issues: list[Issue] = []
    asked = response.get("questionnaire")
    if asked and questionnaire.get("url") and canonical_parts(asked)[0] != questionnaire["url"]:
        issues.append(
            Issue(
                "warning",
                "invalid",
                f"The response answers {asked}, not {questionnaire['url']}",
                ["QuestionnaireResponse.questionnaire"],
            )
        )
    completed = response.get("status") in ("completed", "amended")
    enablement = _Enablement(scorer, response, today)

    def check_items(
        q_items: list[dict[str, Any]],
        r_items: list[dict[str, Any]],
        where: str,
        q_path: str,
        ancestors: tuple[dict[str, Any], ...],
    ) -> None:
        by_link = {q.get("linkId"): (q, f"{q_path}.item[{i}]") for i, q in enumerate(q_items or [])}
        seen: dict[str, int] = {}
        for i, r_item in enumerate(r_items or []):
            here = f"{where}.item[{i}]"
            link = r_item.get("linkId", "")
            if link not in by_link:
                issues.append(
                    Issue(
                        "error", "structure", f"linkId {link!r} is not an item of {scorer.label} here", [here]
                    )
                )
                continue
            definition, def_path = by_link[link]
            seen[link] = seen.get(link, 0) + 1
            if seen[link] > 1 and not definition.get("repeats"):
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"Item {link} does not repeat but appears more than once",
                        [here],
                    )
                )
            check_answers(definition, def_path, r_item, here, ancestors + (definition,))
            check_items(
                definition.get("item", []), r_item.get("item", []), here, def_path, ancestors + (definition,)
            )
        for q in q_items or []:
            link = q.get("linkId", "")
            if link in seen or not q.get("required") or q.get("type") == "display":
                continue
            if scorer.compiled(q, by_link[link][1], CALCULATED) is not None:
                continue  # the engine calculates it
            if not enablement.enabled(q, by_link[link][1], ancestors):
                continue
            issues.append(
                Issue(
                    "error" if completed else "warning",
                    "required",
                    f"Item {link} ({q.get('text', '')}) is required but not answered",
                    [f"{where}.item.where(linkId='{_fhirpath_string(link)}')"],
                )
            )

    def check_answers(
        definition: dict[str, Any],
        def_path: str,
        r_item: dict[str, Any],
        here: str,
        ancestors: tuple[dict[str, Any], ...],
    ) -> None:
        link = definition.get("linkId")
        answers = r_item.get("answer", []) or []
        item_type = definition.get("type")
        if item_type in ("group", "display"):
            if answers:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"Item {link} is a {item_type} and takes no answer",
                        [f"{here}.answer"],
                    )
                )
            return
        if (
            definition.get("required")
            and not answers
            and enablement.enabled(definition, def_path, ancestors[:-1])
        ):
            if scorer.compiled(definition, def_path, CALCULATED) is None:
                issues.append(
                    Issue(
                        "error" if completed else "warning",
                        "required",
                        f"Item {link} is required but not answered",
                        [here],
                    )
                )
        if len(answers) > 1 and not definition.get("repeats"):
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"Item {link} does not repeat but has {len(answers)} answers",
                    [f"{here}.answer"],
                )
            )
        if answers and not enablement.enabled(definition, def_path, ancestors[:-1]):
            issues.append(
                Issue(
                    "warning", "business-rule", f"Item {link} is answered although it is not enabled", [here]
                )
            )
        allowed = ANSWER_TYPES.get(item_type or "", ())
        options = [o for o in definition.get("answerOption", []) or []]
        lower, upper = _number_limit(definition, MIN_VALUE), _number_limit(definition, MAX_VALUE)
        for j, answer in enumerate(answers):
            at = f"{here}.answer[{j}]"
            found = answer_value(answer)
            if found is None:
                issues.append(Issue("error", "required", f"Answer to {link} has no value", [at]))
                continue
            key, value = found
            if allowed and key not in allowed:
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"Item {link} is of type {item_type}; {key} is not a valid answer",
                        [f"{at}.{key}"],
                    )
                )
                continue
            if key == "valueCoding" and options and item_type == "choice":
                if not any(
                    o.get("valueCoding") and _coding_matches(o["valueCoding"], value) for o in options
                ):
                    issues.append(
                        Issue(
                            "error",
                            "code-invalid",
                            f"{value.get('code')!r} is not an answer option of {link}",
                            [f"{at}.valueCoding"],
                        )
                    )
            elif key == "valueCoding" and definition.get("answerValueSet") and terminology is not None:
                vs = definition["answerValueSet"]
                if terminology.has_valueset(vs) and not terminology.contains(
                    vs, value.get("system"), value.get("code", "")
                ):
                    issues.append(
                        Issue(
                            "error",
                            "code-invalid",
                            f"{value.get('code')!r} is not in {vs} ({link})",
                            [f"{at}.valueCoding"],
                        )
                    )
            elif (
                key in ("valueInteger", "valueDecimal", "valueString", "valueDate")
                and options
                and item_type != "open-choice"
            ):
                option_key = "value" + key[len("value") :]
                if not any(o.get(option_key) == value for o in options):
                    issues.append(
                        Issue(
                            "error",
                            "code-invalid",
                            f"{value!r} is not an answer option of {link}",
                            [f"{at}.{key}"],
                        )
                    )
            if key in ("valueInteger", "valueDecimal"):
                number = to_decimal(value)
                if lower is not None and number < lower:
                    issues.append(
                        Issue(
                            "error",
                            "value",
                            f"{value} is below the minimum {lower} of {link}",
                            [f"{at}.{key}"],
                        )
                    )
                if upper is not None and number > upper:
                    issues.append(
                        Issue(
                            "error",
                            "value",
                            f"{value} is above the maximum {upper} of {link}",
                            [f"{at}.{key}"],
                        )
                    )
            if key == "valueString" and definition.get("maxLength") and len(value) > definition["maxLength"]:
                issues.append(
                    Issue(
                        "error",
                        "too-long",
                        f"The answer to {link} is longer than {definition['maxLength']}",
                        [f"{at}.{key}"],
                    )
                )

    check_items(
        questionnaire.get("item", []), response.get("item", []), "QuestionnaireResponse", "Questionnaire", ()
    )
    return issues + enablement.issues


# -- extraction -----------------------------------------------------------------------------------


def _fhirpath_string(text: str) -> str:
    """`text` escaped for a FHIRPath single-quoted string literal."""
    return str(text).replace("\\", "\\\\").replace("'", "\\'")


def _observation_value(definition: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    unit = extension_value(definition, UNIT)
    if key in ("valueInteger", "valueDecimal") and isinstance(unit, Mapping):
        quantity = {"value": value, "unit": unit.get("display") or unit.get("code")}
        if unit.get("system"):
            quantity["system"] = unit["system"]
        if unit.get("code"):
            quantity["code"] = unit["code"]
        return {"valueQuantity": quantity}
    if key == "valueDecimal":
        # R4 Observation has no valueDecimal: a decimal without a declared unit is a Quantity with only a value
        return {"valueQuantity": {"value": value}}
    if key == "valueCoding":
        return {
            "valueCodeableConcept": {
                "coding": [dict(value)],
                **({"text": value["display"]} if value.get("display") else {}),
            }
        }
    if key == "valueDate":
        return {"valueDateTime": value}
    if key == "valueUri":
        return {"valueString": value}
    if key in (
        "valueInteger",
        "valueBoolean",
        "valueString",
        "valueDateTime",
        "valueTime",
        "valueQuantity",
    ):
        return {key: value}
    return {}


def extract_observations(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    today: date | datetime | None = None,
    terminology: TerminologyIndex | None = None,
    response_reference: str | None = None,
) -> list[dict[str, Any]]:
    """Observations for the extractable answers of the completed response (calculated answers included).

    `derivedFrom` is `response_reference`, else `QuestionnaireResponse/<id>`; `effectiveDateTime` is
    `authored` (else today).
    """
    filled = complete_response(questionnaire, response, today=today, terminology=terminology)
    scorer = _Scorer(questionnaire, terminology)
    extract_all = extension_value(questionnaire, OBSERVATION_EXTRACT) is True
    flags: dict[str, bool] = {}
    for item, _, ancestors in iter_items(questionnaire.get("item")):
        flag = extract_all
        for node in (*ancestors, item):
            own = extension_value(node, OBSERVATION_EXTRACT)
            if own is not None:
                flag = own is True
        flags[item.get("linkId", "")] = flag and bool(item.get("code"))
    reference = response_reference or (f"QuestionnaireResponse/{filled['id']}" if filled.get("id") else None)
    effective = filled.get("authored") or make_environment(today).today.isoformat()
    observations = []
    for r_item, _ in _response_items(filled.get("item")):
        link = r_item.get("linkId", "")
        if not flags.get(link):
            continue
        definition = scorer.items[link][0]
        for answer in r_item.get("answer", []) or []:
            found = answer_value(answer)
            if found is None:
                continue
            value = _observation_value(definition, *found)
            if not value:
                continue
            observation: dict[str, Any] = {
                "resourceType": "Observation",
                "status": "final",
                "category": [copy.deepcopy(SURVEY)],
                "code": {"coding": [dict(c) for c in definition["code"]]},
            }
            if definition.get("text"):
                observation["code"]["text"] = definition["text"]
            for key in ("subject", "encounter"):
                if filled.get(key):
                    observation[key] = dict(filled[key])
            if filled.get("basedOn"):
                observation["basedOn"] = [dict(b) for b in filled["basedOn"]]
            observation["effectiveDateTime"] = effective
            if filled.get("author"):
                observation["performer"] = [dict(filled["author"])]
            observation.update(value)
            if reference:
                observation["derivedFrom"] = [{"reference": reference}]
            observations.append(observation)
    return observations
