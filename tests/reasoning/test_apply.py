"""PlanDefinition/$apply and ActivityDefinition/$apply over the test artifacts."""

from __future__ import annotations

import copy

import pytest

from app.errors import FHIRError
from app.reasoning.apply import apply_activity_definition, apply_plan_definition, set_path, variables_read
from app.reasoning.outcomes import EVALUATION_OUTCOME, FAILED_FEATURE

from .conftest import LOINC, TODAY, B, condition, load, mri_order, nrs, patient

PATHWAY = f"{B}/PlanDefinition/test-pathway"


def apply(kb, record, **kwargs):
    kwargs.setdefault("today", TODAY)
    return apply_plan_definition(kb, PATHWAY, subject="Patient/p1", record=record, **kwargs)


def group_of(care_plan: dict) -> dict:
    ref = care_plan["activity"][0]["reference"]["reference"]
    return next(r for r in care_plan["contained"] if f"#{r['id']}" == ref)


def contained(care_plan: dict, reference: dict) -> dict:
    return next(r for r in care_plan["contained"] if f"#{r['id']}" == reference["reference"])


def actions(group: dict) -> dict[str, dict]:
    found: dict[str, dict] = {}

    def walk(items):
        for a in items:
            found[a.get("id")] = a
            walk(a.get("action", []))

    walk(group.get("action", []))
    return found


def codes(action: dict) -> list[str]:
    return [c["code"] for cc in action.get("code", []) for c in cc["coding"]]


NO_FLAGS = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-02-20"), nrs("o1", 6, "2025-02-21")]
RED_FLAG = NO_FLAGS + [condition("c2", "C50.9", onset="2015-01-01")]
LONG_PAIN = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01"), nrs("o1", 6, "2025-01-02")]


def test_the_result_is_a_draft_careplan_with_the_requestgroup_contained(kb):
    care_plan, issues = apply(kb, NO_FLAGS, encounter="Encounter/e1", practitioner="Practitioner/d1")
    assert issues == []
    assert care_plan["resourceType"] == "CarePlan"
    assert care_plan["status"] == "draft" and care_plan["intent"] == "proposal"
    assert care_plan["instantiatesCanonical"] == [f"{PATHWAY}|0.1.0"]
    assert care_plan["subject"] == {"reference": "Patient/p1"}
    assert care_plan["encounter"] == {"reference": "Encounter/e1"}
    assert care_plan["author"] == {"reference": "Practitioner/d1"}
    assert care_plan["created"].startswith("2025-03-01")
    group = group_of(care_plan)
    assert group["resourceType"] == "RequestGroup"
    assert group["status"] == "draft" and group["intent"] == "proposal"
    assert group["instantiatesCanonical"] == [f"{PATHWAY}|0.1.0"]
    goal = next(r for r in care_plan["contained"] if r["resourceType"] == "Goal")
    assert care_plan["goal"] == [{"reference": f"#{goal['id']}"}]
    assert goal["lifecycleStatus"] == "proposed" and goal["target"][0]["dueDuration"]["value"] == 12
    # no flags, short pain, NRS recorded: only the pathway's first milestone applies
    assert list(actions(group)) == ["assessment-within-3-days"]
    milestone = actions(group)["assessment-within-3-days"]
    assert milestone["timingDuration"]["value"] == 3 and codes(milestone) == ["T1", "assessment"]


