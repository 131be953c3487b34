"""The project's own extensions: one StructureDefinition each among the artifacts, and the validator checks
their context, value type and cardinality as it checks core ones; `lbp validate` groups its warnings."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.cli import main
from app.knowledge.loader import register_shipped_extensions
from app.validation import validate_resource
from app.validation.extensions import extension_definition, register_extension_definitions

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("plandefinitions", "questionnaires", "valuesets")
BASE = "https://lbp-pathway.org/fhir/StructureDefinition/"
NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'}
SERVES_RULE = BASE + "serves-rule"
MEASURE_TARGET = BASE + "measure-target"
ASSUMPTION = BASE + "assumption"


def shipped_definitions() -> dict[str, dict]:
    out = {}
    for path in sorted((ROOT / "plandefinitions").glob("StructureDefinition-*.json")):
        sd = json.loads(path.read_text(encoding="utf-8"))
        out[sd["url"]] = sd
    return out


def used_project_extensions() -> set[str]:
    pattern = re.compile(r'"(' + re.escape(BASE) + r'[^"]+)"')
    return {m for folder in FOLDERS for path in (ROOT / folder).glob("*.json")
            for m in pattern.findall(path.read_text(encoding="utf-8"))
            if not path.name.startswith("StructureDefinition-")}


@pytest.fixture(autouse=True, scope="module")
def shipped():
    register_shipped_extensions([str(ROOT / f) for f in FOLDERS])


def test_every_project_extension_the_artifacts_use_has_a_definition():
    defined = set(shipped_definitions())
    assert used_project_extensions() - defined == set()
    assert defined - used_project_extensions() == set(), "a definition no artifact uses"


@pytest.mark.parametrize("url", sorted(shipped_definitions()))
def test_each_definition_is_a_valid_extension_definition(url):
    sd = shipped_definitions()[url]
    assert (sd["kind"], sd["type"], sd["derivation"]) == ("complex-type", "Extension", "constraint")
    assert sd["baseDefinition"] == "http://hl7.org/fhir/StructureDefinition/Extension"
    assert sd["context"] and sd["description"].strip()
    definition = extension_definition(sd)
    assert definition is not None and definition["value"], "one value type"
    issues = [(i.severity, i.expression, i.text) for i in validate_resource(sd, check_rules=True)
              if i.severity in ("error", "fatal", "warning")]
    assert issues == []


def library(*parameter_extensions, **more):
    return {"resourceType": "Library", "id": "x", "text": NARRATIVE, "status": "draft",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type",
                                 "code": "logic-library"}]},
            "parameter": [{"name": "f", "use": "out", "type": "boolean", "extension": list(parameter_extensions)}],
            **more}


def extension_findings(resource):
    return [(i.severity, i.expression[0] if i.expression else "", i.text)
            for i in validate_resource(resource, check_rules=True) if "lbp-pathway.org" in i.text]


def test_a_project_extension_used_as_defined_passes_without_a_warning():
    rule = {"system": "https://lbp-pathway.org/fhir/CodeSystem/lbp-rules", "code": "S1"}
    assert extension_findings(library({"url": SERVES_RULE, "valueCoding": rule},
                                      {"url": SERVES_RULE, "valueCoding": rule})) == []


def test_a_project_extension_with_the_wrong_value_type_is_an_error():
    [(severity, where, text)] = extension_findings(library({"url": SERVES_RULE, "valueString": "S1"}))
    assert (severity, where) == ("error", "Library.parameter[0].extension[0]")
    assert "takes a value of type Coding, not string" in text


def test_a_project_extension_out_of_its_context_is_reported():
    resource = library(extension=[{"url": SERVES_RULE, "valueCoding": {"code": "S1"}}])
    resource["parameter"][0].pop("extension")
    [(severity, where, text)] = extension_findings(resource)
    assert (severity, where) == ("warning", "Library.extension[0]")
    assert "not allowed here: its context is Library.parameter" in text


def test_a_project_extension_beyond_its_cardinality_is_an_error():
    measure = {"resourceType": "Measure", "id": "m", "text": NARRATIVE, "status": "draft",
               "group": [{"extension": [{"url": MEASURE_TARGET, "valueDecimal": 0.8},
                                        {"url": MEASURE_TARGET, "valueDecimal": 0.9}]}]}
    [(severity, where, text)] = extension_findings(measure)
    assert (severity, where) == ("error", "Measure.group[0].extension[1]")
    assert "at most 1" in text


def test_an_extension_on_a_primitive_is_checked_against_its_definition():
    resource = library()
    resource["_status"] = {"extension": [{"url": ASSUMPTION, "valueString": "drafted"}]}
    assert extension_findings(resource) == []
    resource["_status"] = {"extension": [{"url": ASSUMPTION, "valueInteger": 1}]}
    [(severity, _, text)] = extension_findings(resource)
    assert severity == "error" and "takes a value of type string, not integer" in text


def test_a_registered_differential_without_value_constraint_accepts_any_value():
    url = "https://example.org/fhir/StructureDefinition/any-value"
    sd = {"resourceType": "StructureDefinition", "url": url, "type": "Extension", "derivation": "constraint",
          "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
          "context": [{"type": "element", "expression": "Element"}],
          "differential": {"element": [{"id": "Extension", "path": "Extension", "max": "1"}]}}
    assert register_extension_definitions([sd]) == [url]
    resource = library(extension=[{"url": url, "valueInteger": 3}])
    assert [f for f in validate_resource(resource, check_rules=True) if url in f.text] == []


def test_lbp_validate_groups_warnings_and_lists_errors(tmp_path, capsys):
    unknown = "https://example.org/fhir/StructureDefinition/unknown-"
    patients = []
    for i in range(5):
        path = tmp_path / f"p{i}.json"
        path.write_text(json.dumps({"resourceType": "Patient", "text": NARRATIVE,
                                    "extension": [{"url": f"{unknown}a", "valueString": "x"}]}))
        patients.append(str(path))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceType": "Patient", "text": NARRATIVE, "birthDate": "1 Jan 1970"}))
    assert main(["validate", *patients, str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: error: Patient.birthDate" in out
    assert f"warning (5x): Unknown extension {unknown}a" in out
    assert out.count("Patient.extension[0]") == 3
    assert "… 2 more (--all-warnings lists every one)" in out
    assert "6 files, 1 errors, 5 warnings" in out
    assert main(["validate", "--all-warnings", *patients]) == 0
    out = capsys.readouterr().out
    assert out.count(f": warning: Unknown extension {unknown}a") == 5


def test_lbp_validate_reports_no_unknown_project_extension_in_the_artifacts(capsys):
    main(["validate", *(str(ROOT / f) for f in FOLDERS)])
    out = capsys.readouterr().out
    assert "Unknown extension https://lbp-pathway.org" not in out
    assert not re.search(r"The extension https://lbp-pathway\.org\S+ (is not allowed|takes|may appear)", out)
    assert re.search(r"\d+ files, 0 errors, \d+ warnings", out)


def test_an_extension_definition_written_to_the_server_is_checked_from_then_on(client):
    from tests.conftest import FHIR

    url = "https://lbp-pathway.org/fhir/StructureDefinition/written-later"
    sd = {"resourceType": "StructureDefinition", "id": "written-later", "text": NARRATIVE, "url": url,
          "name": "WrittenLater", "status": "draft", "kind": "complex-type", "abstract": False,
          "context": [{"type": "element", "expression": "Patient"}], "type": "Extension",
          "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension", "derivation": "constraint",
          "differential": {"element": [
              {"id": "Extension", "path": "Extension", "max": "1"},
              {"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
              {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "boolean"}]}]}}
    assert client.put("/fhir/StructureDefinition/written-later", json=sd, content_type=FHIR).status_code in (200, 201)
    patient = {"resourceType": "Patient", "text": NARRATIVE, "extension": [{"url": url, "valueString": "yes"}]}
    r = client.post("/fhir/Patient/$validate", json=patient, content_type=FHIR)
    texts = [i.get("diagnostics", "") + i.get("details", {}).get("text", "") for i in r.get_json()["issue"]]
    assert any(f"The extension {url} takes a value of type boolean, not string" in t for t in texts), texts
    # deleted from the store: the definition is forgotten, the extension is unknown again
    assert client.delete("/fhir/StructureDefinition/written-later").status_code in (200, 204)
    r = client.post("/fhir/Patient/$validate", json=patient, content_type=FHIR)
    texts = [i.get("diagnostics", "") + i.get("details", {}).get("text", "") for i in r.get_json()["issue"]]
    assert not any("takes a value of type boolean" in t for t in texts), texts
    assert any(f"Unknown extension {url}" in t for t in texts), texts
