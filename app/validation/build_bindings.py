"""Regenerate core_rules.json from the official R4 package: required bindings, required elements, choices.

The table is derived from the core StructureDefinitions (specialisations of kind resource and
complex-type) in hl7.fhir.r4.examples-4.0.1.tgz:

- `valueSets`: for every ValueSet bound with strength `required` to an element of type `code`, its
  codes, expanded from the ValueSets and CodeSystems of the same package. A ValueSet that cannot be
  expanded from the package alone (a filter, or a code system such as BCP-13 mime types or ISO 4217
  that the package does not enumerate) is left out, so the check never rejects a code it cannot know.
- `elements`: keyed by the element path that contains the children (`Observation`,
  `Bundle.entry.request`, `Quantity`):
  - `bindings`: child name -> ValueSet canonical (a key of `valueSets`);
  - `required`: child names with min >= 1 (a choice element appears as `value[x]`);
  - `choices`: choice base name -> the JSON property names of its types (`value` -> `valueQuantity`, ...).
- `contentReferences`: element path -> the path whose definition it reuses
  (`Questionnaire.item.item` -> `Questionnaire.item`), so both find the same rules.

Usage: python -m app.validation.build_bindings [PATH_TO_TGZ] [OUTPUT_JSON]
"""
from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_TGZ = HERE.parents[2] / "shared" / "data" / "hl7.fhir.r4.examples-4.0.1.tgz"
DEFAULT_OUTPUT = HERE / "core_rules.json"


class Unexpandable(Exception):
    """A ValueSet whose codes the package does not fully define."""


def read_package(tgz_path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The StructureDefinitions, ValueSets and CodeSystems of the package, by resource type."""
    wanted = ("StructureDefinition", "ValueSet", "CodeSystem")
    found: dict[str, list[dict[str, Any]]] = {t: [] for t in wanted}
    with tarfile.open(tgz_path, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json") or not name.startswith(wanted):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            resource = json.load(handle)
            if resource.get("resourceType") in found:
                found[resource["resourceType"]].append(resource)
    return found


def _codes_of_concepts(concepts: list[dict[str, Any]]) -> list[str]:
    codes: list[str] = []
    for concept in concepts:
        codes.append(concept["code"])
        codes.extend(_codes_of_concepts(concept.get("concept", [])))
    return codes


class Expander:
    """Expands ValueSets from the package's own ValueSets and CodeSystems."""

    def __init__(self, value_sets: list[dict[str, Any]], code_systems: list[dict[str, Any]]):
        self.value_sets = {vs["url"]: vs for vs in value_sets}
        self.code_systems = {cs["url"]: cs for cs in code_systems}

    def expand(self, url: str) -> list[str]:
        value_set = self.value_sets.get(url.split("|", 1)[0])
        if value_set is None:
            raise Unexpandable(url)
        compose = value_set.get("compose", {})
        included: list[str] = []
        for include in compose.get("include", []):
            included.extend(self._include(include))
        excluded = {code for exclude in compose.get("exclude", []) for code in self._include(exclude)}
        return sorted({code for code in included if code not in excluded})

    def _include(self, include: dict[str, Any]) -> list[str]:
        if include.get("filter"):
            raise Unexpandable("filter")
        codes: list[str] | None = None
        if "concept" in include:
            codes = [c["code"] for c in include["concept"]]
        elif "system" in include:
            system = self.code_systems.get(include["system"])
            if system is None or system.get("content") != "complete":
                raise Unexpandable(include["system"])
            codes = _codes_of_concepts(system.get("concept", []))
        for nested in include.get("valueSet", []):
            nested_codes = set(self.expand(nested))
            codes = [c for c in codes if c in nested_codes] if codes is not None else sorted(nested_codes)
        return codes or []


def _choice_names(base: str, types: list[dict[str, Any]]) -> list[str]:
    return [base + t["code"][0].upper() + t["code"][1:] for t in types]


def build(tgz_path: str | Path) -> dict[str, Any]:
    package = read_package(tgz_path)
    expander = Expander(package["ValueSet"], package["CodeSystem"])
    value_sets: dict[str, list[str]] = {}
    unexpandable: set[str] = set()
    elements: dict[str, dict[str, Any]] = {}
    content_references: dict[str, str] = {}
    definitions = [
        sd
        for sd in package["StructureDefinition"]
        if sd.get("derivation") == "specialization" and sd.get("kind") in ("resource", "complex-type")
    ]
    for sd in sorted(definitions, key=lambda sd: sd["type"]):
        for element in sd["snapshot"]["element"]:
            container, dot, name = element["path"].rpartition(".")
            if not dot:
                continue
            if "contentReference" in element:
                content_references[element["path"]] = element["contentReference"].lstrip("#")
            rules = elements.setdefault(container, {})
            if element.get("min", 0) >= 1:
                rules.setdefault("required", []).append(name)
            types = element.get("type", [])
            if name.endswith("[x]"):
                rules.setdefault("choices", {})[name[:-3]] = _choice_names(name[:-3], types)
            binding = element.get("binding", {})
            if binding.get("strength") != "required" or [t["code"] for t in types] != ["code"]:
                continue
            url = binding["valueSet"].split("|", 1)[0]
            if url not in value_sets and url not in unexpandable:
                try:
                    value_sets[url] = expander.expand(url)
                except Unexpandable:
                    unexpandable.add(url)
            if url in value_sets:
                rules.setdefault("bindings", {})[name] = url
    return {
        "source": "hl7.fhir.r4.examples 4.0.1 (CC0): core StructureDefinitions, ValueSets and CodeSystems",
        "unexpandable": sorted(unexpandable),
        "valueSets": value_sets,
        "contentReferences": dict(sorted(content_references.items())),
        "elements": {path: rules for path, rules in sorted(elements.items()) if rules},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    tgz = Path(args[0]) if args else DEFAULT_TGZ
    output = Path(args[1]) if len(args) > 1 else DEFAULT_OUTPUT
    table = build(tgz)
    output.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    bound = sum(len(rules.get("bindings", {})) for rules in table["elements"].values())
    print(f"{output}: {bound} bound elements, {len(table['valueSets'])} value sets "
          f"({len(table['unexpandable'])} left out: not expandable from the package)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