def test_a_red_flag_yields_an_urgent_action_with_its_request(kb):
    care_plan, issues = apply(kb, RED_FLAG)
    assert issues == []
    found = actions(group_of(care_plan))
    red = found["red-flag"]
    assert red["priority"] == "urgent"
    assert codes(red) == ["R1", "assessment"]
    assert red["documentation"][0]["display"] == "Test guideline, section 1"
    assert red["extension"][0]["url"].endswith("override-reason")
    assert red["description"] == "Red flag in a patient aged 64"  # dynamicValue over the features
    assert "long-pain" not in found
    order = contained(care_plan, found["order-mri"]["resource"])
    assert order["resourceType"] == "ServiceRequest"
    assert order["status"] == "draft" and order["intent"] == "option"
    assert order["instantiatesCanonical"] == [f"{B}/ActivityDefinition/test-mri|0.1.0"]
    assert order["code"]["coding"][0]["code"] == "24968-0"
    assert order["priority"] == "urgent"
    assert order["subject"] == {"reference": "Patient/p1"}
    assert order["performerType"]["coding"][0]["code"] == "309964003"
    assert order["note"] == [{"text": "Onset 2025-02-20"}]
    assert order["reasonCode"] == [
        {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "M54.5"}]}
    ]


def test_long_pain_asks_for_the_questionnaire_with_a_task(kb):
    care_plan, _ = apply(kb, LONG_PAIN)
    found = actions(group_of(care_plan))
    assert found["long-pain"]["timingDuration"] == {
        "value": 14,
        "unit": "d",
        "system": "http://unitsofmeasure.org",
        "code": "d",
    }
    task = contained(care_plan, found["collect-score"]["resource"])
    canonical = f"{B}/Questionnaire/test-score"
    assert task["resourceType"] == "Task" and task["intent"] == "option" and task["status"] == "draft"
    assert task["for"] == {"reference": "Patient/p1"}
    assert task["focus"] == {"reference": canonical, "display": "Test score"}
    assert {
        "type": {
            "coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp", "code": "questionnaire"}]
        },
        "valueCanonical": canonical,
    } in task["input"]
    assert task["description"] == "Fill in the test score"


def test_a_questionnaire_definition_becomes_a_task(kb):
    record = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-02-20")]
    care_plan, _ = apply(kb, record)
    task = contained(care_plan, actions(group_of(care_plan))["pain-rating"]["resource"])
    assert task["focus"]["reference"] == f"{B}/Questionnaire/test-score"


def test_a_pathway_condition_gates_the_rules_below_it(kb):
    minor = [patient("2010-06-01")] + RED_FLAG[1:]
    assert "red-flag" not in actions(group_of(apply(kb, minor)[0]))


def test_a_trigger_keeps_only_the_actions_for_that_hook(kb):
    order = mri_order("sr1")
    care_plan, issues = apply(
        kb, NO_FLAGS, trigger="order-select", draft_orders=[order], selections=["ServiceRequest/sr1"]
    )
    assert issues == []
    found = actions(group_of(care_plan))
    assert "assessment-within-3-days" not in found  # no trigger: does not answer a hook
    assert found["imaging-without-indication"]["priority"] == "urgent"
    assert found["remove-mri"]["resource"] == {"reference": "ServiceRequest/sr1"}
    assert found["remove-mri"]["type"]["coding"][0]["code"] == "remove"
    assert [
        r["resourceType"] for r in care_plan["contained"] if r["resourceType"] not in ("RequestGroup", "Goal")
    ] == []


def test_a_red_flag_on_order_select_suppresses_the_order_already_drafted(kb):
    order = mri_order("sr1")
    care_plan, _ = apply(kb, RED_FLAG, trigger="order-select", draft_orders=[order], selections=[order])
    found = actions(group_of(care_plan))
    assert "red-flag" in found and "order-mri" not in found and "imaging-without-indication" not in found


def test_a_remove_action_without_a_matching_order_is_left_out(kb):
    other = mri_order("sr2") | {"code": {"coding": [{"system": LOINC, "code": "24972-2"}]}}
    care_plan, _ = apply(kb, NO_FLAGS, trigger="order-select", draft_orders=[other], selections=[other])
    assert "imaging-without-indication" not in actions(group_of(care_plan))


def test_patient_view_has_no_order_actions(kb):
    found = actions(group_of(apply(kb, RED_FLAG, trigger="patient-view")[0]))
    assert "red-flag" in found and "order-mri" in found and "assessment-within-3-days" not in found


