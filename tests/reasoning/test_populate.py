"""SDC population by initialExpression from the patient's record."""

from __future__ import annotations

from datetime import UTC, datetime

from app.errors import Issue
from app.reasoning.populate import populate

from .conftest import TODAY, B, load, nrs, patient


def items(response: dict) -> dict[str, dict]:
    return {i["linkId"]: i for i in response.get("item", [])}


def test_items_are_filled_from_the_record(kb):
    questionnaire = load("Questionnaire-test-score")
    record = [patient("1960-06-01"), nrs("o1", 7, "2025-01-10"), nrs("o2", 3, "2025-02-10")]
    response = populate(
        questionnaire,
        record,
        subject="Patient/p1",
        today=datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
        terminology=kb.terminology,
    )
    assert response["resourceType"] == "QuestionnaireResponse"
    assert response["questionnaire"] == f"{B}/Questionnaire/test-score|0.1.0"
    assert response["status"] == "in-progress"
    assert response["subject"] == {"reference": "Patient/p1"}
    assert response["authored"] == "2025-03-01T09:00:00+00:00"
    filled = items(response)
    assert filled["nrs"]["answer"] == [{"valueInteger": 3}]  # the latest rating
    assert filled["birth-date"]["answer"] == [{"valueDate": "1960-06-01"}]
    assert filled["smoker"]["answer"] == [{"valueBoolean": False}]  # the static initial value
    # what the record cannot tell is left for the patient
    assert set(filled) == {"nrs", "birth-date", "smoker"}


def test_an_empty_record_fills_only_static_initial_values():
    response = populate(load("Questionnaire-test-score"), [], subject="Patient/p1", today=TODAY)
    assert set(items(response)) == {"smoker"}


def test_groups_are_kept_around_filled_items():
    questionnaire = {
        "resourceType": "Questionnaire",
        "id": "q",
        "url": f"{B}/Questionnaire/q",
        "item": [
            {
                "linkId": "g",
                "type": "group",
                "text": "Group",
                "item": [
                    {
                        "linkId": "gender",
                        "type": "choice",
                        "answerOption": [
                            {
                                "valueCoding": {
                                    "system": "http://hl7.org/fhir/administrative-gender",
                                    "code": "female",
                                    "display": "Female",
                                }
                            }
                        ],
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression",
                                "valueExpression": {
                                    "language": "text/fhirpath",
                                    "expression": "%patient.gender",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    response = populate(questionnaire, [patient()], subject="Patient/p1", today=TODAY)
    assert response["item"] == [
        {
            "linkId": "g",
            "text": "Group",
            "item": [
                {
                    "linkId": "gender",
                    "answer": [
                        {
                            "valueCoding": {
                                "system": "http://hl7.org/fhir/administrative-gender",
                                "code": "female",
                                "display": "Female",
                            }
                        }
                    ],
                }
            ],
        }
    ]


def test_variables_are_in_scope_of_initial_expressions():
    questionnaire = {
        "resourceType": "Questionnaire",
        "id": "q",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/variable",
                "valueExpression": {
                    "name": "born",
                    "language": "text/fhirpath",
                    "expression": "%patient.birthDate",
                },
            }
        ],
        "item": [
            {
                "linkId": "year",
                "type": "integer",
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression",
                        "valueExpression": {
                            "language": "text/fhirpath",
                            "expression": "%born.toString().substring(0, 4).toInteger()",
                        },
                    }
                ],
            }
        ],
    }
    response = populate(questionnaire, [patient("1971-02-03")], subject="Patient/p1", today=TODAY)
    assert items(response)["year"]["answer"] == [{"valueInteger": 1971}]


def test_an_expression_error_leaves_the_item_empty_and_is_reported():
    questionnaire = load("Questionnaire-test-score")
    questionnaire["item"][5]["extension"][0]["valueExpression"]["expression"] = (
        "%patient.birthDate.single() + %undefined"
    )
    issues: list[Issue] = []
    response = populate(questionnaire, [patient()], subject="Patient/p1", today=TODAY, issues=issues)
    assert "birth-date" not in items(response)
    assert len(issues) == 1
    assert "Questionnaire/test-score" in issues[0].text and "%undefined" in issues[0].text
    assert issues[0].expression == ["Questionnaire.item[5].extension[0].valueExpression.expression"]


def test_a_value_that_does_not_fit_the_item_is_reported():
    questionnaire = load("Questionnaire-test-score")
    questionnaire["item"][4]["extension"][3]["valueExpression"]["expression"] = "'seven'"
    issues: list[Issue] = []
    response = populate(questionnaire, [patient()], subject="Patient/p1", today=TODAY, issues=issues)
    assert "nrs" not in items(response)
    assert issues[0].code == "value" and "nrs" in issues[0].text
