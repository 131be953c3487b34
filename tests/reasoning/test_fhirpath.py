"""FHIRPath: compilation, errors naming the artifact, model-typed navigation, dates, terminology and SDC functions."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import fhirpathpy
import pytest
from fhirpathpy.models import models

from app.errors import FHIRError
from app.fhirpath import (
    FHIRPathError,
    Scope,
    compile_expression,
    evaluate,
    make_environment,
    singleton_boolean,
    to_json,
)
from app.reasoning.terminology import TerminologyIndex

from .conftest import ATC, ICD, LOINC, SKS, TODAY

BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {
            "resource": {
                "resourceType": "Patient",
                "id": "p1",
                "birthDate": "1960-03-02",
                "name": [{"given": ["Anna", "Maria"], "family": "Berg"}],
            }
        },
        {
            "resource": {
                "resourceType": "Condition",
                "id": "c1",
                "onsetDateTime": "2025-01-10",
                "code": {"coding": [{"system": SKS, "code": "DM545"}], "text": "Lumbago"},
            }
        },
        {
            "resource": {
                "resourceType": "Condition",
                "id": "c2",
                "onsetPeriod": {"start": "2020-06-01"},
                "code": {"coding": [{"system": ICD, "code": "C50.9"}]},
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "valueInteger": 7,
                "effectiveDateTime": "2025-01-12",
                "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o2",
                "status": "final",
                "valueInteger": 4,
                "effectiveDateTime": "2025-02-20T10:00:00+01:00",
                "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o3",
                "status": "final",
                "valueQuantity": {
                    "value": 71.5,
                    "unit": "kg",
                    "system": "http://unitsofmeasure.org",
                    "code": "kg",
                },
                "effectiveDateTime": "2025-02-20",
                "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
            }
        },
        {
            "resource": {
                "resourceType": "MedicationStatement",
                "id": "m1",
                "status": "active",
                "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "H02AB06"}]},
            }
        },
    ],
}

TERMINOLOGY = TerminologyIndex(
    [
        {
            "resourceType": "ValueSet",
            "url": "http://x/lbp",
            "compose": {"include": [{"system": ICD, "concept": [{"code": "M54.5"}]}]},
        },
        {
            "resourceType": "ValueSet",
            "url": "http://x/steroids",
            "compose": {"include": [{"system": ATC, "concept": [{"code": "H02AB"}]}]},
        },
        {
            "resourceType": "ValueSet",
            "url": "http://x/gender",
            "compose": {
                "include": [
                    {"system": "http://hl7.org/fhir/administrative-gender", "concept": [{"code": "female"}]}
                ]
            },
        },
    ]
)
ENV = make_environment(TODAY, terminology=TERMINOLOGY)


def run(expression: str, focus=BUNDLE, variables=None, env=ENV):
    return to_json(evaluate(compile_expression(expression), focus, variables, env))


# -- compilation -------------------------------------------------------------------------------------


def test_compiled_expressions_are_cached_by_text():
    assert compile_expression("1 + 1") is compile_expression("1 + 1")


@pytest.mark.parametrize(
    "expression, reason",
    [
        ("Condition.where(", "mismatched input"),
        ("a b", "unexpected"),
        ("code.frobnicate()", "unknown function frobnicate()"),
        ("exists(1, 2)", "exists() takes 0 to 1 argument(s), not 2"),
        ("memberOf()", "memberOf() takes 1 argument(s), not 0"),
        ("", "empty expression"),
    ],
)
def test_compile_error_names_artifact_element_and_expression(expression, reason):
    path = "PlanDefinition.action[2].condition[0].expression"
    with pytest.raises(FHIRError) as caught:
        compile_expression(expression, artifact="PlanDefinition/rules", path=path)
    error = caught.value
    assert error.code == "invalid" and error.status == 400
    issue = error.issues[0]
    assert issue.expression == [path]
    assert "PlanDefinition/rules" in issue.text and reason in issue.text and expression in issue.text


def test_compile_error_is_reported_for_each_use_of_the_same_text():
    for artifact in ("Library/a", "Library/b"):
        with pytest.raises(FHIRError) as caught:
            compile_expression("x.(", artifact=artifact, path="Library.extension[0]")
        assert artifact in caught.value.issues[0].text


def test_variables_read_by_an_expression_are_known_after_compiling():
    compiled = compile_expression("%a and %`b-c` or %'d' or %today.exists()")
    assert compiled.variables == {"a", "b-c", "d", "today"}


# -- known pitfalls ----------------------------------------------------------------------------------


def test_choice_elements_resolve_only_with_the_model():
    assert run("entry.resource.ofType(Condition).onset.ofType(dateTime)") == ["2025-01-10"]
    assert run("entry.resource.ofType(Condition).onset.ofType(Period).start") == ["2020-06-01"]
    assert run("entry.resource.ofType(Observation).value.ofType(Quantity).value") == [71.5]
    # fhirpathpy without a model cannot see onset[x] at all: the reason the engine always uses R4
    assert fhirpathpy.evaluate(BUNDLE, "entry.resource.ofType(Condition).onset") == []
    assert len(fhirpathpy.evaluate(BUNDLE, "entry.resource.ofType(Condition).onset", {}, models["r4"])) == 2


def test_sum_of_model_typed_integers():
    assert run("entry.resource.ofType(Observation).value.ofType(integer).sum()") == [11]
    assert run("entry.resource.ofType(Observation).value.ofType(integer).max()") == [7]
    assert run("entry.resource.ofType(Observation).value.ofType(integer).avg()") == [5.5]
    # fhirpathpy's own aggregates fail on model-typed nodes, even with ofType(integer)
    with pytest.raises(TypeError):
        fhirpathpy.evaluate(
            BUNDLE, "entry.resource.ofType(Observation).value.ofType(integer).sum()", {}, models["r4"]
        )


def test_sum_of_an_empty_collection_is_zero():
    assert run("{}.sum()") == [0]


def test_today_and_now_are_injected():
    assert run("today()") == ["2025-03-01"]
    assert run("%today") == ["2025-03-01"]
    assert run("now().toString().substring(0, 10)") == ["2025-03-01"]
    fixed = make_environment(datetime(2024, 12, 24, 15, 30, tzinfo=UTC))
    assert run("today()", env=fixed) == ["2024-12-24"]
    assert run("now()", env=fixed) == ["2024-12-24T15:30:00.000+00:00"]


def test_date_arithmetic_against_the_injected_today():
    assert run("%today - 6 weeks") == ["2025-01-18"]
    assert run("%today - 1 month") == ["2025-02-01"]
    assert run("@2024-03-31 + 1 month") == ["2024-04-30"]
    assert run("@2024-02-29 + 1 year") == ["2025-02-28"]
    assert run("%today - 28 days") == ["2025-02-01"]
    assert run("entry.resource.ofType(Condition).onset.ofType(dateTime) < %today - 6 weeks") == [True]
    assert run("entry.resource.ofType(Patient).birthDate <= %today - 65 years") == [False]
    assert run("entry.resource.ofType(Patient).birthDate <= %today - 64 years") == [True]


def test_dates_of_different_precision_compare_as_unknown():
    assert run("@2024 < @2024-05") == []
    assert run("@2023 < @2024-05") == [True]
    assert run("@2024-05-01 = @2024-05-01T10:00") == []
    assert run("@2024-05-01T10:00:00+02:00 = @2024-05-01T08:00:00Z") == [True]
    assert run("@2024-05-01 ~ @2024-05") == [False]


def test_datetime_with_offset_against_a_date():
    assert run("entry.resource.ofType(Observation).where(effective.ofType(dateTime) >= @2025-02-01).id") == [
        "o2",
        "o3",
    ]


# -- semantics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("true and {}", []),
        ("false and {}", [False]),
        ("true or {}", [True]),
        ("{} or false", []),
        ("true xor false", [True]),
        ("{} implies false", []),
        ("false implies {}", [True]),
        ("({} = 1)", []),
        ("(1 | 2) = (1 | 2)", [True]),
        ("(1 | 2) = (1)", [False]),
        ("'Abc  def' ~ 'abc def'", [True]),
        ("1.50 ~ 1.5", [True]),
        ("1 = 1.0", [True]),
        ("(1 | 1 | 2).count()", [2]),
        ("(1 | 2).combine(2).count()", [3]),
        ("(3 | 1 | 2).first()", [3]),
        ("(1 | 2 | 3).tail()", [2, 3]),
        ("(1 | 2 | 3).skip(1).take(1)", [2]),
        ("(1 | 2 | 3).where($this > 1 and $index < 2)", [2]),
        ("(1 | 2 | 3).select($this * 2)", [2, 4, 6]),
        ("(1 | 2 | 3).aggregate($this + $total, 0)", [6]),
        ("(1 | 2 | 3).all($this > 0)", [True]),
        ("(1 | 2 | 3).exists($this > 2)", [True]),
        ("{}.exists()", [False]),
        ("{}.empty()", [True]),
        ("(true | false).anyTrue()", [True]),
        ("2 in (1 | 2)", [True]),
        ("(1 | 2) contains 3", [False]),
        ("7 div 2", [3]),
        ("-7 div 2", [-3]),
        ("7 mod 3", [1]),
        ("7 / 2", [3.5]),
        ("1 / 0", []),
        ("'a' + 'b'", ["ab"]),
        ("'a' & {}", ["a"]),
        ("'2025-03-01'.substring(5, 2).toInteger()", [3]),
        ("'abc'.substring(5)", []),
        ("'a,b'.split(',').count()", [2]),
        ("('a' | 'b').join('-')", ["a-b"]),
        ("'Lumbago'.upper().startsWith('LUM')", [True]),
        ("'abc'.matches('^a.c$')", [True]),
        ("'abc'.replaceMatches('b', 'x')", ["axc"]),
        ("'12'.toInteger() + 1", [13]),
        ("'1.5'.toDecimal()", [1.5]),
        ("'x'.toInteger()", []),
        ("'yes'.toBoolean()", [True]),
        ("1.toString()", ["1"]),
        ("'2024-05-01'.toDate() < @2024-06-01", [True]),
        ("'2024-05-01T10:00:00Z'.toDate()", ["2024-05-01"]),
        ("'5 \\'mg\\''.toQuantity() = 5 'mg'", [True]),
        ("iif(true, 'a', 1 / 0)", ["a"]),
        ("iif({}, 'a', 'b')", ["b"]),
        ("iif(false, 'a')", []),
        ("(1 | 2 | 3).max()", [3]),
        ("(4.5).round()", [5]),
        ("(-2).abs()", [2]),
        ("2.power(3)", [8]),
        (
            "5 'mg' + 3 'mg'",
            [{"value": 8, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}],
        ),
        ("1 week = 7 days", [True]),
        ("2 is Integer", [True]),
        ("'x' is String", [True]),
        ("@2024-01-01 is Date", [True]),
    ],
)
def test_fhirpath_semantics(expression, expected):
    assert run(expression) == expected


def test_navigation_and_types_over_a_bundle():
    assert run("entry.resource.ofType(Patient).name.given") == ["Anna", "Maria"]
    assert run("Bundle.entry.resource.ofType(Patient).name.family") == ["Berg"]
    assert run("entry.resource.where($this is Condition).id") == ["c1", "c2"]
    assert run("entry.resource.ofType(Condition).code.coding.code.first() is FHIR.code") == [True]
    assert run("entry.resource.ofType(Condition).code.text.first() as string") == ["Lumbago"]
    assert run("entry.resource.ofType(Observation).value.ofType(integer).count()") == [2]
    assert run("entry.resource.ofType(Observation).first().children().count() > 3") == [True]
    # 2 given, family; Resource.id is an `id` (R4 suite testContainedId), which ofType() takes exactly
    assert run("entry.resource.ofType(Patient).descendants().ofType(string).count()") == [3]
    assert run("entry.resource.ofType(Patient).descendants().ofType(id).count()") == [1]
    assert run("entry[1].resource.id") == ["c1"]
    assert run("entry.resource.ofType(Patient).birthDate.hasValue()") == [True]


def test_repeat_walks_nested_items_once():
    response = {
        "resourceType": "QuestionnaireResponse",
        "item": [
            {
                "linkId": "a",
                "item": [{"linkId": "b", "answer": [{"valueBoolean": True, "item": [{"linkId": "c"}]}]}],
            }
        ],
    }
    assert run("repeat(item | answer.item).linkId", focus=response) == ["a", "b", "c"]


def test_union_removes_equal_elements_and_keeps_distinct_resources():
    assert run("(entry.resource.ofType(Condition) | entry.resource.ofType(Condition)).count()") == [2]
    coded = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationStatement",
                    "id": f"m{i}",
                    "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "N02BE01"}]},
                }
            }
            for i in range(3)
        ],
    }
    assert run("entry.resource.medication.ofType(CodeableConcept) | {}", focus=coded) == [
        {"coding": [{"system": ATC, "code": "N02BE01"}]}
    ]


def test_variables_are_collections_and_unary_minus_does_not_change_them():
    scope = Scope.of({"n": [3], "patient": BUNDLE["entry"][0]["resource"]})
    assert run("-%n", variables=scope) == [-3]
    assert run("%n", variables=scope) == [3]
    assert run("%patient.birthDate", variables=scope) == ["1960-03-02"]


def test_an_undefined_variable_is_an_evaluation_error():
    with pytest.raises(FHIRPathError, match="%nope is not defined"):
        run("%nope")


def test_vs_and_ext_constants():
    assert run("%`vs-administrative-gender`") == ["http://hl7.org/fhir/ValueSet/administrative-gender"]
    assert run("%`ext-itemWeight`") == ["http://hl7.org/fhir/StructureDefinition/itemWeight"]


# -- terminology functions --------------------------------------------------------------------------


def test_member_of_takes_codeable_concepts_codings_codes_and_strings():
    assert run("entry.resource.ofType(Condition).code.memberOf('http://x/lbp')") == [True, False]
    assert run("entry.resource.ofType(Condition).code.coding.memberOf('http://x/lbp')") == [True, False]
    assert run(
        "entry.resource.ofType(MedicationStatement).medication.ofType(CodeableConcept).memberOf('http://x/steroids')"
    ) == [True]
    patient = {"resourceType": "Patient", "gender": "female"}
    assert run("gender.memberOf('http://x/gender')", focus=patient) == [True]
    assert run("'M54.51'.memberOf('http://x/lbp')") == [True]
    assert run("{}.memberOf('http://x/lbp')") == []


def test_member_of_an_unknown_valueset_is_an_error():
    with pytest.raises(FHIRPathError, match="not loaded"):
        run("entry.resource.ofType(Condition).code.memberOf('http://x/unknown')")


def test_resolve_finds_resources_of_the_record():
    env = make_environment(TODAY, references={"Patient/p1": BUNDLE["entry"][0]["resource"]})
    observation = {"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}
    assert run("subject.resolve().birthDate", focus=observation, env=env) == ["1960-03-02"]


def test_weight_reads_the_item_weight_of_a_coding():
    env = ENV.with_(weight_by_code={("s", "a"): Decimal("2.5")})
    coding = {"resourceType": "Parameters", "parameter": [{"valueCoding": {"system": "s", "code": "a"}}]}
    assert run("parameter.value.weight()", focus=coding, env=env) == [2.5]


def test_singleton_boolean_for_conditions():
    assert singleton_boolean(evaluate(compile_expression("true"), None, None, ENV)) is True
    assert singleton_boolean([]) is None
    with pytest.raises(FHIRPathError):
        singleton_boolean(evaluate(compile_expression("'yes'"), None, None, ENV))
    with pytest.raises(FHIRPathError):
        singleton_boolean(evaluate(compile_expression("true | false"), None, None, ENV))


def test_memoised_subexpressions_are_shared_within_a_scope_only():
    compiled = compile_expression("%n.select($this + 1)")
    first = Scope.of({"n": [1]})
    second = Scope.of({"n": [10]})
    assert to_json(evaluate(compiled, None, first, ENV)) == [2]
    assert to_json(evaluate(compiled, None, second, ENV)) == [11]
    assert to_json(evaluate(compiled, None, first, ENV)) == [2]


def test_evaluation_is_safe_across_threads_with_different_days():
    compiled = compile_expression("today() - 1 day")
    results: dict[int, list] = {}

    def work(day: int) -> None:
        env = make_environment(date(2025, 1, day))
        for _ in range(50):
            results[day] = to_json(evaluate(compiled, None, None, env))

    threads = [threading.Thread(target=work, args=(d,)) for d in range(2, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {d: [date(2025, 1, d - 1).isoformat()] for d in range(2, 10)}


# -- the engine agrees with fhirpathpy where fhirpathpy is right ------------------------------------

REFERENCE_EXPRESSIONS = [
    "entry.resource.ofType(Condition).code.coding.code",
    "entry.resource.ofType(Condition).where(onset.ofType(dateTime).exists()).id",
    "entry.resource.ofType(Observation).where(status = 'final' and value.ofType(integer) > 5).id",
    "entry.resource.ofType(Patient).name.where(family = 'Berg').given.first()",
    "entry.resource.ofType(Observation).select(effective.ofType(dateTime).toString().substring(0, 10))",
    "entry.resource.ofType(Observation).aggregate(iif($total.empty() or $this.id > $total.id, $this, $total)).id",
    "entry.resource.ofType(Condition).exists(code.text = 'Lumbago')",
    "entry.resource.count() > 3 and entry.resource.ofType(Patient).exists()",
    "iif(entry.resource.ofType(MedicationStatement).where(status = 'active').exists(), 'yes', 'no')",
    "entry.resource.ofType(Patient).birthDate.toString().substring(0, 4).toInteger() + 65",
    "entry.resource.ofType(Condition).code.coding.where(system.startsWith('urn:oid')).code.lower()",
    "(entry.resource.ofType(Condition).id | entry.resource.ofType(Patient).id).count()",
    "entry.resource.ofType(Observation).value.ofType(Quantity).unit",
    "entry.resource.ofType(Condition).onset.ofType(Period).start > @2020-01-01",
    "entry.resource.where(resourceType = 'Observation').code.coding.code.distinct()",
]


@pytest.mark.parametrize("expression", REFERENCE_EXPRESSIONS)
def test_results_match_fhirpathpy(expression):
    reference = fhirpathpy.evaluate(BUNDLE, expression, {}, models["r4"])
    normalised = [
        str(v) if type(v).__name__ == "FP_DateTime" else (float(v) if isinstance(v, Decimal) else v)
        for v in reference
    ]
    assert run(expression) == normalised


def test_a_scope_used_over_another_input_does_not_reuse_its_results():
    compiled = compile_expression("entry.resource.ofType(Condition).count()")
    scope = Scope.of({})
    empty = {"resourceType": "Bundle", "entry": []}
    assert to_json(evaluate(compiled, [BUNDLE], scope, ENV)) == [2]
    assert to_json(evaluate(compiled, [empty], scope, ENV)) == [0]
