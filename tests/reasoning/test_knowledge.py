"""KnowledgeBase: every FHIRPath compiled at load, refused artifacts, canonical resolution, versions, terminology."""

from __future__ import annotations

import copy
import threading

import pytest

from app.errors import FHIRError
from app.reasoning.knowledge import KnowledgeBase

from .conftest import B, load


def _refused(kb: KnowledgeBase, resource: dict) -> FHIRError:
    with pytest.raises(FHIRError) as caught:
        kb.add(resource)
    return caught.value


def test_add_compiles_every_expression_of_an_artifact(kb):
    artifact = kb.artifact(f"{B}/PlanDefinition/test-rules")
    assert "PlanDefinition.action[0].condition[0].expression.expression" in artifact.expressions
    assert "PlanDefinition.action[0].dynamicValue[0].expression.expression" in artifact.expressions
    assert "PlanDefinition.action[0].action[0].condition[0].expression.expression" in artifact.expressions
    questionnaire = kb.artifact(f"{B}/Questionnaire/test-score")
    assert any(path.endswith("valueExpression.expression") for path in questionnaire.expressions)
    library = kb.artifact(f"{B}/Library/test-features")
    assert [f.name for f in library.features][:3] == ["conditions", "age_years", "lbp_conditions"]
    assert library.features[2].depends_on == {"conditions"}


@pytest.mark.parametrize(
    "name, mutate, path",
    [
        (
            "PlanDefinition-test-rules",
            lambda r: r["action"][1]["condition"][0]["expression"].update(expression="%lbp_over_6_weeks and"),
            "PlanDefinition.action[1].condition[0].expression.expression",
        ),
        (
            "PlanDefinition-test-rules",
            lambda r: r["action"][0]["dynamicValue"][0]["expression"].update(expression="'a' + nosuch()"),
            "PlanDefinition.action[0].dynamicValue[0].expression.expression",
        ),
        (
            "Questionnaire-test-score",
            lambda r: r["item"][-2]["extension"][0]["valueExpression"].update(
                expression="%answers.weight(.sum()"
            ),
            "Questionnaire.item[7].extension[0].valueExpression.expression",
        ),
        (
            "Library-test-features",
            lambda r: r["extension"][3]["valueExpression"].update(
                expression="%lbp_conditions.onset.ofType(dateTime"
            ),
            "Library.extension[3].valueExpression.expression",
        ),
        (
            "ActivityDefinition-test-mri",
            lambda r: r["dynamicValue"][0]["expression"].update(expression="))"),
            "ActivityDefinition.dynamicValue[0].expression.expression",
        ),
    ],
)
def test_an_artifact_whose_expression_does_not_compile_is_refused(kb, name, mutate, path):
    resource = load(name)
    mutate(resource)
    error = _refused(kb, resource)
    assert error.code == "invalid"
    issue = error.issues[0]
    assert issue.expression == [path]
    assert f"{resource['resourceType']}/{resource['id']}" in issue.text
    assert issue.diagnostics  # the expression itself
    # the loaded version is still the good one
    assert kb.get(resource["resourceType"], resource["id"]) == load(name)


def test_a_measure_criterion_is_compiled():
    measure = {
        "resourceType": "Measure",
        "id": "m",
        "url": f"{B}/Measure/m",
        "status": "active",
        "group": [{"population": [{"criteria": {"language": "text/fhirpath", "expression": "exists("}}]}],
    }
    error = _refused(KnowledgeBase(), measure)
    assert error.issues[0].expression == ["Measure.group[0].population[0].criteria.expression"]


def test_a_feature_reading_a_later_feature_is_refused(kb):
    library = load("Library-test-features")
    library["extension"][1]["valueExpression"]["expression"] = "%lbp_onset.exists()"
    error = _refused(kb, library)
    assert "reads %lbp_onset, which is declared later" in error.issues[0].text
    assert error.issues[0].expression == ["Library.extension[1].valueExpression.expression"]


def test_a_feature_reading_an_undefined_variable_is_refused(kb):
    library = load("Library-test-features")
    library["extension"][0]["valueExpression"]["expression"] = "%nowhere"
    assert "is not defined" in _refused(kb, library).issues[0].text


def test_feature_names_must_be_unique(kb):
    library = load("Library-test-features")
    library["extension"][1]["valueExpression"]["name"] = "conditions"
    assert "declared twice" in _refused(kb, library).issues[0].text


def test_a_dynamic_value_path_must_be_simple(kb):
    rules = load("PlanDefinition-test-rules")
    rules["action"][0]["dynamicValue"][0]["path"] = "description.where(x)"
    assert _refused(kb, rules).issues[0].expression == ["PlanDefinition.action[0].dynamicValue[0].path"]


