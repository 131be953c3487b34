"""The case features a hook can read (pruned per trigger, kept per knowledge epoch); features evaluated in two steps."""
from __future__ import annotations

from app.reasoning.features import evaluate_features, patient_context
from app.reasoning.needs import features_read

from .conftest import TODAY, B, condition, patient

LIBRARY = f"{B}/Library/test-features"


def _condition(text: str) -> list[dict]:
    return [{"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": text}}]


def _trigger(name: str) -> list[dict]:
    return [{"type": "named-event", "name": name}]


def _plan(signing_reads: str = "%lbp_over_6_weeks") -> dict:
    return {
        "resourceType": "PlanDefinition", "id": "needs-test", "url": f"{B}/PlanDefinition/needs-test",
        "status": "active", "library": [LIBRARY],
        "action": [
            {"title": "at patient view", "trigger": _trigger("patient-view"),
             "condition": _condition("%previous_cancer")},
            {"title": "at signing", "trigger": _trigger("order-sign"), "condition": _condition(signing_reads)},
            {"title": "no trigger of its own", "condition": _condition("%red_flag"), "action": [
                {"title": "below it, at signing", "trigger": _trigger("order-sign"),
                 "condition": _condition("%age_years > 50"), "action": [
                     {"title": "below a matching trigger", "condition": _condition("%nrs_latest.exists()")}]},
            ]},
        ],
    }


def test_a_hook_reads_the_features_of_the_actions_it_can_reach(kb):
    plan = kb.add(_plan())
    signing = features_read(kb, plan, "order-sign")
    assert {"lbp_over_6_weeks", "red_flag", "age_years", "nrs_latest"} <= signing
    assert "previous_cancer" not in signing  # only an action of another trigger reads it
    viewing = features_read(kb, plan, "patient-view")
    assert {"previous_cancer", "red_flag"} <= viewing
    assert not {"lbp_over_6_weeks", "age_years", "nrs_latest"} & viewing
    assert {"previous_cancer", "lbp_over_6_weeks", "red_flag", "age_years", "nrs_latest"} <= features_read(
        kb, plan, None)


def test_the_set_is_kept_for_the_knowledge_epoch_and_worked_out_again_after_a_change(kb):
    plan = kb.add(_plan())
    first = features_read(kb, plan, "order-sign")
    assert features_read(kb, kb.artifact(plan.label), "order-sign") is first
    changed = kb.add(_plan(signing_reads="%previous_cancer"))
    again = features_read(kb, changed, "order-sign")
    assert "previous_cancer" in again and "lbp_over_6_weeks" not in again


def test_a_second_step_keeps_the_first_steps_values_and_failures(kb):
    record = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01")]
    context = patient_context(record, today=TODAY, terminology=kb.terminology, fail_features=["lbp_conditions"])
    first = evaluate_features(kb, LIBRARY, context, only=["lbp_onset"])
    second = evaluate_features(kb, LIBRARY, context, only=["lbp_onset", "age_years", "red_flag"], earlier=first)
    whole = evaluate_features(kb, LIBRARY, context, only=["lbp_onset", "age_years", "red_flag"])
    assert second.values() == whole.values()
    assert second.failed == whole.failed and "lbp_onset" in second.failed
    assert [i.text for i in second.issues] == [i.text for i in first.issues] + [
        i.text for i in whole.issues if i.text not in {j.text for j in first.issues}]
    assert second.raw["lbp_onset"] is first.raw["lbp_onset"]  # not evaluated again
