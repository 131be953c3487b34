"""The invariant layer: core constraints by key and location, warnings, corrections, native ele-1/ext-1."""
from __future__ import annotations

import pytest

from app.validation import fhirpath_adapter as fp
from app.validation import validate_at_level, validate_resource
from app.validation.definitions import core
from app.validation.invariants import CORRECTIONS, DEVIATIONS, EXCLUDED, NATIVE, excluded_invariants

NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'}


def rule_findings(resource):
    """(severity, key, expression) of every invariant issue."""
    issues = validate_resource(resource, check_rules=True)
    return {(i.severity, i.text.split(":", 1)[0], e) for i in issues if i.code == "invariant" for e in i.expression}


def risk(probability):
    return {"resourceType": "RiskAssessment", "text": NARRATIVE, "status": "final",
            "subject": {"reference": "Patient/p1"}, "prediction": [{"probabilityDecimal": probability}]}


def test_ras_2_is_reported_at_the_prediction_with_key_and_expression():
    issues = validate_resource(risk(150), check_rules=True)
    found = [i for i in issues if i.text.startswith("ras-2:")]
    assert [(i.severity, i.expression) for i in found] == [("error", ["RiskAssessment.prediction[0]"])]
    assert found[0].diagnostics.startswith("ras-2 (RiskAssessment.prediction): probability is decimal implies")
    assert not [i for i in validate_resource(risk(40), check_rules=True) if i.is_error]