def test_add_all_is_all_or_nothing_and_reports_every_problem():
    bad_rules = load("PlanDefinition-test-rules")
    bad_rules["action"][0]["condition"][0]["expression"]["expression"] = "(("
    bad_ad = load("ActivityDefinition-test-mri")
    bad_ad["dynamicValue"][0]["expression"]["expression"] = "x."
    kb = KnowledgeBase()
    with pytest.raises(FHIRError) as caught:
        kb.add_all([load("Library-test-features"), bad_rules, bad_ad])
    assert len(caught.value.issues) == 2
    assert kb.resources() == []


def test_resolve_by_canonical_and_type_id(kb):
    assert kb.resolve(f"{B}/PlanDefinition/test-rules")["id"] == "test-rules"
    assert kb.resolve(f"{B}/PlanDefinition/test-rules|0.1.0")["id"] == "test-rules"
    assert kb.resolve(f"{B}/PlanDefinition/test-rules|9.9") is None
    assert kb.resolve("PlanDefinition/test-rules")["id"] == "test-rules"
    assert kb.resolve(f"{B}/PlanDefinition/test-rules", "Library") is None
    assert kb.resolve("http://x/unknown") is None


def test_the_latest_version_wins():
    kb = KnowledgeBase()
    old = load("ActivityDefinition-test-advice")
    new = copy.deepcopy(old) | {"id": "test-advice-2", "version": "0.10.0", "title": "Newer"}
    older = copy.deepcopy(old) | {"id": "test-advice-3", "version": "0.2.0", "title": "Older"}
    kb.add_all([old, new, older])
    assert kb.resolve(f"{B}/ActivityDefinition/test-advice")["title"] == "Newer"
    assert kb.resolve(f"{B}/ActivityDefinition/test-advice|0.2.0")["title"] == "Older"
    kb.remove("ActivityDefinition", "test-advice-2")
    assert kb.resolve(f"{B}/ActivityDefinition/test-advice")["title"] == "Older"


def test_replacing_an_artifact_recompiles_it(kb):
    library = load("Library-test-features")
    library["extension"][1]["valueExpression"]["expression"] = "42"
    kb.add(library)
    assert kb.artifact(f"{B}/Library/test-features").features[1].expression.text == "42"


def test_remove(kb):
    assert kb.remove("PlanDefinition", "test-rules") is True
    assert kb.resolve(f"{B}/PlanDefinition/test-rules") is None
    assert kb.remove("PlanDefinition", "test-rules") is False


def test_the_terminology_index_follows_the_valuesets(kb):
    url = f"{B}/ValueSet/test-mri"
    assert kb.terminology.contains(url, "http://loinc.org", "24968-0")
    vs = load("ValueSet-test-mri")
    vs["compose"]["include"][0]["concept"].append({"code": "30746-2"})
    kb.add(vs)
    assert kb.terminology.contains(url, "http://loinc.org", "30746-2")
    kb.remove("ValueSet", "test-mri")
    assert not kb.terminology.has_valueset(url)


def test_a_valueset_with_an_unsupported_filter_is_refused(kb):
    vs = {
        "resourceType": "ValueSet",
        "id": "bad",
        "url": f"{B}/ValueSet/bad",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": "http://snomed.info/sct",
                    "filter": [{"property": "concept", "op": "descendent-of", "value": "1"}],
                }
            ]
        },
    }
    assert _refused(kb, vs).code == "not-supported"


def test_check_reports_what_loading_order_allows(kb):
    assert kb.check() == []
    rules = load("PlanDefinition-test-rules")
    rules["action"][0]["condition"][0]["expression"]["expression"] = "%not_a_feature = true"
    rules["action"][1]["action"][0]["definitionCanonical"] = f"{B}/ActivityDefinition/missing"
    kb.add(rules)
    texts = [i.text for i in kb.check()]
    assert any("%not_a_feature" in t and "does not define" in t for t in texts)
    assert any("ActivityDefinition/missing" in t for t in texts)


def test_readers_see_a_consistent_snapshot_while_a_writer_replaces(kb):
    library = load("Library-test-features")
    errors: list[Exception] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                artifact = kb.artifact(f"{B}/Library/test-features")
                assert artifact is not None and len(artifact.features) == len(library["extension"])
                assert kb.terminology.has_valueset(f"{B}/ValueSet/test-lbp")
            except Exception as exc:  # collected for the assertion below
                errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for r in readers:
        r.start()
    for n in range(30):
        changed = copy.deepcopy(library)
        changed["extension"][1]["valueExpression"]["expression"] = str(n)
        kb.add(changed)
        kb.add(load("ValueSet-test-lbp"))
    stop.set()
    for r in readers:
        r.join()
    assert errors == []
