"""The walk: FHIR JSON rules, FHIRPath expressions of nested and `_x` elements, contained resources."""
from __future__ import annotations

from app.validation import validate_resource

from .conftest import errors


def _found(resource):
    return errors(validate_resource(resource, check_model=False))


def test_underscore_companions_are_reported_as_their_element(patient):
    patient["name"][0]["_given"][1]["extension"][0]["url"] = 7
    patient["_birthDate"]["id"] = 5
    found = _found(patient)
    assert ("value", "Patient.name[0].given[1].extension[0].url") in found
    assert ("value", "Patient.birthDate.id") in found


def test_null_is_only_a_placeholder_beside_a_value_in_the_companion(patient):
    patient["name"][0]["_given"][1] = None
    assert _found(patient) == [("structure", "Patient.name[0].given[1]")]


def test_null_in_the_companion_needs_a_value_in_the_primitive_array(patient):
    patient["name"][0]["given"] = [None, None]
    patient["name"][0]["_given"] = [None, {"id": "g2"}]
    assert _found(patient) == [("structure", "Patient.name[0].given[0]")]


def test_only_the_element_extension_carries_a_primitive(patient):
    del patient["birthDate"]
    assert _found(patient) == []


def test_required_primitive_may_be_given_by_its_extension_only(observation):
    del observation["status"]
    observation["_status"] = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                             "valueCode": "unknown"}]}
    assert _found(observation) == []


def test_empty_arrays_and_objects_are_not_allowed(patient):
    patient["identifier"] = []
    patient["meta"] = {}
    found = _found(patient)
    assert ("structure", "Patient.identifier") in found
    assert ("structure", "Patient.meta") in found


def test_one_type_per_choice_element(patient):
    patient["multipleBirthInteger"] = 2
    assert _found(patient) == [("structure", "Patient.multipleBirthInteger")]


def test_complex_elements_must_be_objects(observation):
    observation["code"] = "pain"
    observation["category"] = {"text": "survey"}
    found = _found(observation)
    assert ("structure", "Observation.code") in found
    assert ("structure", "Observation.category") in found


def test_contained_resources_are_walked_with_their_path(patient):
    patient["contained"][0]["name"] = 12
    patient["contained"].append({"resourceType": "Practitioner", "id": "gp", "active": "yes"})
    found = _found(patient)
    assert ("value", "Patient.contained[0].name") in found
    assert ("value", "Patient.contained[1].active") in found


def test_local_reference_must_name_a_contained_resource(patient):
    patient["managingOrganization"]["reference"] = "#elsewhere"
    assert _found(patient) == [("value", "Patient.managingOrganization.reference")]


def test_contained_resources_may_refer_to_each_other_and_the_container(patient):
    patient["contained"].append({"resourceType": "Practitioner", "id": "gp",
                                 "extension": [{"url": "http://example.org/works-at",
                                                "valueReference": {"reference": "#clinic"}}]})
    patient["contained"][0]["partOf"] = {"reference": "#"}
    assert _found(patient) == []


def test_codes_of_required_bindings_in_data_types(observation):
    observation["component"][0]["valueQuantity"]["comparator"] = "~"
    observation["text"] = {"status": "made-up", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}
    found = _found(observation)
    assert ("code-invalid", "Observation.component[0].valueQuantity.comparator") in found
    assert ("code-invalid", "Observation.text.status") in found


def test_codes_of_required_bindings_in_backbone_elements(transaction):
    transaction["entry"][0]["request"]["method"] = "FETCH"
    assert _found(transaction) == [("code-invalid", "Bundle.entry[0].request.method")]
