"""A Questionnaire as an HTML form and back: the fields to render, the form's answers as a QuestionnaireResponse.

Generic over the SDC conventions in docs/artifact-conventions.md: nothing here knows an instrument.
Inputs are named `q-<linkId>`; enableWhen is decided on submit by the engine's `enable_when_holds`, the one
used for scoring and validating responses (R4: a question that is not enabled takes no answer and is not
required), and shown live in the browser by static/form.js.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from app.reasoning.scoring import enable_when_holds
from app.translation import translated

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CALCULATED = SDC + "sdc-questionnaire-calculatedExpression"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
ENTRY_FORMAT = "http://hl7.org/fhir/StructureDefinition/entryFormat"
ANSWERABLE = ("boolean", "decimal", "integer", "date", "dateTime", "time", "string", "text", "url",
              "choice", "open-choice")


def _ext(element: Mapping[str, Any], url: str) -> Any:
    for ext in element.get("extension", []) or []:
        if ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def input_name(link_id: str) -> str:
    return f"q-{link_id}"


def html_id(link_id: str) -> str:
    return "q-" + re.sub(r"[^A-Za-z0-9_-]", "_", link_id)


@dataclass
class Option:
    value: str  # the form value: the code of a Coding, else the option's value as text
    label: str
    answer: dict[str, Any]  # the QuestionnaireResponse answer this option stands for


@dataclass
class Field:
    link_id: str
    type: str
    text: str
    prefix: str | None
    required: bool
    repeats: bool
    calculated: bool
    read_only: bool
    options: list[Option]
    children: list[Field]
    enable_when: list[dict[str, Any]]
    enable_behavior: str
    minimum: Any = None
    maximum: Any = None
    max_length: int | None = None
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return html_id(self.link_id)

    @property
    def name(self) -> str:
        return input_name(self.link_id)

    @property
    def answerable(self) -> bool:
        return self.type in ANSWERABLE and not self.calculated and not self.read_only

    @property
    def many_options(self) -> bool:
        """Long option lists with words are stacked; short numeric scales (0–10) wrap in rows."""
        return len(self.options) > 4 and (self.repeats or max(len(o.label) for o in self.options) > 3)

    @property
    def as_fieldset(self) -> bool:
        """Radio and checkbox groups are fieldsets (the question is the legend); other inputs take a label."""
        return self.type in ("boolean", "choice", "open-choice") and bool(self.options or self.type == "boolean")


@dataclass
class Form:
    questionnaire: dict[str, Any]
    lang: str
    title: str
    fields: list[Field]
    by_link: dict[str, Field]
    copyright: str | None
    description: str | None

    def walk(self) -> list[Field]:
        out: list[Field] = []

        def visit(fields: list[Field]) -> None:
            for f in fields:
                out.append(f)
                visit(f.children)

        visit(self.fields)
        return out

    @property
    def calculated(self) -> list[Field]:
        return [f for f in self.walk() if f.calculated]


def _option(opt: Mapping[str, Any], lang: str, primary: str | None) -> Option | None:
    if "valueCoding" in opt:
        coding = opt["valueCoding"]
        label = translated(coding, "display", lang, primary) or coding.get("code", "")
        answer = {"valueCoding": {k: coding[k] for k in ("system", "version", "code", "display") if k in coding}}
        return Option(str(coding.get("code", "")), label, answer)
    for key in ("valueInteger", "valueDate", "valueTime", "valueString"):
        if key in opt:
            label = translated(opt, key, lang, primary) if key == "valueString" else str(opt[key])
            return Option(str(opt[key]), label or str(opt[key]), {key: opt[key]})
    return None


def build_form(questionnaire: dict[str, Any], lang: str) -> Form:
    primary = questionnaire.get("language")
    by_link: dict[str, Field] = {}

    def build(items: list[dict[str, Any]] | None) -> list[Field]:
        fields = []
        for item in items or []:
            options = [o for o in (_option(opt, lang, primary) for opt in item.get("answerOption", []) or []) if o]
            f = Field(
                link_id=item.get("linkId", ""),
                type=item.get("type", "display"),
                text=translated(item, "text", lang, primary) or "",
                prefix=translated(item, "prefix", lang, primary),
                required=bool(item.get("required")),
                repeats=bool(item.get("repeats")),
                calculated=_ext(item, CALCULATED) is not None,
                read_only=bool(item.get("readOnly")),
                options=options,
                children=build(item.get("item")),
                enable_when=list(item.get("enableWhen") or []),
                enable_behavior=item.get("enableBehavior", "all"),
                minimum=_ext(item, MIN_VALUE),
                maximum=_ext(item, MAX_VALUE),
                max_length=item.get("maxLength"),
                definition=item,
            )
            by_link[f.link_id] = f
            fields.append(f)
        return fields

    fields = build(questionnaire.get("item"))
    return Form(
        questionnaire=questionnaire,
        lang=lang,
        title=(translated(questionnaire, "title", lang, primary) or questionnaire.get("name")
               or questionnaire.get("id", "")),
        fields=fields,
        by_link=by_link,
        copyright=translated(questionnaire, "copyright", lang, primary),
        description=translated(questionnaire, "description", lang, primary),
    )


# -- the form's answers -----------------------------------------------------------------------------


class Values:
    """The raw strings the patient sent, per linkId, so that a form shown again loses nothing."""

    def __init__(self, raw: Mapping[str, list[str]] | None = None):
        self.raw = {k: [v for v in vs] for k, vs in (raw or {}).items()}

    @classmethod
    def from_form(cls, form_data: Any, form: Form) -> Values:
        raw = {}
        for f in form.walk():
            if f.answerable:
                raw[f.link_id] = [v for v in form_data.getlist(f.name) if v.strip() != ""]
        return cls(raw)

    @classmethod
    def from_response(cls, response: Mapping[str, Any] | None, form: Form) -> Values:
        """The form values a (pre-filled) QuestionnaireResponse stands for: each answer as the input's string."""
        raw: dict[str, list[str]] = {}
        stack = list((response or {}).get("item") or [])
        while stack:
            item = stack.pop()
            stack.extend(item.get("item") or [])
            field = form.by_link.get(item.get("linkId", ""))
            for answer in item.get("answer") or []:
                stack.extend(answer.get("item") or [])
                text = _answer_text(answer)
                if field is not None and field.answerable and text is not None:
                    raw.setdefault(field.link_id, []).append(text)
        return cls(raw)

    def get(self, link_id: str) -> list[str]:
        return self.raw.get(link_id, [])

    def first(self, link_id: str) -> str:
        values = self.get(link_id)
        return values[0] if values else ""

    def has(self, link_id: str, value: str) -> bool:
        return value in self.get(link_id)