def test_an_error_in_one_action_returns_it_as_not_evaluated_and_says_so(kb):
    rules = load("PlanDefinition-test-rules")
    rules["action"][0]["condition"][0]["expression"]["expression"] = "%conditions.single().exists()"
    kb.add(rules)
    care_plan, issues = apply(kb, LONG_PAIN + [condition("c2", "C50.9")])
    found = actions(group_of(care_plan))
    # not skipped: the rule comes back as an action that says it could not be evaluated
    assert {"url": EVALUATION_OUTCOME, "valueCode": "not-evaluated"} in found[
        "red-flag"
    ]["extension"]
    assert "R1" in codes(found["red-flag"]) and "resource" not in found["red-flag"]
    error = next(i for i in issues if i.severity == "error")
    assert "PlanDefinition/test-rules" in error.text and "action[0]" in error.text and "R1" in error.text
    assert "could not be evaluated" in error.text and "single()" in error.text
    assert error.expression == ["PlanDefinition.action[0].condition[0].expression.expression"]
    assert any(i.code == "incomplete" for i in issues)
    # the rest goes on: the pathway's own actions are still there
    assert "assessment-within-3-days" in found


def test_a_failing_dynamic_value_keeps_the_action_and_reports_it(kb):
    rules = load("PlanDefinition-test-rules")
    rules["action"][0]["dynamicValue"][0]["expression"]["expression"] = "%conditions.single().id"
    kb.add(rules)
    care_plan, issues = apply(kb, RED_FLAG)
    red = actions(group_of(care_plan))["red-flag"]
    assert red["description"] == "A red flag is recorded."
    warning = next(i for i in issues if i.severity == "warning" and "dynamicValue" in i.text)
    assert warning.expression == ["PlanDefinition.action[0].dynamicValue[0].expression.expression"]


def test_a_definition_that_is_not_loaded_skips_the_action(kb):
    rules = load("PlanDefinition-test-rules")
    rules["action"][1]["action"][0]["definitionCanonical"] = f"{B}/ActivityDefinition/missing"
    kb.add(rules)
    care_plan, issues = apply(kb, LONG_PAIN)
    found = actions(group_of(care_plan))
    assert (
        "collect-score" not in found and "long-pain" in found
    )  # the recommendation stays, its suggestion goes
    assert any("ActivityDefinition/missing" in i.text and "skipped" in i.text for i in issues)


def test_an_action_reading_a_failed_feature_says_it_could_not_be_evaluated(kb):
    library = load("Library-test-features")
    library["extension"][8]["valueExpression"]["expression"] = "%conditions.single().exists()"  # red_flag
    kb.add(library)
    care_plan, issues = apply(kb, RED_FLAG)
    red = actions(group_of(care_plan))["red-flag"]
    assert {"url": EVALUATION_OUTCOME, "valueCode": "not-evaluated"} in red["extension"]
    assert {"url": FAILED_FEATURE, "valueString": "red_flag"} in red["extension"]
    assert "R1" in codes(red) and "action" not in red  # nothing is suggested on an unknown
    assert any("reads %red_flag, which could not be evaluated" in i.text for i in issues)


def test_nothing_is_stored_or_changed(kb):
    record = copy.deepcopy(RED_FLAG)
    before = kb.resources()
    apply(kb, record)
    assert record == RED_FLAG
    assert kb.resources() == before


def test_a_subject_is_required(kb):
    with pytest.raises(FHIRError) as caught:
        apply_plan_definition(kb, PATHWAY, subject=None, record=[], today=TODAY)
    assert caught.value.issues[0].expression == ["subject"]


def test_an_unknown_plan_definition_is_not_found(kb):
    with pytest.raises(FHIRError) as caught:
        apply_plan_definition(kb, f"{B}/PlanDefinition/none", subject="Patient/p1", record=[], today=TODAY)
    assert caught.value.status == 404


