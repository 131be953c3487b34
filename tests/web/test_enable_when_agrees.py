"""enableWhen has one implementation: the patient form and response validation agree, coding system included."""
from __future__ import annotations

import pytest

from app.reasoning.scoring import validate_response
from app.web.forms import Values, build_form, parse_form

A = "https://example.org/CodeSystem/a"
B = "https://example.org/CodeSystem/b"


def _questionnaire(enable_when: list[dict], behavior: str = "all") -> dict:
    return {
        "resourceType": "Questionnaire", "id": "q", "url": "https://example.org/Questionnaire/q", "status": "active",
        "item": [
            {"linkId": "pain", "type": "choice", "text": "Pain?",
             "answerOption": [{"valueCoding": {"system": B, "code": "yes"}},
                              {"valueCoding": {"system": B, "code": "no"}}]},
            {"linkId": "level", "type": "integer", "text": "Level"},
            {"linkId": "where", "type": "string", "text": "Where?", "required": True,
             "enableWhen": enable_when, "enableBehavior": behavior},
        ],
    }


CASES = [
    # the answer is B|yes: a condition on A|yes must not hold (the web copy once compared codes only)
    ([{"question": "pain", "operator": "=", "answerCoding": {"system": A, "code": "yes"}}], "all", False),
    ([{"question": "pain", "operator": "=", "answerCoding": {"system": B, "code": "yes"}}], "all", True),
    ([{"question": "pain", "operator": "=", "answerCoding": {"code": "yes"}}], "all", True),
    ([{"question": "pain", "operator": "!=", "answerCoding": {"system": A, "code": "yes"}}], "all", True),
    ([{"question": "level", "operator": ">=", "answerInteger": 5}], "all", True),
    ([{"question": "level", "operator": ">", "answerInteger": 7}], "all", False),
    ([{"question": "level", "operator": ">", "answerInteger": 7},
      {"question": "pain", "operator": "exists", "answerBoolean": True}], "any", True),
    ([{"question": "level", "operator": ">", "answerInteger": 7},
      {"question": "pain", "operator": "exists", "answerBoolean": True}], "all", False),
]


@pytest.mark.parametrize("enable_when,behavior,enabled", CASES)
def test_form_and_validation_agree_on_enable_when(enable_when, behavior, enabled):
    questionnaire = _questionnaire(enable_when, behavior)
    form = build_form(questionnaire, "en")
    parsed = parse_form(form, Values({"pain": ["yes"], "level": ["6"]}))
    assert ("where" in parsed.enabled) is enabled

    response = {"resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": questionnaire["url"], "item": parsed.response_items}
    missing = [i for i in validate_response(questionnaire, response) if i.code == "required"]
    # the required question counts as missing exactly when both say it is enabled
    assert bool(missing) is enabled
