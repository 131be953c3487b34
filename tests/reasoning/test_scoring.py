"""SDC scoring, validation and observation-based extraction over the test questionnaire."""

from __future__ import annotations

import copy

import pytest

from app.errors import FHIRError
from app.reasoning.scoring import complete_response, extract_observations, score_response, validate_response

from .conftest import TODAY, B, load, response, yes_no

RISK = f"{B}/CodeSystem/test-risk"


@pytest.fixture
def questionnaire() -> dict:
    return load("Questionnaire-test-score")


def answered(q1="no", q2="no", q3="yes", q4="no", **extra) -> dict:
    answers = {
        "q1": yes_no(q1),
        "q2": yes_no(q2),
        "q3": yes_no(q3),
        "q4": yes_no(q4),
        "nrs": {"valueInteger": 5},
    }
    answers.update(extra)
    return response(answers)


@pytest.mark.parametrize(
    "answers, total, risk",
    [
        (dict(q1="no", q2="no", q3="yes", q4="no"), 0, "low"),  # q3 is reversed: "yes" weighs 0
        (dict(q1="yes", q2="no", q3="no", q4="no", comment={"valueString": "x"}), 2, "low"),
        (dict(q1="yes", q2="yes", q3="no", q4="no", comment={"valueString": "x"}), 3, "high"),  # the boundary
        (dict(q1="yes", q2="yes", q3="no", q4="yes", comment={"valueString": "x"}), 4, "high"),
    ],
)
def test_scores_use_the_weights_of_the_answered_item(questionnaire, answers, total, risk):
    scores = score_response(questionnaire, answered(**answers), today=TODAY)
    assert scores["total"] == total
    assert scores["risk"] == {
        "system": RISK,
        "code": risk,
        "display": {"low": "Low risk", "high": "High risk"}[risk],
    }


def test_an_unanswered_question_scores_nothing(questionnaire):
    partial = response({"q1": yes_no("yes")})
    assert score_response(questionnaire, partial)["total"] == 1


def test_the_completed_response_holds_the_calculated_answers(questionnaire):
    original = answered(q1="yes", q2="yes", q3="no", comment={"valueString": "x"})
    before = copy.deepcopy(original)
    completed = complete_response(questionnaire, original)
    assert original == before  # the input is not changed
    items = {i["linkId"]: i for i in completed["item"]}
    assert items["total"]["answer"] == [{"valueInteger": 3}]
    assert items["risk"]["answer"] == [
        {"valueCoding": {"system": RISK, "code": "high", "display": "High risk"}}
    ]
    assert items["total"]["text"] == "Total score"


def test_calculated_answers_already_present_are_recomputed(questionnaire):
    stale = answered()
    stale["item"].append({"linkId": "total", "answer": [{"valueInteger": 99}]})
    completed = complete_response(questionnaire, stale)
    assert [i for i in completed["item"] if i["linkId"] == "total"][0]["answer"] == [{"valueInteger": 0}]


def test_a_broken_calculation_names_the_questionnaire_and_the_item(questionnaire):
    questionnaire["item"][7]["extension"][0]["valueExpression"]["expression"] = "%answers.single()"
    with pytest.raises(FHIRError) as caught:
        score_response(questionnaire, answered())
    issue = caught.value.issues[0]
    assert "Questionnaire/test-score" in issue.text and "total" in issue.text
    assert issue.expression == ["Questionnaire.item[7].extension"]


def test_a_calculation_that_does_not_fit_the_item_type_is_an_error(questionnaire):
    questionnaire["item"][7]["extension"][0]["valueExpression"]["expression"] = "'many'"
    with pytest.raises(FHIRError, match="does not fit an item of type integer"):
        score_response(questionnaire, answered())


# -- validation -----------------------------------------------------------------------------------------


def test_a_complete_valid_response_has_no_issues(questionnaire):
    assert validate_response(questionnaire, answered()) == []


def test_required_items_missing(questionnaire):
    # q2 is missing; the group g1 is not required, so its required items are needed only when it is there
    missing = response({"q1": yes_no("no"), "nrs": {"valueInteger": 3}})
    issues = validate_response(questionnaire, missing)
    assert [(i.severity, i.code, i.expression, i.text.split(" ")[1]) for i in issues] == [
        ("error", "required", ["QuestionnaireResponse.item.where(linkId='q2')"], "q2")
    ]


def test_required_items_inside_a_group(questionnaire):
    only_q3 = answered()
    group = next(i for i in only_q3["item"] if i["linkId"] == "g1")
    group["item"] = [i for i in group["item"] if i["linkId"] != "q4"]
    issues = validate_response(questionnaire, only_q3)
    assert [(i.code, i.expression) for i in issues] == [
        ("required", ["QuestionnaireResponse.item[2].item.where(linkId='q4')"])
    ]
    assert "q4" in issues[0].text