def test_a_plan_definition_given_as_a_resource(kb):
    pathway = load("PlanDefinition-test-pathway")
    pathway["action"] = pathway["action"][:1]
    care_plan, _ = apply_plan_definition(kb, pathway, subject="Patient/p1", record=NO_FLAGS, today=TODAY)
    assert list(actions(group_of(care_plan))) == ["assessment-within-3-days"]


def test_apply_activity_definition_service_request(kb):
    resource, issues = apply_activity_definition(
        kb,
        f"{B}/ActivityDefinition/test-mri",
        subject="Patient/p1",
        record=LONG_PAIN,
        practitioner="Practitioner/d1",
        today=TODAY,
    )
    assert issues == []
    assert resource["resourceType"] == "ServiceRequest"
    assert resource["intent"] == "proposal" and resource["status"] == "draft"
    assert resource["requester"] == {"reference": "Practitioner/d1"}
    assert resource["note"] == [{"text": "Onset 2025-01-01"}]
    # "within 7 days" has no anchor: Timing.repeat.bounds says it as such
    week = {"value": 7, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}
    assert resource["occurrenceTiming"] == {"repeat": {"boundsDuration": week}}


def test_apply_activity_definition_communication_request(kb):
    # no Library: its dynamicValue sees the patient context only
    resource, issues = apply_activity_definition(
        kb, f"{B}/ActivityDefinition/test-advice", subject="Patient/p1", record=[patient()], today=TODAY
    )
    assert issues == []
    assert resource["resourceType"] == "CommunicationRequest"
    assert resource["payload"] == [{"contentString": "Stay active, born 1970-05-01."}]
    assert resource["priority"] == "routine"
    assert "intent" not in resource  # R4 CommunicationRequest has none


def test_apply_activity_definition_task_collecting_a_questionnaire(kb):
    resource, _ = apply_activity_definition(
        kb, f"{B}/ActivityDefinition/test-collect-score", subject="Patient/p1", today=TODAY
    )
    assert resource["resourceType"] == "Task" and resource["intent"] == "proposal"
    assert resource["focus"]["reference"] == f"{B}/Questionnaire/test-score"
    assert resource["code"]["coding"][0]["code"] == "complete-questionnaire"


def test_set_path_uses_the_model_for_repeating_elements():
    target: dict = {}
    set_path(target, "reasonCode", [{"text": "a"}], "ServiceRequest")
    set_path(target, "note.text", ["n"], "ServiceRequest")
    set_path(target, "code", [{"text": "c"}], "ServiceRequest")
    assert target == {"reasonCode": [{"text": "a"}], "note": [{"text": "n"}], "code": {"text": "c"}}


@pytest.mark.parametrize(
    "start, path, values, expected",
    [
        ({}, "description", ["x"], {"description": "x"}),
        ({}, "note[0].text", ["x"], {"note": [{"text": "x"}]}),
        ({"note": [{"text": "a"}]}, "note.text", ["x"], {"note": [{"text": "x"}]}),
        ({"reasonCode": [{"text": "a"}]}, "reasonCode", [{"text": "b"}], {"reasonCode": [{"text": "b"}]}),
        (
            {},
            "code.coding",
            [{"code": "1"}, {"code": "2"}],
            {"code": {"coding": [{"code": "1"}, {"code": "2"}]}},
        ),
        ({"description": "a"}, "description", [], {}),
        ({}, "input[1].valueString", ["x"], {"input": [{}, {"valueString": "x"}]}),
    ],
)
def test_set_path(start, path, values, expected):
    set_path(start, path, values)
    assert start == expected


def test_apply_evaluates_the_features_its_rules_read(kb):
    names = variables_read(kb, kb.artifact(PATHWAY))
    assert {"age_years", "red_flag", "lbp_over_6_weeks", "drafted_mri", "nrs_latest", "lbp_onset"} <= names
    assert "risk_high" not in names and "nrs_total" not in names