def test_period_of_a_data_type_gets_per_1_wherever_it_is_used():
    encounter = {"resourceType": "Encounter", "text": NARRATIVE, "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                 "period": {"start": "2024-03-02", "end": "2024-03-01"}}
    assert ("error", "per-1", "Encounter.period") in rule_findings(encounter)
    encounter["period"]["end"] = "2024-03-03"
    assert not [f for f in rule_findings(encounter) if f[0] == "error"]


def test_nested_questionnaire_items_keep_the_item_invariants():
    questionnaire = {"resourceType": "Questionnaire", "text": NARRATIVE, "status": "draft",
                     "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "group"}]}]}
    assert ("error", "que-1", "Questionnaire.item[0].item[0]") in rule_findings(questionnaire)
    questionnaire["item"][0]["item"][0] = {"linkId": "1", "type": "string"}
    found = rule_findings(questionnaire)
    assert ("error", "que-2", "Questionnaire") in found
    assert ("error", "que-1", "Questionnaire.item[0].item[0]") not in found


def test_warning_constraints_are_warnings():
    patient = {"resourceType": "Patient"}
    assert ("warning", "dom-6", "Patient") in rule_findings(patient)
    patient["text"] = NARRATIVE
    assert ("warning", "dom-6", "Patient") not in rule_findings(patient)


def test_dom_3_uses_the_corrected_expression_and_reports_unreferenced_contained_resources():
    assert "dom-3" in CORRECTIONS
    patient = {"resourceType": "Patient", "text": NARRATIVE,
               "contained": [{"resourceType": "Organization", "id": "org", "name": "Clinic"}],
               "managingOrganization": {"reference": "#org"}}
    issues = validate_resource(patient, check_rules=True)
    assert not [i for i in issues if i.text.startswith("dom-3") or i.code == "processing"]
    del patient["managingOrganization"]
    assert ("error", "dom-3", "Patient") in rule_findings(patient)


def test_sdf_4_deviation_spares_logical_models_only():
    assert "sdf-4" in DEVIATIONS
    sd = {"resourceType": "StructureDefinition", "text": NARRATIVE, "url": "http://example.org/sd", "name": "Sd",
          "status": "draft", "kind": "logical", "abstract": False, "type": "Sd"}
    assert not [f for f in rule_findings(sd) if f[1] == "sdf-4"]
    sd["kind"] = "resource"
    assert ("error", "sdf-4", "StructureDefinition") in rule_findings(sd)


def test_ele_1_on_a_primitive_without_value_or_extension_and_an_element_with_only_an_id():
    patient = {"resourceType": "Patient", "text": NARRATIVE, "_birthDate": {"id": "b"},
               "maritalStatus": {"id": "m"}}
    found = rule_findings(patient)
    assert ("error", "ele-1", "Patient.birthDate") in found
    assert ("error", "ele-1", "Patient.maritalStatus") in found
    patient["_birthDate"]["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                           "valueCode": "unknown"}]
    patient["maritalStatus"]["text"] = "Married"
    assert not [f for f in rule_findings(patient) if f[1] == "ele-1"]


def test_ext_1_an_extension_has_a_value_or_sub_extensions_not_both():
    patient = {"resourceType": "Patient", "text": NARRATIVE, "extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-nationality", "valueString": "SE",
        "extension": [{"url": "code", "valueCodeableConcept": {"text": "Sweden"}}]}]}
    assert ("error", "ext-1", "Patient.extension[0]") in rule_findings(patient)
    del patient["extension"][0]["valueString"]
    assert not [f for f in rule_findings(patient) if f[1] == "ext-1"]


@pytest.mark.parametrize("key", ["ele-1", "ext-1"])
@pytest.mark.parametrize("data, type_name", [
    ({"id": "a"}, "CodeableConcept"),
    ({"text": "x"}, "CodeableConcept"),
    ({"url": "http://example.org/x", "valueString": "v"}, "Extension"),
    ({"url": "http://example.org/x"}, "Extension"),
    ({"url": "http://example.org/x", "valueString": "v", "extension": [{"url": "a", "valueString": "b"}]},
     "Extension"),
])
def test_native_ele_1_and_ext_1_agree_with_the_engine(key, data, type_name):
    defs = core()
    constraint = next(c for c in defs.constraints if c[0] == key)
    invariant = fp.compile_invariant(*constraint)
    node = fp.Node(data, type_name, type_name)
    engine = fp.evaluate(invariant, node, node, node, fp.environment()) is not False
    if key == "ext-1" and type_name != "Extension":
        return
    patient = {"resourceType": "Patient", "text": NARRATIVE}
    if type_name == "Extension":
        patient["extension"] = [data]
        place = "Patient.extension[0]"
    else:
        patient["maritalStatus"] = data
        place = "Patient.maritalStatus"
    native = ("error", key, place) not in rule_findings(patient)
    assert native == engine


def test_every_core_invariant_is_evaluated_or_listed_with_a_reason():
    assert NATIVE >= {"ele-1", "ext-1"}
    assert excluded_invariants() == EXCLUDED
    assert all(reason for reason in EXCLUDED.values())


def test_write_level_does_not_run_the_rule_layer():
    assert validate_at_level(risk(150), "write") == []
    assert any(i.text.startswith("ras-2") for i in validate_at_level(risk(150), "full"))


def test_malformed_content_is_reported_not_raised():
    condition = {"resourceType": "Condition", "text": NARRATIVE, "subject": {"reference": "Patient/p1"},
                 "clinicalStatus": {"coding": True}, "extension": [{"url": ["not", "a", "string"]}]}
    issues = validate_resource(condition, check_rules=True)
    places = {(i.code, e) for i in issues if i.is_error for e in i.expression}
    assert ("value", "Condition.clinicalStatus.coding") in places or ("structure", "Condition.clinicalStatus.coding") \
        in places


def _encounter():
    return {"resourceType": "Encounter", "text": NARRATIVE, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": "2024-03-01", "end": "2024-03-02"}}


def test_an_excluded_invariant_is_reported_where_it_applies_not_skipped(monkeypatch):
    from app.validation import invariants

    monkeypatch.setitem(invariants.EXCLUDED, "per-1", "needs an engine feature")
    monkeypatch.setattr(invariants, "_rules_cache", {})
    issues = validate_resource(_encounter(), check_rules=True)
    assert [(i.severity, i.expression) for i in issues if i.text.startswith("per-1")] == [
        ("information", ["Encounter.period"])]
    assert "needs an engine feature" in next(i.text for i in issues if i.text.startswith("per-1"))


def test_an_evaluation_error_is_a_warning_naming_the_key(monkeypatch):
    from app.validation import invariants

    monkeypatch.setitem(invariants.CORRECTIONS, "per-1", ("(start | end).single().exists()", "test"))
    monkeypatch.setattr(invariants, "_rules_cache", {})
    issues = validate_resource(_encounter(), check_rules=True)
    found = [i for i in issues if i.text.startswith("per-1")]
    assert [(i.severity, i.code, i.expression) for i in found] == [("warning", "processing", ["Encounter.period"])]


def test_que_7_uses_the_corrected_type_name():
    assert "que-7" in CORRECTIONS
    questionnaire = {"resourceType": "Questionnaire", "text": NARRATIVE, "status": "draft", "item": [
        {"linkId": "1", "type": "boolean"},
        {"linkId": "2", "type": "string",
         "enableWhen": [{"question": "1", "operator": "exists", "answerBoolean": True}]}]}
    assert not [f for f in rule_findings(questionnaire) if f[1] == "que-7"]
    questionnaire["item"][1]["enableWhen"][0] = {"question": "1", "operator": "exists", "answerString": "yes"}
    assert ("error", "que-7", "Questionnaire.item[1].enableWhen[0]") in rule_findings(questionnaire)