def test_enable_when_decides_whether_a_required_item_is_needed(questionnaire):
    assert validate_response(questionnaire, answered(q1="no")) == []
    issues = validate_response(questionnaire, answered(q1="yes"))
    assert [i.text.split(" ")[1] for i in issues] == ["comment"]
    disabled_but_answered = validate_response(questionnaire, answered(q1="no", comment={"valueString": "x"}))
    assert [(i.severity, i.code) for i in disabled_but_answered] == [("warning", "business-rule")]


def test_an_in_progress_response_may_be_incomplete(questionnaire):
    partial = response({"q1": yes_no("no")}, status="in-progress")
    issues = validate_response(questionnaire, partial)
    assert issues and all(i.severity == "warning" for i in issues)


def test_unknown_link_ids_wrong_types_and_options(questionnaire):
    bad = answered()
    bad["item"].append({"linkId": "zz", "answer": [{"valueString": "?"}]})
    bad["item"][0]["answer"] = [{"valueCoding": {"system": f"{B}/CodeSystem/test-answer", "code": "maybe"}}]
    bad["item"][1]["answer"] = [{"valueString": "yes"}]
    nrs_item = next(i for i in bad["item"] if i["linkId"] == "nrs")
    nrs_item["answer"] = [{"valueInteger": 11}]
    issues = {(i.code, i.expression[0]) for i in validate_response(questionnaire, bad)}
    assert ("structure", "QuestionnaireResponse.item[4]") in issues  # zz
    assert ("code-invalid", "QuestionnaireResponse.item[0].answer[0].valueCoding") in issues
    assert ("value", "QuestionnaireResponse.item[1].answer[0].valueString") in issues
    assert ("value", "QuestionnaireResponse.item[3].answer[0].valueInteger") in issues  # above maxValue 10


def test_repeats_and_answers_on_groups(questionnaire):
    bad = answered()
    bad["item"][0]["answer"].append(yes_no("yes"))
    bad["item"][2]["answer"] = [{"valueBoolean": True}]
    issues = {(i.code, i.expression[0]) for i in validate_response(questionnaire, bad)}
    assert ("structure", "QuestionnaireResponse.item[0].answer") in issues
    assert ("structure", "QuestionnaireResponse.item[2].answer") in issues


def test_a_string_longer_than_max_length(questionnaire):
    issues = validate_response(questionnaire, answered(q1="yes", comment={"valueString": "x" * 201}))
    assert [i.code for i in issues] == ["too-long"]


def test_a_response_to_another_questionnaire_is_flagged(questionnaire):
    other = answered()
    other["questionnaire"] = "http://example.org/Questionnaire/other"
    assert validate_response(questionnaire, other)[0].expression == ["QuestionnaireResponse.questionnaire"]


# -- extraction -----------------------------------------------------------------------------------------


def test_observations_are_extracted_from_the_completed_response(questionnaire):
    source = answered(q1="yes", q2="yes", q3="no", comment={"valueString": "x"})
    observations = extract_observations(questionnaire, source, today=TODAY)
    by_code = {o["code"]["coding"][0]["code"]: o for o in observations}
    assert set(by_code) == {"72514-3", "test-total", "test-risk"}
    pain = by_code["72514-3"]
    assert pain["status"] == "final"
    assert pain["category"][0]["coding"][0]["code"] == "survey"
    assert pain["subject"] == {"reference": "Patient/p1"}
    assert pain["effectiveDateTime"] == "2025-02-01T10:00:00+01:00"
    assert pain["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr1"}]
    assert pain["valueInteger"] == 5
    assert pain["code"]["text"] == "Pain now (0–10)"
    assert by_code["test-total"]["valueInteger"] == 3
    assert by_code["test-risk"]["valueCodeableConcept"]["coding"][0]["code"] == "high"


def test_extraction_reference_and_effective_without_an_id_or_authored(questionnaire):
    source = answered()
    del source["id"], source["authored"]
    observations = extract_observations(questionnaire, source, today=TODAY, response_reference="urn:uuid:1")
    assert all(o["derivedFrom"] == [{"reference": "urn:uuid:1"}] for o in observations)
    assert all(o["effectiveDateTime"] == "2025-03-01" for o in observations)


def test_extraction_can_be_switched_off_per_item(questionnaire):
    questionnaire["item"][4]["extension"][0]["valueBoolean"] = False
    codes = {o["code"]["coding"][0]["code"] for o in extract_observations(questionnaire, answered())}
    assert "72514-3" not in codes


def test_extraction_on_the_root_applies_to_every_coded_item(questionnaire):
    for item in questionnaire["item"]:
        item["extension"] = [
            e for e in item.get("extension", []) if not e["url"].endswith("observationExtract")
        ]
    questionnaire.setdefault("extension", []).append(
        {
            "url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-observationExtract",
            "valueBoolean": True,
        }
    )
    codes = {o["code"]["coding"][0]["code"] for o in extract_observations(questionnaire, answered())}
    assert codes == {"72514-3", "test-total", "test-risk"}
