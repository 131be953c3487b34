"""build_definitions: constraints, bindings with systems, extensions and origin, from a package laid out as R4's."""
from __future__ import annotations

import gzip
import hashlib
import json

from app.validation import build_definitions

from .conftest import make_package

CORE = "http://hl7.org/fhir/StructureDefinition/"
RULE = {"key": "thg-1", "severity": "error", "human": "A thing needs a status or a part",
        "expression": "status.exists() or part.exists()", "source": CORE + "Thing"}
ELE = {"key": "ele-1", "severity": "error", "human": "All FHIR elements must have a @value or children",
       "expression": "hasValue() or (children().count() > id.count())", "source": CORE + "Element"}
STRUCTURE = {
    "resourceType": "StructureDefinition", "url": CORE + "Thing", "type": "Thing", "kind": "resource",
    "derivation": "specialization", "baseDefinition": CORE + "DomainResource",
    "snapshot": {"element": [
        {"id": "Thing", "path": "Thing", "constraint": [RULE]},
        {"id": "Thing.status", "path": "Thing.status", "type": [{"code": "CodeableConcept"}], "constraint": [ELE],
         "binding": {"strength": "required", "valueSet": "http://example.org/ValueSet/thing-status|4.0.1"}},
        {"id": "Thing.value[x]", "path": "Thing.value[x]", "type": [{"code": "string"}, {"code": "Quantity",
         "profile": [CORE + "SimpleQuantity"]}]},
        {"id": "Thing.part", "path": "Thing.part", "type": [{"code": "BackboneElement"}], "constraint": [ELE]},
        {"id": "Thing.part.part", "path": "Thing.part.part", "contentReference": "#Thing.part"},
    ]},
}
EXTENSION = {
    "resourceType": "StructureDefinition", "url": "http://example.org/ext/colour", "type": "Extension",
    "kind": "complex-type", "derivation": "constraint", "context": [{"type": "element", "expression": "Thing"}],
    "snapshot": {"element": [
        {"id": "Extension", "path": "Extension", "min": 0, "max": "1"},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1, "max": "1",
         "type": [{"code": "code"}]},
    ]},
}
FILES = {
    "package.json": {"name": "hl7.fhir.r4.examples", "version": "4.0.1"},
    "StructureDefinition-Thing.json": STRUCTURE,
    "StructureDefinition-colour.json": EXTENSION,
    "ValueSet-thing-status.json": {
        "resourceType": "ValueSet", "url": "http://example.org/ValueSet/thing-status",
        "compose": {"include": [{"system": "http://example.org/CodeSystem/thing-status"}]}},
    "CodeSystem-thing-status.json": {
        "resourceType": "CodeSystem", "url": "http://example.org/CodeSystem/thing-status", "content": "complete",
        "concept": [{"code": "active", "concept": [{"code": "paused"}]}]},
}


def test_build_extracts_what_the_rule_layer_needs(tmp_path):
    package = make_package(tmp_path, FILES)
    table = build_definitions.build(package)
    assert table["origin"]["version"] == "4.0.1"
    assert table["origin"]["sha256"] == hashlib.sha256(package.read_bytes()).hexdigest()
    constraints = {c[0]: c for c in table["constraints"]}
    assert constraints["thg-1"] == ["thg-1", "error", RULE["human"], RULE["expression"]]
    assert [table["constraints"][i][0] for i in table["elements"]["Thing"]] == ["thg-1"]
    assert table["contentReferences"] == {"Thing.part.part": "Thing.part"}
    assert table["choices"]["Thing"] == {"valueString": "value", "valueQuantity": "value"}
    assert table["types"]["Thing.value[x]"] == [["string", "Quantity"], "SimpleQuantity"]
    assert table["bases"]["Thing"] == "DomainResource"
    assert table["bindings"]["Thing.status"] == ["required", "http://example.org/ValueSet/thing-status|4.0.1"]
    assert table["valueSets"]["http://example.org/ValueSet/thing-status"] == {
        "http://example.org/CodeSystem/thing-status": ["active", "paused"]}
    assert table["extensions"]["http://example.org/ext/colour"] == {
        "context": [["element", "Thing"]], "min": 0, "max": "1", "value": ["code"], "valueMin": 1}


def test_written_file_is_deterministic(tmp_path):
    table = build_definitions.build(make_package(tmp_path, FILES))
    first = build_definitions.write(table, tmp_path / "a.json.gz")
    second = build_definitions.write(table, tmp_path / "b.json.gz")
    assert first == second
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()
    assert json.loads(gzip.decompress((tmp_path / "a.json.gz").read_bytes()))["origin"]["package"] == \
        "hl7.fhir.r4.examples"
