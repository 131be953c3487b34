"""Case features: declaration order, the patient context, absent data, and errors that do not stop the rest."""

from __future__ import annotations

import pytest

from app.errors import FHIRError
from app.reasoning.features import evaluate_features, patient_context, record_resources

from .conftest import ICD, TODAY, B, condition, load, medication, mri_order, nrs, patient

LIBRARY = f"{B}/Library/test-features"


def features_of(kb, record, **kwargs):
    context = patient_context(record, today=kwargs.pop("today", TODAY), terminology=kb.terminology, **kwargs)
    return evaluate_features(kb, LIBRARY, context)


def test_features_are_evaluated_in_order_and_later_ones_read_earlier_ones(kb):
    record = [
        patient("1960-06-01"),
        condition("c1", "M54.5", onset="2025-01-01"),
        condition("c2", "C50.9", onset="2010-01-01"),
    ]
    values = features_of(kb, record).values()
    assert list(values)[:4] == ["conditions", "age_years", "lbp_conditions", "lbp_onset"]
    assert values["age_years"] == [64]
    assert values["lbp_onset"] == ["2025-01-01"]
    assert values["lbp_over_6_weeks"] == [True]
    assert values["previous_cancer"] == [True]
    assert values["red_flag"] == [True]


def test_today_changes_what_the_features_say(kb):
    record = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01")]
    assert features_of(kb, record, today=TODAY).value("lbp_over_6_weeks") == [True]
    assert features_of(kb, record, today=TODAY.replace(month=1, day=20)).value("lbp_over_6_weeks") == [False]


def test_absent_data_is_empty_not_negative(kb):
    values = features_of(kb, [patient(None)]).values()
    assert values["age_years"] == []
    assert values["lbp_onset"] == []
    assert values["lbp_over_6_weeks"] == []
    assert values["previous_cancer"] == []
    assert values["nrs_latest"] == []


def test_the_record_can_be_a_bundle_a_list_or_cds_prefetch(kb):
    resources = [patient(), condition("c1", "C50", onset="2020-01-01"), medication("m1", "H02AB06")]
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    prefetch = {
        "patient": resources[0],
        "conditions": {"resourceType": "Bundle", "entry": [{"resource": resources[1]}]},
        "medications": {"resourceType": "Bundle", "entry": [{"resource": resources[2]}]},
        "empty": None,
    }
    for record in (resources, bundle, prefetch, [bundle]):
        values = features_of(kb, record).values()
        assert values["previous_cancer"] == [True] and values["steroids"] == [True], record


def test_duplicates_in_the_record_are_read_once():
    first = condition("c1", "C50")
    second = condition("c1", "C50", onset="2020-01-01")
    assert record_resources([first, {"resourceType": "Bundle", "entry": [{"resource": second}]}]) == [second]


def test_the_patient_is_the_subject_or_the_patient_of_the_record(kb):
    context = patient_context(
        [patient("1990-01-01", "a"), patient("1950-01-01", "b")], subject="Patient/b", today=TODAY
    )
    assert context.patient["id"] == "b" and context.subject == {"reference": "Patient/b"}
    given = patient_context([], subject=patient("1950-01-01", "c"), today=TODAY)
    assert given.patient["id"] == "c" and given.resources[0]["id"] == "c"


def test_draft_orders_and_selections_are_in_scope(kb):
    order = mri_order("sr1")
    assert features_of(kb, [patient()], draft_orders=[order], selections=["ServiceRequest/sr1"]).value(
        "drafted_mri"
    ) == [True]
    assert features_of(kb, [patient()], draft_orders=[order], selections=[]).value("drafted_mri") == [False]
    draft_bundle = {"resourceType": "Bundle", "entry": [{"resource": order}]}
    assert features_of(kb, [patient()], draft_orders=draft_bundle, selections=[order]).value(
        "drafted_mri"
    ) == [True]


def test_aggregates_over_observations(kb):
    record = [patient(), nrs("o1", 7, "2025-01-10"), nrs("o2", 3, "2025-02-10"), nrs("o3", 5, "2025-01-20")]
    values = features_of(kb, record).values()
    assert values["nrs_latest"] == [3]
    assert values["nrs_first"] == [7]
    assert values["nrs_total"] == [15]


def test_an_error_in_one_feature_does_not_stop_the_others(kb):
    library = load("Library-test-features")
    # single() on two conditions is an evaluation error
    library["extension"][2]["valueExpression"]["expression"] = (
        f"%conditions.single().where(code.memberOf('{B}/ValueSet/test-lbp'))"
    )
    kb.add(library)
    record = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01"), condition("c2", "C50")]
    result = features_of(kb, record)
    errors = [i for i in result.issues if i.severity == "error"]
    assert len(errors) == 1
    error = errors[0]
    assert (
        "Library/test-features" in error.text and "lbp_conditions" in error.text and "single()" in error.text
    )
    assert error.expression == ["Library.extension[2].valueExpression.expression"]
    assert error.diagnostics == library["extension"][2]["valueExpression"]["expression"]
    # the features that depend on it, directly or not, are empty and say why
    assert result.failed == {"lbp_conditions", "lbp_onset", "lbp_over_6_weeks"}
    assert result.value("lbp_over_6_weeks") == []
    warnings = {i.text.split("feature ")[1].split(" ")[0] for i in result.issues if i.severity == "warning"}
    assert warnings == {"lbp_onset", "lbp_over_6_weeks"}
    # the rest goes on
    assert result.value("previous_cancer") == [True]
    assert result.value("age_years") == [64]


def test_each_feature_is_timed(kb):
    result = features_of(kb, [patient(), condition("c1", "M54.5", system=ICD, onset="2025-01-01")])
    assert set(result.timings_ms) == {f.name for f in result.library.features}
    assert all(ms >= 0 for ms in result.timings_ms.values())


def test_a_library_that_is_not_loaded_is_not_found(kb):
    with pytest.raises(FHIRError) as caught:
        evaluate_features(kb, f"{B}/Library/none", patient_context([], today=TODAY))
    assert caught.value.status == 404


def test_only_the_features_asked_for_and_what_they_read(kb):
    record = [patient("1960-06-01"), condition("c1", "M54.5", onset="2025-01-01")]
    context = patient_context(record, today=TODAY, terminology=kb.terminology)
    result = evaluate_features(kb, LIBRARY, context, only=["lbp_over_6_weeks"])
    assert set(result.values()) == {"conditions", "lbp_conditions", "lbp_onset", "lbp_over_6_weeks"}
    assert result.value("lbp_over_6_weeks") == [True]
