"""The shipped R4 JSON schema and its compilation: provenance, compile-once, same verdicts as jsonschema."""
from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest
from jsonschema import Draft6Validator

from app.validation import validate_resource, warm_up
from app.validation.compiler import (
    COMPLEX,
    SCHEMA_PATH,
    allows,
    compiled,
    definitions,
    element_paths,
    resource_types,
    schema,
)

from .conftest import errors, load

README = SCHEMA_PATH.parent / "README.md"


def test_the_shipped_schema_is_fhir_r4_4_0_1():
    loaded = schema()
    assert loaded["id"] == "http://hl7.org/fhir/json-schema/4.0"
    assert {"Patient", "MedicinalProduct", "MedicinalProductPackaged", "Bundle"} <= set(definitions())
    assert len(resource_types()) == 146
    assert "4.0.1" in definitions()["CapabilityStatement"]["properties"]["fhirVersion"]["enum"]
    assert "valueMeta" in definitions()["Extension"]["properties"]


def test_the_readme_states_the_hash_of_the_shipped_schema():
    digest = hashlib.sha256(gzip.decompress(Path(SCHEMA_PATH).read_bytes())).hexdigest()
    assert digest in README.read_text(encoding="utf-8")
    assert re.search(r"CC0", README.read_text(encoding="utf-8"))


def test_definitions_are_compiled_once_and_reused(patient):
    validate_resource(patient, check_model=False)
    schema_nodes = compiled().nodes
    before = dict(schema_nodes)
    for _ in range(3):
        validate_resource(patient, check_model=False)
    assert compiled().resource_node("Patient") is before["Patient"]
    assert schema_nodes == before


def test_warm_up_compiles_everything_reachable():
    warm_up(["Bundle"])
    assert "Bundle_Request" in compiled().nodes


def test_backbone_definitions_know_their_element_path():
    paths = element_paths()
    assert paths["Bundle_Request"] == "Bundle.entry.request"
    assert paths["Questionnaire_Item"] == "Questionnaire.item"
    assert paths["Timing_Repeat"] == "Timing.repeat"
    assert paths["Observation"] == "Observation"
    # reached first through the reuse CapabilityStatement.rest.operation (a contentReference)
    assert paths["CapabilityStatement_Operation"] == "CapabilityStatement.rest.resource.operation"


def test_reused_backbone_elements_keep_their_rules():
    statement = {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2024-03-01", "kind": "instance",
        "fhirVersion": "4.0.1", "format": ["json"],
        "rest": [{"mode": "server", "operation": [{"definition": "http://example.org/OperationDefinition/x"}]}],
    }
    expected = [("required", "CapabilityStatement.rest[0].operation[0].name")]
    assert errors(validate_resource(statement)) == expected


def test_allows_follows_the_r4_elements():
    assert allows("Patient", ("name", 0, "given"))
    assert allows("Patient", ("extension", 0, "valueMeta"))
    assert not allows("Patient", ("name", 0, "nickname"))
    assert not allows("NoSuchType", ("id",))


def test_every_primitive_may_carry_an_underscore_companion():
    node = compiled().resource_node("StructureDefinition")
    assert node.props["_baseDefinition"].kind == COMPLEX  # canonical: missing from the schema itself
    assert validate_resource({
        "resourceType": "StructureDefinition", "url": "http://example.org/sd", "name": "Sd",
        "status": "draft", "kind": "resource", "abstract": False, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "_baseDefinition": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
    }) == []


def test_patterns_on_numbers_apply_to_their_json_text(observation):
    observation["valueInteger"] = 7.5
    expected = [("value", "Observation.valueInteger")]
    assert errors(validate_resource(observation, check_model=False)) == expected
    observation["valueInteger"] = True
    assert errors(validate_resource(observation, check_model=False)) == expected
    observation["valueInteger"] = -3
    assert validate_resource(observation, check_model=False) == []


def test_a_no_break_space_is_text_not_whitespace(observation):
    observation["code"]["coding"][0]["code"] = "72514-3\u00a0"
    observation["code"]["text"] = "\u00a0Pain"
    assert validate_resource(observation) == []
    observation["code"]["coding"][0]["code"] = "72514-3 "
    assert errors(validate_resource(observation)) == [("value", "Observation.code.coding[0].code")]


# ------------------------------------------------------------------ same verdict as the jsonschema package