def _answer_text(answer: Mapping[str, Any]) -> str | None:
    """An answer as the string its input holds (an option by its code, a boolean as true/false)."""
    for key, value in answer.items():
        if not key.startswith("value"):
            continue
        if key == "valueCoding":
            return str((value or {}).get("code", "")) or None
        if key == "valueBoolean":
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
    return None


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text.strip().replace(",", ".").replace("\u2212", "-"))
    except InvalidOperation:
        return None


def parse_answers(f: Field, raw: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    """The response answers of one field from its raw strings, or an error key (see content/ui.*.json)."""
    answers: list[dict[str, Any]] = []
    for text in raw if f.repeats else raw[:1]:
        text = text.strip()
        if f.type == "boolean":
            if text not in ("true", "false"):
                return [], "invalid_option"
            answers.append({"valueBoolean": text == "true"})
        elif f.type == "integer":
            number = _number(text)
            if number is None or number != number.to_integral_value():
                return [], "not_integer"
            answers.append({"valueInteger": int(number)})
        elif f.type == "decimal":
            number = _number(text)
            if number is None or not number.is_finite():
                return [], "not_number"
            answers.append({"valueDecimal": float(number) if number != number.to_integral_value() else int(number)})
        elif f.type == "date":
            try:
                date.fromisoformat(text)
            except ValueError:
                return [], "not_date"
            answers.append({"valueDate": text})
        elif f.type in ("choice", "open-choice"):
            option = next((o for o in f.options if o.value == text), None)
            if option is not None:
                answers.append(dict(option.answer))
            elif f.type == "open-choice":
                answers.append({"valueString": text})
            else:
                return [], "invalid_option"
        elif f.type == "url":
            answers.append({"valueUri": text})
        elif f.type == "dateTime":
            answers.append({"valueDateTime": text})
        elif f.type == "time":
            answers.append({"valueTime": text})
        else:  # string, text
            if f.max_length and len(text) > f.max_length:
                return [], "too_long"
            answers.append({"valueString": text})
    return answers, None


def enabled_items(form: Form, answers: Mapping[str, list[dict[str, Any]]]) -> set[str]:
    """linkIds enabled by the answers; answers of disabled items do not count (iterated to a fixed point)."""
    current = dict(answers)
    enabled: set[str] = set()

    def visit(fields: list[Field], known: Mapping[str, list[dict[str, Any]]], found: set[str]) -> None:
        for f in fields:
            if enable_when_holds(f.enable_when, f.enable_behavior, known):
                found.add(f.link_id)
                visit(f.children, known, found)

    for _ in range(len(form.by_link) + 1):
        enabled = set()
        visit(form.fields, current, enabled)
        trimmed = {k: v for k, v in answers.items() if k in enabled}
        if trimmed == current:
            break
        current = trimmed
    return enabled


@dataclass
class Parsed:
    response_items: list[dict[str, Any]]
    errors: dict[str, str]  # linkId -> error key
    paths: dict[str, str]  # QuestionnaireResponse element path -> linkId
    enabled: set[str]


def parse_form(form: Form, values: Values) -> Parsed:
    """The response items of the enabled questions, the fields that could not be read, and the item paths."""
    errors: dict[str, str] = {}
    answers: dict[str, list[dict[str, Any]]] = {}
    for f in form.walk():
        if not f.answerable:
            continue
        raw = values.get(f.link_id)
        if not raw:
            continue
        parsed, error = parse_answers(f, raw)
        if error:
            errors[f.link_id] = error
        else:
            answers[f.link_id] = parsed
    enabled = enabled_items(form, answers)
    errors = {k: v for k, v in errors.items() if k in enabled}
    paths: dict[str, str] = {}

    def build(fields: list[Field], where: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for f in fields:
            if f.link_id not in enabled or f.calculated:
                continue
            here = f"{where}.item[{len(out)}]"
            if f.type == "group":
                children = build(f.children, here)
                if children:
                    item = {"linkId": f.link_id, "item": children}
                    if f.definition.get("text"):
                        item["text"] = f.definition["text"]
                    paths[here] = f.link_id
                    out.append(item)
                else:
                    # children were built against `here`; drop their paths again
                    for p in [p for p in paths if p.startswith(here + ".")]:
                        del paths[p]
                continue
            if f.link_id in answers:
                item = {"linkId": f.link_id}
                if f.definition.get("text"):
                    item["text"] = f.definition["text"]
                item["answer"] = answers[f.link_id]
                paths[here] = f.link_id
                out.append(item)
        return out

    return Parsed(build(form.fields, "QuestionnaireResponse"), errors, paths, enabled)


_ITEM_IN_TEXT = re.compile(r"\b(?:Item|item|of|to) ([A-Za-z0-9][A-Za-z0-9._-]*)")


def issue_link_id(issue: Mapping[str, Any], paths: Mapping[str, str], form: Form) -> str | None:
    """The question an engine issue is about: from its expression (an item path), else named in its text."""
    best = None
    for expression in issue.get("expression", []) or []:
        for path, link in paths.items():
            if (expression == path or expression.startswith(path + ".")) and (best is None or len(path) > len(best[0])):
                best = (path, link)
    if best:
        return best[1]
    text = (issue.get("details") or {}).get("text", "")
    for m in _ITEM_IN_TEXT.finditer(text):
        candidate = m.group(1).rstrip(".")
        if candidate in form.by_link:
            return candidate
    return None


def required_missing(form: Form, parsed: Parsed) -> list[str]:
    """Enabled required questions without an answer (before the engine is asked, for a message per field)."""
    answered = set(parsed.paths.values()) | set(parsed.errors)
    return [f.link_id for f in form.walk()
            if f.answerable and f.required and f.link_id in parsed.enabled and f.link_id not in answered]
