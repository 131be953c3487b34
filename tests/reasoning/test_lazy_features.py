"""Case features computed on first read: what nothing reaches is never evaluated, a failure counts only where it
was read, and every result equals the one with every feature evaluated first."""
from __future__ import annotations

from app.fhirpath import compile_expression
from app.reasoning.apply import apply_plan_definition
from app.reasoning.features import evaluate_features, patient_context
from app.reasoning.outcomes import EVALUATION_OUTCOME, FAILED_FEATURE

from .conftest import TODAY, B, condition, patient

LIBRARY = f"{B}/Library/test-features"
RULES = f"{B}/CodeSystem/test-rules"


def _context(kb, record=None, **kwargs):
    record = record if record is not None else [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01")]
    return patient_context(record, today=TODAY, terminology=kb.terminology, **kwargs)


def _condition(text: str) -> list[dict]:
    return [{"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": text}}]


def _rule(action_id: str, code: str, text: str, **more) -> dict:
    return {"id": action_id, "title": f"rule {code}", "priority": "routine",
            "code": [{"coding": [{"system": RULES, "code": code}]}], "condition": _condition(text), **more}


def _plan(*actions: dict) -> dict:
    return {"resourceType": "PlanDefinition", "id": "lazy-test", "url": f"{B}/PlanDefinition/lazy-test",
            "status": "active", "library": [LIBRARY], "action": list(actions)}


def _outcomes(care_plan: dict) -> dict[str, str | None]:
    """action id -> evaluation-outcome code (None when it applied plainly), for every action of the RequestGroup."""
    group = next(r for r in care_plan["contained"] if r["resourceType"] == "RequestGroup")
    out: dict[str, str | None] = {}
    stack = list(group.get("action", []))
    while stack:
        action = stack.pop()
        ext = {e["url"]: e.get("valueCode") for e in action.get("extension", [])}
        out[action.get("id", "")] = ext.get(EVALUATION_OUTCOME)
        stack.extend(action.get("action", []))
    return out


def _apply(kb, plan, onset: str, fail: list[str]):
    subject = patient("1960-06-01")
    return apply_plan_definition(kb, plan, subject=subject, record=[subject, condition("c1", "M54.5", onset=onset)],
                                 today=TODAY, fail_features=fail)


def _failed_features(care_plan: dict) -> set[str]:
    group = next(r for r in care_plan["contained"] if r["resourceType"] == "RequestGroup")
    found: set[str] = set()
    stack = list(group.get("action", []))
    while stack:
        action = stack.pop()
        found |= {e["valueString"] for e in action.get("extension", []) if e["url"] == FAILED_FEATURE}
        stack.extend(action.get("action", []))
    return found


def test_nothing_is_evaluated_before_an_expression_reads_it(kb):
    values = evaluate_features(kb, LIBRARY, _context(kb), lazy=True)
    assert values.evaluated_count == 0 and values.timings_ms == {}
    traced = values.trace(compile_expression("%lbp_over_6_weeks"))
    assert traced.value == [True] and traced.failed == ()
    # the feature and what it read, nothing else
    assert set(values.timings_ms) == {"conditions", "lbp_conditions", "lbp_onset", "lbp_over_6_weeks"}
    assert values.evaluated_count == 4


def test_a_feature_read_by_several_expressions_is_evaluated_once(kb):
    values = evaluate_features(kb, LIBRARY, _context(kb), lazy=True)
    values.trace(compile_expression("%lbp_onset.exists()"))
    values.trace(compile_expression("%lbp_over_6_weeks and %lbp_onset.exists()"))
    assert values.evaluated_count == 4  # conditions, lbp_conditions, lbp_onset, lbp_over_6_weeks


def test_the_right_side_of_a_false_and_is_never_evaluated(kb):
    values = evaluate_features(kb, LIBRARY, _context(kb), lazy=True)
    assert values.trace(compile_expression("false and %red_flag")).value == [False]
    assert values.trace(compile_expression("true or %nrs_latest > 3")).value == [True]
    assert values.trace(compile_expression("iif(true, 1, %age_years)")).value == [1]
    assert values.evaluated_count == 0


def test_a_short_circuited_failure_does_not_mark_the_value(kb):
    values = evaluate_features(kb, LIBRARY, _context(kb), fail=["red_flag"], lazy=True)
    traced = values.trace(compile_expression("%lbp_over_6_weeks.not() and %red_flag"))
    assert traced.value == [False] and traced.failed == ()
    assert "red_flag" not in values.failures  # never reached: never evaluated, so never failed
    read = values.trace(compile_expression("%lbp_over_6_weeks and %red_flag"))
    assert read.value == [] and read.failed == ("red_flag",)
    assert values.failures["red_flag"].raised


def test_a_feature_that_reads_a_failed_one_only_when_it_reads_it(kb):
    cancer = condition("c2", "C50", onset="2020-01-01")
    record = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01"), cancer]
    # red_flag is `iif(%previous_cancer = true or %steroids = true, …)`: with a cancer, steroids is never read
    values = evaluate_features(kb, LIBRARY, _context(kb, record), fail=["steroids"], lazy=True)
    assert values.value("red_flag") == [True] and "red_flag" not in values.failed
    assert "steroids" not in values.failures
    values = evaluate_features(kb, LIBRARY, _context(kb), fail=["steroids"], lazy=True)
    assert values.value("red_flag") == [False]
    assert values.failures["red_flag"].cause == "steroids"
    assert [f.feature for f in values.failures_behind(["red_flag"])] == ["steroids"]


def test_a_failing_feature_below_a_false_condition_marks_no_rule(kb):
    plan = kb.add(_plan(
        {"id": "gate", "title": "gate", "condition": _condition("%lbp_over_6_weeks.not()"),
         "action": [_rule("below", "T1", "%red_flag = true")]},
        _rule("beside", "R2", "%lbp_over_6_weeks"),
    ))
    care_plan, _ = _apply(kb, plan, "2025-01-01", ["red_flag"])
    outcomes = _outcomes(care_plan)
    assert "below" not in outcomes and outcomes.get("beside") is None  # applied, plainly
    assert "red_flag" not in _failed_features(care_plan)
    # the same failure where the rule reads it: could not be evaluated, naming the feature
    care_plan, _ = _apply(kb, plan, "2025-02-20", ["red_flag"])
    assert _outcomes(care_plan).get("below") == "not-evaluated"
    assert {"red_flag", "steroids"} & _failed_features(care_plan)


def test_an_applying_rule_that_did_not_read_the_failure_is_not_incomplete(kb):
    plan = kb.add(_plan(_rule("either", "R3", "%lbp_over_6_weeks or %red_flag = true")))
    care_plan, _ = _apply(kb, plan, "2025-01-01", ["red_flag"])
    assert _outcomes(care_plan) == {"either": None}
    care_plan, _ = _apply(kb, plan, "2025-02-20", ["red_flag"])
    assert _outcomes(care_plan).get("either") == "not-evaluated"  # false or unknown: undecided without it


def test_eager_and_lazy_values_are_the_same(kb):
    cancer = condition("c2", "C50", onset="2020-01-01")
    for record in ([patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01")],
                   [patient(None), cancer], [patient("1990-01-01")]):
        for fail in ((), ("lbp_conditions",), ("steroids",)):
            eager = evaluate_features(kb, LIBRARY, _context(kb, record), fail=fail)
            lazy = evaluate_features(kb, LIBRARY, _context(kb, record), fail=fail, lazy=True)
            assert lazy.values() == eager.values()
            assert lazy.failed == eager.failed
            assert lazy.evaluated_count == eager.evaluated_count == len(eager.library.features)