def _mutations():
    def patient(change):
        resource = load("patient")
        # the schema has no word for null placeholders in primitive arrays (test_walker covers them)
        resource["name"][0]["given"] = ["Anna"]
        del resource["name"][0]["_given"]
        change(resource)
        return resource

    def observation(change):
        resource = load("observation")
        change(resource)
        return resource

    def set_(path, value):
        def change(resource):
            target = resource
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
        return change

    def delete(path):
        def change(resource):
            target = resource
            for step in path[:-1]:
                target = target[step]
            del target[path[-1]]
        return change

    yield "valid patient", patient(lambda r: None), True
    yield "valid observation", observation(lambda r: None), True
    yield "birthDate as number", patient(set_(["birthDate"], 1970)), False
    yield "birthDate not a date", patient(set_(["birthDate"], "17-05-1970")), False
    yield "gender not in enum", patient(set_(["gender"], "f")), False
    yield "active as string", patient(set_(["active"], "true")), False
    yield "unknown element", patient(set_(["nickname"], "Annie")), False
    yield "unknown nested element", patient(set_(["name", 0, "prefixx"], ["Dr"])), False
    yield "single where array", patient(set_(["identifier"], {"value": "1"})), False
    yield "number in string array", patient(set_(["name", 0, "given", 0], 5)), False
    yield "narrative without div", patient(delete(["text", "div"])), False
    yield "bad key in _birthDate", patient(set_(["_birthDate", "value"], "x")), False
    yield "bad contained resource", patient(set_(["contained", 0, "alias"], "x")), False
    yield "reference as number", patient(set_(["managingOrganization", "reference"], 5)), False
    yield "extension url as number", patient(set_(["extension", 0, "url"], 5)), False
    yield "uri with space", patient(set_(["identifier", 0, "system"], "http://x y")), False
    yield "observation without code", observation(delete(["code"])), False
    yield "decimal as string", observation(set_(["component", 0, "valueQuantity", "value"], "4.5")), False
    yield "component without code", observation(delete(["component", 0, "code"])), False
    yield "instant without zone", observation(set_(["issued"], "2024-03-01T10:16:00")), False
    yield "dateTime with zone", observation(set_(["effectiveDateTime"], "2024-03-01T10:15:00Z")), True
    yield "code with inner double space", observation(set_(["component", 0, "valueQuantity", "comparator"],
                                                            "<  =")), False


@pytest.fixture(scope="module")
def jsonschema_validators():
    defs = definitions()
    return {t: Draft6Validator({"$ref": f"#/definitions/{t}", "definitions": defs})
            for t in ("Patient", "Observation")}


@pytest.mark.parametrize(("case", "resource", "valid"), list(_mutations()), ids=[m[0] for m in _mutations()])
def test_schema_layer_agrees_with_the_jsonschema_package(case, resource, valid, jsonschema_validators):
    reference_verdict = jsonschema_validators[resource["resourceType"]].is_valid(resource)
    ours = not errors(validate_resource(resource, check_model=False))
    assert reference_verdict is valid, case
    assert ours is valid, case


def test_where_the_schema_is_silent_the_fhir_json_rules_decide(jsonschema_validators):
    """Cases the raw schema accepts (it never says `type: object`, has no cardinality for primitives,
    no choice groups) but FHIR JSON forbids: https://hl7.org/fhir/R4/json.html."""
    base = load("observation")
    cases = {
        "Observation.code": dict(base, code=[{"text": "pain"}]),
        "Observation.subject": dict(base, subject="Patient/1"),
        "Observation.category": dict(base, category=[]),
        "Observation.valueString": dict(base, valueString="seven"),
        "Observation.status": {k: v for k, v in base.items() if k != "status"},
        "Observation.referenceRange[0].low": dict(base, referenceRange=[{"low": {}}]),
    }
    validator = jsonschema_validators["Observation"]
    for expression, resource in cases.items():
        assert validator.is_valid(resource), expression
        assert [e for _, e in errors(validate_resource(resource, check_model=False))] == [expression]


def test_where_the_schema_is_too_strict_fhir_json_decides(jsonschema_validators):
    """Null placeholders beside `_x` and `_x` of canonical elements are FHIR JSON; the schema rejects them."""
    patient = load("patient")
    assert patient["name"][0]["given"][1] is None
    assert not jsonschema_validators["Patient"].is_valid(patient)
    assert validate_resource(patient) == []
