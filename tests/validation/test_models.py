"""The R4B model layer: FHIRPath of model errors, held resources validated apart, R4-only content."""
from __future__ import annotations

from app.validation.models import SCHEMA_ONLY_TYPES, fhirpath, model_issues, split_resources


def _places(issues):
    return [(i.code, i.expression[0]) for i in issues]


def test_locations_become_fhirpath():
    assert fhirpath("Patient", ("name", 0, "_given", 1, "extension", 0, "url")) == \
        "Patient.name[0].given[1].extension[0].url"
    assert fhirpath("Bundle.entry[2].resource", ("birthDate__ext",)) == "Bundle.entry[2].resource.birthDate"
    assert fhirpath("Encounter", ("class", "code")) == "Encounter.class.code"
    assert fhirpath("Patient", ()) == "Patient"


def test_valid_resources_have_no_model_issues(patient, observation, transaction):
    for resource in (patient, observation, transaction):
        assert model_issues(resource, resource["resourceType"]) == []


def test_model_layer_reports_impossible_values(observation):
    observation["effectiveDateTime"] = "2024-02-30T10:00:00+01:00"
    observation["component"][0]["valueQuantity"]["value"] = "4.5kg"
    issues = model_issues(observation, "Observation")
    assert ("value", "Observation.effectiveDateTime") in _places(issues)
    assert ("value", "Observation.component[0].valueQuantity.value") in _places(issues)
    assert all(i.diagnostics.startswith("R4B model") for i in issues)


def test_model_layer_reports_unknown_and_missing_elements(observation):
    observation["shoeSize"] = 44
    del observation["code"]
    places = _places(model_issues(observation, "Observation"))
    assert ("structure", "Observation.shoeSize") in places
    assert ("required", "Observation.code") in places


def test_elements_r4_has_and_r4b_lacks_are_not_errors(patient):
    patient["extension"].append({"url": "http://example.org/meta", "valueMeta": {"versionId": "2"}})
    assert model_issues(patient, "Patient") == []


def test_no_break_space_in_a_code_is_not_a_pattern_error(observation):
    observation["code"]["coding"][0]["code"] = "CHEST\u00a0"
    assert model_issues(observation, "Observation") == []


def test_held_resources_are_validated_apart_with_their_path(transaction, patient):
    transaction["entry"][0]["resource"]["birthDate"] = "1962-13"
    patient["contained"][0]["active"] = "maybe"
    assert _places(model_issues(transaction, "Bundle")) == [("value", "Bundle.entry[0].resource.birthDate")]
    assert _places(model_issues(patient, "Patient")) == [("value", "Patient.contained[0].active")]


def test_split_resources_takes_out_every_held_resource():
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "a", "resource": {"resourceType": "Patient"}},
                      {"name": "b", "part": [{"name": "c", "resource": {"resourceType": "Observation"}}]}],
    }
    bundle = {
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [{"resource": parameters,
                   "response": {"status": "200", "outcome": {"resourceType": "OperationOutcome"}}}],
    }
    pieces = {where: shell for shell, where in split_resources(bundle, "Bundle")}
    assert sorted(pieces) == [
        "Bundle",
        "Bundle.entry[0].resource",
        "Bundle.entry[0].resource.parameter[0].resource",
        "Bundle.entry[0].resource.parameter[1].part[0].resource",
        "Bundle.entry[0].response.outcome",
    ]
    assert "resource" not in pieces["Bundle"]["entry"][0]
    assert "outcome" not in pieces["Bundle"]["entry"][0]["response"]
    assert "resource" not in pieces["Bundle.entry[0].resource"]["parameter"][0]
    assert "resource" in bundle["entry"][0]  # the input is left as it was


def test_schema_only_types_are_not_given_to_the_models(medicinal_product):
    assert {"MedicinalProduct", "MedicinalProductPackaged", "SubstanceSpecification",
            "EffectEvidenceSynthesis"} <= SCHEMA_ONLY_TYPES
    medicinal_product["name"][0]["productName"] = 400
    assert model_issues(medicinal_product, "MedicinalProduct") == []


def test_schema_only_types_inside_a_bundle_leave_the_rest_to_the_models(medicinal_product, patient):
    patient["birthDate"] = "1970-02-30"
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": medicinal_product}, {"resource": patient}]}
    assert _places(model_issues(bundle, "Bundle")) == [("value", "Bundle.entry[1].resource.birthDate")]


def test_a_number_where_the_models_expect_a_url_is_an_error_not_a_crash():
    from app.validation import validate_resource

    plan = {"resourceType": "PlanDefinition", "status": "draft", "relatedArtifact": [{"type": "citation", "url": 3}]}
    issues = validate_resource(plan, check_rules=True)
    assert ("value", "PlanDefinition.relatedArtifact[0].url") in [(i.code, e) for i in issues if i.is_error
                                                                   for e in i.expression]
