"""validate_resource: the layers together, modes, profiles and levels."""
from __future__ import annotations

import pytest

from app.errors import Issue, operation_outcome
from app.validation import SCHEMA_ONLY_TYPES, validate_at_level, validate_resource

from .conftest import errors


@pytest.mark.parametrize("name", ["patient", "observation", "transaction", "medicinal_product"])
@pytest.mark.parametrize("level", ["write", "full"])
def test_valid_resources_have_no_issues(name, level, request):
    resource = request.getfixturevalue(name)
    assert validate_at_level(resource, level) == []


def test_issues_are_operation_outcome_issues_with_fhirpath(observation):
    observation["code"]["coding"][0]["system"] = 42
    issues = validate_resource(observation)
    assert all(isinstance(i, Issue) for i in issues)
    outcome = operation_outcome(issues)
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["expression"] == ["Observation.code.coding[0].system"]


def test_wrong_primitive_type_is_reported_at_the_element(patient):
    patient["birthDate"] = 19700517
    assert ("value", "Patient.birthDate") in errors(validate_resource(patient))


def test_unknown_element_is_reported(patient):
    patient["name"][0]["nickname"] = "Annie"
    assert errors(validate_resource(patient)) == [("structure", "Patient.name[0].nickname")]


def test_missing_required_elements_are_reported(observation):
    del observation["status"]
    del observation["code"]
    found = errors(validate_resource(observation))
    assert ("required", "Observation.status") in found
    assert ("required", "Observation.code") in found


def test_status_outside_its_required_binding_is_reported(observation):
    observation["status"] = "done"
    issues = validate_resource(observation)
    assert errors(issues) == [("code-invalid", "Observation.status")]
    assert "observation-status" in issues[0].text


def test_bad_resource_id_is_reported(patient):
    patient["id"] = "no spaces allowed"
    assert errors(validate_resource(patient)) == [("value", "Patient.id")]


def test_bad_reference_is_reported(observation):
    observation["subject"]["reference"] = "Patient/"
    assert errors(validate_resource(observation)) == [("value", "Observation.subject.reference")]


def test_bundle_entry_errors_carry_the_entry_path(transaction):
    transaction["entry"][2]["resource"]["status"] = "done"
    del transaction["entry"][1]["request"]
    found = errors(validate_resource(transaction))
    assert ("code-invalid", "Bundle.entry[2].resource.status") in found
    assert ("invariant", "Bundle.entry[1]") in found


def test_unknown_resource_type_is_reported_at_the_resource(transaction):
    transaction["entry"][0]["resource"]["resourceType"] = "Patientt"
    assert errors(validate_resource(transaction)) == [("not-supported", "Bundle.entry[0].resource")]
    assert errors(validate_resource({"resourceType": "Nope"})) == [("not-supported", "Resource")]


def test_a_resource_must_be_an_object_with_a_resource_type():
    assert errors(validate_resource([])) == [("structure", "Resource")]
    assert errors(validate_resource({"id": "x"})) == [("required", "Resource")]


# ------------------------------------------------------------------ layers

def test_without_the_schema_layer_only_own_checks_report(observation):
    observation["status"] = "done"
    observation["unknownThing"] = 1
    observation["valueInteger"] = "seven"
    found = errors(validate_resource(observation, check_schema=False, check_model=False))
    assert found == [("code-invalid", "Observation.status")]


def test_impossible_date_is_caught_by_the_model_layer_only(patient):
    patient["birthDate"] = "1970-02-30"
    assert validate_resource(patient, check_model=False) == []
    issues = validate_resource(patient)
    assert errors(issues) == [("value", "Patient.birthDate")]
    assert issues[0].diagnostics.startswith("R4B model")


def test_an_element_reported_by_the_schema_is_not_reported_again_by_the_model(patient):
    patient["birthDate"] = 19700517
    assert len(validate_resource(patient)) == 1


def test_medication_definition_types_are_validated_by_the_schema_only(medicinal_product, monkeypatch):
    assert "MedicinalProduct" in SCHEMA_ONLY_TYPES

    def no_model(resource):
        raise AssertionError(f"the R4B models were asked about {resource['resourceType']}")

    monkeypatch.setattr("app.validation.models.model_errors", no_model)
    assert validate_resource(medicinal_product) == []
    medicinal_product["name"][0]["productName"] = 400
    medicinal_product["domain"]["unknown"] = True
    found = errors(validate_resource(medicinal_product))
    assert ("value", "MedicinalProduct.name[0].productName") in found
    assert ("structure", "MedicinalProduct.domain.unknown") in found


def test_validation_level_off_does_not_look_at_the_resource():
    assert validate_at_level("not even a resource", "off") == []  # type: ignore[arg-type]


def test_validation_level_write_skips_the_models(patient, monkeypatch):
    monkeypatch.setattr("app.validation.models.model_errors", lambda r: pytest.fail("model layer ran"))
    assert validate_at_level(patient, "write") == []


# ------------------------------------------------------------------ bundles and conditional references

def test_conditional_reference_needs_a_transaction_or_batch(transaction):
    encounter = transaction["entry"][1]["resource"]
    found = errors(validate_resource(encounter))
    assert found == [("value", "Encounter.participant[0].individual.reference")]
    assert validate_resource(encounter, bundle_type="transaction") == []
    assert validate_resource(encounter, bundle_type="batch") == []
    transaction["type"] = "collection"
    for entry in transaction["entry"]:
        del entry["request"]
    assert errors(validate_resource(transaction)) == [
        ("value", "Bundle.entry[1].resource.participant[0].individual.reference")]


# ------------------------------------------------------------------ mode

def test_mode_create_needs_no_id(patient):
    del patient["id"]
    assert validate_resource(patient, mode="create") == []


def test_mode_update_needs_an_id(patient):
    del patient["id"]
    assert errors(validate_resource(patient, mode="update")) == [("required", "Patient.id")]


def test_mode_delete_checks_nothing_here():
    assert validate_resource({"resourceType": "Patient", "bogus": 1}, mode="delete") == []


def test_unknown_mode_is_not_supported(patient):
    issues = validate_resource(patient, mode="patch")
    assert errors(issues) == [("not-supported", "Parameters.parameter('mode')")]


# ------------------------------------------------------------------ profile

@pytest.mark.parametrize("profile", [
    "http://hl7.org/fhir/StructureDefinition/Patient",
    "http://hl7.org/fhir/StructureDefinition/Patient|4.0.1",
])
def test_the_base_profile_of_the_type_is_accepted(patient, profile):
    assert validate_resource(patient, profile=profile) == []
    assert validate_resource(patient, profile=profile, mode="profile") == []


@pytest.mark.parametrize("profile", [
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient",
    "http://hl7.org/fhir/StructureDefinition/Observation",
    "http://hl7.org/fhir/StructureDefinition/Patient|3.0.2",
])
def test_other_profiles_are_not_supported(patient, profile):
    issues = validate_resource(patient, profile=profile)
    assert [(i.severity, i.code, i.expression) for i in issues] == [
        ("error", "not-supported", ["Parameters.parameter('profile')"])]


def test_mode_profile_needs_a_profile(patient):
    expected = [("required", "Parameters.parameter('profile')")]
    assert errors(validate_resource(patient, mode="profile")) == expected


def test_absurdly_deep_nesting_is_refused_not_crashed():
    extension: dict = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(2000):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    issues = validate_resource({"resourceType": "Patient", "extension": [extension]}, check_model=False)
    assert errors(issues) == [("too-costly", "Patient")]
