"""Knowledge artifacts are valid FHIR R4, reference each other consistently, cover every computable rule."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("valuesets", "questionnaires", "plandefinitions")
BASE = "https://lbp-pathway.org/fhir"
RULES = f"{BASE}/CodeSystem/lbp-rules"
FEATURE_EXT = f"{BASE}/StructureDefinition/case-feature"
LIBRARY_URL = f"{BASE}/Library/lbp-case-features"
COLLECT_WITH = "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-collectWith"
ENGINE_VARIABLES = {
    "patient",
    "today",
    "now",
    "draftOrders",
    "selections",
    "subject",
    "context",
    "resource",
    "rootResource",
    "ucum",
    "encounter",
    "practitioner",
}


def _load() -> dict[str, tuple[Path, dict[str, Any]]]:
    out = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).glob("*.json")):
            out[str(path.relative_to(ROOT))] = (path, json.loads(path.read_text(encoding="utf-8")))
    return out


ARTIFACTS = _load()
BY_URL = {res["url"]: res for _, res in ARTIFACTS.values() if isinstance(res.get("url"), str)}


def _nodes(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _nodes(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _nodes(v, f"{path}[{i}]")


def _library_features() -> set[str]:
    lib = BY_URL.get(LIBRARY_URL)
    assert lib is not None, "plandefinitions/Library-lbp-case-features.json is missing"
    return {e["valueExpression"]["name"] for e in lib.get("extension", []) if e.get("url") == FEATURE_EXT}


def test_every_file_is_named_after_its_resource():
    for rel, (path, res) in ARTIFACTS.items():
        assert path.name == f"{res['resourceType']}-{res['id']}.json", rel
        assert res.get("url") == f"{BASE}/{res['resourceType']}/{res['id']}", rel
        assert res.get("version") == "0.1.0", rel


@pytest.mark.parametrize("rel", sorted(ARTIFACTS))
def test_artifact_is_valid_fhir_r4(rel):
    from app.validation import validate_resource

    issues = [i for i in validate_resource(ARTIFACTS[rel][1]) if i.severity in ("error", "fatal")]
    assert not issues, [(i.text, i.expression) for i in issues]


def _project_canonicals(res: dict[str, Any]) -> list[tuple[str, str]]:
    """(element path, canonical) for every reference to another project artifact."""
    found: list[tuple[str, str]] = []
    for path, node in _nodes(res):
        for key in ("definitionCanonical", "valueCanonical", "resource"):
            value = node.get(key)
            if isinstance(value, str) and value.startswith(BASE):
                found.append((f"{path}.{key}", value))
        for key in ("library", "valueSet"):
            value = node.get(key)
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str) and v.startswith(BASE):
                    found.append((f"{path}.{key}", v))
        if (
            isinstance(node.get("system"), str)
            and node["system"].startswith(f"{BASE}/CodeSystem/")
            and path.endswith(tuple(f"include[{i}]" for i in range(50)))
        ):
            found.append((f"{path}.system", node["system"]))
        expr = node.get("expression")
        if isinstance(expr, str):
            for v in re.findall(r"memberOf\(\s*'([^']+)'\s*\)", expr):
                found.append((f"{path}.expression", v))
            for v in re.findall(rf"'({re.escape(BASE)}/Questionnaire/[^'|]+)", expr):
                found.append((f"{path}.expression", v))
    return found


@pytest.mark.parametrize("rel", sorted(r for r in ARTIFACTS if not r.startswith("questionnaires")))
def test_canonical_references_resolve_to_files(rel):
    res = ARTIFACTS[rel][1]
    missing = [(p, c) for p, c in _project_canonicals(res) if c.split("|")[0] not in BY_URL]
    if res["resourceType"] == "ActivityDefinition" and res.get("kind") == "Task":
        collect = [e["valueCanonical"] for e in res.get("extension", []) if e.get("url") == COLLECT_WITH]
        assert collect, "a questionnaire Task names its Questionnaire (cpg-collectWith)"
        assert all(BY_URL.get(c, {}).get("resourceType") == "Questionnaire" for c in collect), collect
    assert not missing, missing


def test_pathways_reference_eca_rules_and_the_library():
    ids = {"lbp-pathway-se", "lbp-pathway-skane", "lbp-pathway-midtjylland"}
    for _, res in ARTIFACTS.values():
        if res["resourceType"] != "PlanDefinition":
            continue
        assert res["library"] == [LIBRARY_URL]
        kind = res["type"]["coding"][0]["code"]
        if res["id"] in ids:
            assert kind == "clinical-protocol"
            targets = [a["definitionCanonical"] for a in res["action"] if "definitionCanonical" in a]
            assert targets and all(BY_URL[t]["type"]["coding"][0]["code"] == "eca-rule" for t in targets)
        else:
            assert kind == "eca-rule"


def _expressions(res: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for path, node in _nodes(res):
        if node.get("language") == "text/fhirpath" and isinstance(node.get("expression"), str):
            out.append((path, node["expression"]))
    return out


RULE_EXPRESSIONS = [
    (rel, path, expr)
    for rel, (_, res) in sorted(ARTIFACTS.items())
    if res["resourceType"] in ("PlanDefinition", "Measure", "ActivityDefinition")
    for path, expr in _expressions(res)
]


@pytest.mark.parametrize("rel,path,expr", RULE_EXPRESSIONS, ids=[f"{r}{p}" for r, p, _ in RULE_EXPRESSIONS])
def test_rule_expressions_compile_and_read_only_library_features(rel, path, expr):
    fhirpathpy.compile(expr, models["r4"])
    features = _library_features()
    unknown = [
        v for v in re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)", expr) if v not in features | ENGINE_VARIABLES
    ]
    assert not unknown, f"{rel}{path} reads {unknown}"
    if ARTIFACTS[rel][1]["resourceType"] == "PlanDefinition":
        # recommendation logic reads the record only through the features
        assert "entry.resource" not in expr and "%patient" not in expr, (
            f"{rel}{path} reads the record directly"
        )


def _eca_actions(res: dict[str, Any]):
    yield from res.get("action", [])


def test_eca_rule_cards_are_complete():
    rule_codes = {c["code"] for _, r in ARTIFACTS.values() if r.get("url") == RULES for c in r["concept"]}
    for rel, (_, res) in ARTIFACTS.items():
        if res["resourceType"] != "PlanDefinition" or res["type"]["coding"][0]["code"] != "eca-rule":
            continue
        for action in _eca_actions(res):
            where = f"{rel}#{action.get('id')}"
            assert len(action["title"]) <= 140, where
            assert action["description"].count(">") >= 1, f"{where}: the description quotes the guideline"
            codes = [c["code"] for cc in action["code"] for c in cc["coding"] if c["system"] == RULES]
            assert codes, where
            if rule_codes:
                assert set(codes) <= rule_codes, where
            assert action["trigger"] and all(
                t["type"] == "named-event" and t["name"] in ("patient-view", "order-select", "order-sign")
                for t in action["trigger"]
            )
            assert [c["kind"] for c in action["condition"]] == ["applicability"], where
            assert action["priority"] in ("routine", "urgent", "asap", "stat"), where
            assert any(d["type"] == "citation" for d in action["documentation"]), where
            for sub in action.get("action", []):
                kinds = [c["code"] for c in sub.get("type", {}).get("coding", [])]
                if kinds == ["create"]:
                    assert sub["definitionCanonical"].startswith(f"{BASE}/ActivityDefinition/"), where
                elif kinds == ["remove"]:
                    assert sub["input"][0]["codeFilter"][0]["valueSet"], where
                    assert [d["path"] for d in sub["dynamicValue"]] == ["resource.reference"], where
                else:  # a replacement: one suggestion made of a removal and a creation
                    inner = sorted(c["code"] for s in sub["action"] for c in s["type"]["coding"])
                    assert inner == ["create", "remove"], where


def _rules_codesystem() -> dict[str, Any] | None:
    return next((r for _, r in ARTIFACTS.values() if r.get("url") == RULES), None)


def test_every_computable_rule_is_implemented_by_an_artifact():
    cs = _rules_codesystem()
    assert cs is not None, "valuesets/CodeSystem-lbp-rules.json is missing"
    cited: set[str] = set()
    for _, res in ARTIFACTS.values():
        if res.get("url") == RULES:
            continue
        for _, node in _nodes(res):
            if node.get("system") == RULES and node.get("code"):
                cited.add(node["code"])
    missing = []
    for concept in cs["concept"]:
        props = {
            p["code"]: next(v for k, v in p.items() if k.startswith("value"))
            for p in concept.get("property", [])
        }
        if props.get("computable") is False:
            assert props.get("not-computable-reason"), f"{concept['code']} is not computable without a reason"
            continue
        if concept["code"] not in cited:
            missing.append(concept["code"])
    assert not missing, f"computable rules no artifact implements: {missing}"


def test_catalogue_is_up_to_date():
    from app.knowledge.catalogue import build_catalogue

    path = ROOT / "docs" / "catalogue.md"
    assert path.exists(), "run python -m app.knowledge.catalogue"
    assert path.read_text(encoding="utf-8") == build_catalogue(ROOT), (
        "docs/catalogue.md is stale: run python -m app.knowledge.catalogue"
    )


def test_catalogue_lists_every_assumption_and_rule():
    from app.knowledge.catalogue import build_catalogue

    text = build_catalogue(ROOT)
    count = sum(
        1
        for _, res in ARTIFACTS.values()
        for _, node in _nodes(res)
        for e in (node.get("extension") or [])
        if isinstance(e, dict) and e.get("url") == f"{BASE}/StructureDefinition/assumption"
    )
    assert text.count("\n| `") == count
    cs = _rules_codesystem()
    for concept in (cs or {}).get("concept", []):
        assert f"### {concept['code']}" in text
