"""build_bindings: the table of required bindings, required elements and choices, and the shipped table."""
from __future__ import annotations

import json

from app.validation import build_bindings
from app.validation.compiler import core_rules

from .conftest import make_package


def _element(path, types, minimum=0, binding=None):
    element = {"path": path, "min": minimum, "max": "1", "type": [{"code": t} for t in types]}
    if binding:
        element["binding"] = {"strength": binding[0], "valueSet": binding[1]}
    return element


STRUCTURE = {
    "resourceType": "StructureDefinition", "type": "Thing", "kind": "resource",
    "derivation": "specialization",
    "snapshot": {"element": [
        {"path": "Thing", "min": 0, "max": "*"},
        _element("Thing.status", ["code"], 1, ("required", "http://example.org/ValueSet/thing-status|4.0.1")),
        _element("Thing.mood", ["code"], 0, ("required", "http://example.org/ValueSet/mood")),
        _element("Thing.colour", ["code"], 0, ("extensible", "http://example.org/ValueSet/colour")),
        _element("Thing.value[x]", ["string", "dateTime"], 1),
        _element("Thing.part.kind", ["code"], 1, ("required", "http://example.org/ValueSet/part-kind")),
        {"path": "Thing.part.part", "min": 0, "max": "*", "contentReference": "#Thing.part"},
    ]},
}
PROFILE = dict(STRUCTURE, type="Thing", derivation="constraint")
FILES = {
    "StructureDefinition-Thing.json": STRUCTURE,
    "StructureDefinition-thing-profile.json": PROFILE,
    "ValueSet-thing-status.json": {
        "resourceType": "ValueSet", "url": "http://example.org/ValueSet/thing-status",
        "compose": {"include": [{"system": "http://example.org/CodeSystem/thing-status"}],
                    "exclude": [{"system": "http://example.org/CodeSystem/thing-status",
                                 "concept": [{"code": "retired"}]}]}},
    "CodeSystem-thing-status.json": {
        "resourceType": "CodeSystem", "url": "http://example.org/CodeSystem/thing-status",
        "content": "complete",
        "concept": [{"code": "active", "concept": [{"code": "paused"}]}, {"code": "done"},
                    {"code": "retired"}]},
    "ValueSet-mood.json": {
        "resourceType": "ValueSet", "url": "http://example.org/ValueSet/mood",
        "compose": {"include": [{"system": "http://example.org/CodeSystem/mood",
                                 "filter": [{"property": "concept", "op": "is-a", "value": "x"}]}]}},
    "ValueSet-part-kind.json": {
        "resourceType": "ValueSet", "url": "http://example.org/ValueSet/part-kind",
        "compose": {"include": [{"system": "urn:ietf:bcp:47", "concept": [{"code": "en"}, {"code": "sv"}]}]}},
    "package.json": {"name": "example"},
}


def test_build_expands_required_bindings_from_the_package(tmp_path):
    table = build_bindings.build(make_package(tmp_path, FILES))
    assert table["valueSets"]["http://example.org/ValueSet/thing-status"] == ["active", "done", "paused"]
    assert table["valueSets"]["http://example.org/ValueSet/part-kind"] == ["en", "sv"]
    assert table["unexpandable"] == ["http://example.org/ValueSet/mood"]
    thing = table["elements"]["Thing"]
    assert thing["bindings"] == {"status": "http://example.org/ValueSet/thing-status"}
    assert thing["required"] == ["status", "value[x]"]
    assert thing["choices"] == {"value": ["valueString", "valueDateTime"]}
    assert table["elements"]["Thing.part"]["bindings"] == {"kind": "http://example.org/ValueSet/part-kind"}
    assert table["contentReferences"] == {"Thing.part.part": "Thing.part"}


def test_main_writes_the_table(tmp_path, capsys):
    output = tmp_path / "rules.json"
    assert build_bindings.main([str(make_package(tmp_path, FILES)), str(output)]) == 0
    assert json.loads(output.read_text())["elements"]["Thing"]["required"] == ["status", "value[x]"]
    assert "2 bound elements" in capsys.readouterr().out


def test_the_shipped_table_has_the_r4_status_codes():
    rules = core_rules()
    status = "http://hl7.org/fhir/ValueSet/observation-status"
    assert rules["elements"]["Observation"]["bindings"]["status"] == status
    assert rules["valueSets"][status] == [
        "amended", "cancelled", "corrected", "entered-in-error", "final", "preliminary", "registered",
        "unknown"]
    assert rules["elements"]["MedicationRequest"]["bindings"]["intent"].endswith("medicationrequest-intent")
    assert set(rules["valueSets"]["http://hl7.org/fhir/ValueSet/http-verb"]) == {
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}
    assert "status" in rules["elements"]["Observation"]["required"]
