"""Extensions: core definitions (context, value type, cardinality, sub-extensions) and unknown URLs."""
from __future__ import annotations

from app.validation import validate_resource
from app.validation.extensions import DOMAINS_SETTING, trusted_domains

NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'}
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
MAIDEN_NAME = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
NATIONALITY = "http://hl7.org/fhir/StructureDefinition/patient-nationality"


def findings(resource):
    return [(i.severity, i.expression[0], i.text) for i in validate_resource(resource, check_rules=True)
            if i.expression and ".extension" in i.expression[0] or "Extension" in i.text]


def patient(*extensions, **more):
    resource = {"resourceType": "Patient", "text": NARRATIVE, **more}
    if extensions:
        resource["extension"] = list(extensions)
    return resource


def test_a_core_extension_used_as_defined_passes():
    assert findings(patient({"url": BIRTH_PLACE, "valueAddress": {"city": "Umeå"}},
                            {"url": NATIONALITY, "extension": [{"url": "code",
                                                                "valueCodeableConcept": {"text": "SE"}}]})) == []


def test_wrong_value_type_is_an_error():
    [(severity, where, text)] = findings(patient({"url": BIRTH_PLACE, "valueString": "Umeå"}))
    assert (severity, where) == ("error", "Patient.extension[0]")
    assert "takes a value of type Address, not string" in text


def test_a_value_on_a_complex_extension_and_an_undefined_sub_extension():
    [(severity, _, text)] = findings(patient({"url": NATIONALITY, "valueString": "SE"}))
    assert severity == "error" and "complex extension" in text
    found = findings(patient({"url": NATIONALITY, "extension": [{"url": "country", "valueString": "SE"}]}))
    assert [(s, w) for s, w, _ in found] == [("warning", "Patient.extension[0].extension[0]")]


def test_cardinality_beyond_the_definition_is_an_error():
    found = findings(patient({"url": MAIDEN_NAME, "valueString": "A"}, {"url": MAIDEN_NAME, "valueString": "B"}))
    assert [(s, w) for s, w, _ in found] == [("error", "Patient.extension[1]")]
    assert "at most 1" in found[0][2]


def test_wrong_context_is_reported():
    observation = {"resourceType": "Observation", "text": NARRATIVE, "status": "final", "code": {"text": "x"},
                   "extension": [{"url": MAIDEN_NAME, "valueString": "A"}]}
    [(severity, where, text)] = findings(observation)
    assert (severity, where) == ("warning", "Observation.extension[0]")
    assert "not allowed here: its context is Patient" in text


def test_extension_on_a_primitive_is_checked_against_the_primitive_element():
    birth_time = {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                  "valueDateTime": "1970-01-01T10:00:00+01:00"}
    assert findings(patient(birthDate="1970-01-01", _birthDate={"extension": [birth_time]})) == []
    del birth_time["valueDateTime"]
    birth_time["valueString"] = "ten"
    found = findings(patient(birthDate="1970-01-01", _birthDate={"extension": [birth_time]}))
    assert [(s, w) for s, w, _ in found] == [("error", "Patient.birthDate.extension[0]")]


def test_unknown_extensions_follow_the_hl7_validator():
    found = findings(patient({"url": "http://unknown.example.net/ext", "valueString": "x"}))
    assert [(s, w) for s, w, _ in found] == [("error", "Patient.extension[0]")]
    assert "could not be found so is not allowed here" in found[0][2]
    found = findings(patient({"url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/x", "valueString": "x"}))
    assert [s for s, _, _ in found] == ["warning"]
    modifier = {"resourceType": "Patient", "text": NARRATIVE,
                "modifierExtension": [{"url": "http://unknown.example.net/mod", "valueBoolean": True}]}
    issues = validate_resource(modifier, check_rules=True)
    assert [(i.severity, i.expression) for i in issues if "modifier" in i.text] == [
        ("error", ["Patient.modifierExtension[0]"])]


def test_more_extension_domains_can_be_trusted(monkeypatch):
    synthea = patient({"url": "http://synthetichealth.github.io/synthea/disability-adjusted-life-years",
                       "valueDecimal": 0.5})
    monkeypatch.setenv(DOMAINS_SETTING, "http://synthetichealth.github.io/synthea/")
    trusted_domains.cache_clear()
    try:
        assert [s for s, _, _ in findings(synthea)] == ["warning"]
        monkeypatch.setenv(DOMAINS_SETTING, "any")
        trusted_domains.cache_clear()
        assert [s for s, _, _ in findings(patient({"url": "http://x.example.net/e", "valueString": "x"}))] == [
            "warning"]
    finally:
        monkeypatch.delenv(DOMAINS_SETTING)
        trusted_domains.cache_clear()
    assert [s for s, _, _ in findings(synthea)] == ["error"]
