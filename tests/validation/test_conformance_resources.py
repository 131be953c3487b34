"""Conformance resources: core invariants (sdf, opd, csd, spd, cpb) and the rules of the spec text."""
from __future__ import annotations

from app.validation import validate_resource

NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'}


def issue_places(resource, severity="error"):
    return {(i.text.split(":", 1)[0] if i.code == "invariant" else i.code, e)
            for i in validate_resource(resource, check_rules=True) if i.severity == severity for e in i.expression}


def code_system(**changes):
    resource = {"resourceType": "CodeSystem", "text": NARRATIVE, "url": "http://example.org/cs", "name": "Cs",
                "status": "draft", "content": "complete", "property": [{"code": "weight", "type": "decimal"}],
                "concept": [{"code": "a", "property": [{"code": "weight", "valueDecimal": 1}]}]}
    resource.update(changes)
    return resource


def test_code_system_rules():
    assert issue_places(code_system()) == set()
    assert ("business-rule", "CodeSystem.concept[0].property[0].code") in issue_places(code_system(property=[
        {"code": "score", "type": "decimal"}]))
    assert ("business-rule", "CodeSystem.concept") in issue_places(code_system(content="not-present"))
    duplicate = code_system(concept=[{"code": "a"}, {"code": "a"}])
    assert ("csd-1", "CodeSystem") in issue_places(duplicate)


def test_search_parameter_expression_must_be_fhirpath_and_spd_2():
    parameter = {"resourceType": "SearchParameter", "text": NARRATIVE, "url": "http://example.org/sp",
                 "name": "pain", "status": "draft", "description": "d", "code": "pain", "base": ["Observation"],
                 "type": "token", "expression": "Observation.code"}
    assert issue_places(parameter) == set()
    parameter["expression"] = "Observation.code.where("
    assert ("invalid", "SearchParameter.expression") in issue_places(parameter)
    parameter["expression"] = "Observation.code"
    parameter["chain"] = ["name"]
    assert ("spd-2", "SearchParameter") in issue_places(parameter)


def test_operation_definition_parameters():
    operation = {"resourceType": "OperationDefinition", "text": NARRATIVE, "name": "Op", "status": "draft",
                 "kind": "operation", "code": "op", "system": False, "type": True, "instance": False,
                 "parameter": [{"name": "a", "use": "in", "min": 2, "max": "1", "type": "string"},
                               {"name": "b", "use": "in", "min": 0, "max": "1"}]}
    found = issue_places(operation)
    assert ("business-rule", "OperationDefinition.parameter[0].max") in found
    assert ("opd-1", "OperationDefinition.parameter[1]") in found


def test_capability_statement_invariants():
    statement = {"resourceType": "CapabilityStatement", "text": NARRATIVE, "status": "active",
                 "date": "2024-03-01", "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
                 "implementation": {"description": "server"},
                 "rest": [{"mode": "server", "resource": [{"type": "Patient"}, {"type": "Patient"}]}]}
    assert ("cpb-9", "CapabilityStatement.rest[0]") in issue_places(statement)
    del statement["implementation"]
    assert ("cpb-14", "CapabilityStatement") in issue_places(statement)


def test_structure_definition_invariants():
    sd = {"resourceType": "StructureDefinition", "text": NARRATIVE, "url": "http://example.org/sd", "name": "Sd",
          "status": "draft", "kind": "resource", "abstract": False, "type": "Patient",
          "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
          "differential": {"element": [{"id": "Patient", "path": "Patient"},
                                       {"id": "Patient", "path": "Patient.name", "min": 1}]}}
    assert ("sdf-17", "StructureDefinition") in issue_places(sd)
