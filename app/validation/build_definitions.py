"""Regenerate definitions/r4-core.json.gz from the official R4 package: invariants, bindings, extensions, ValueSets.

The official package `hl7.fhir.r4.examples` 4.0.1 carries the core conformance resources beside the
examples. From it this script extracts what the rule layers of `app.validation` need at run time, so
that neither tests nor the server read the package:

- `constraints`: every `constraint` (key, severity, human, expression) of the core StructureDefinitions
  (specialisations: resources, complex and primitive types; and the core profiles SimpleQuantity and
  MoneyQuantity), as one table; `elements` maps each snapshot element path (`Observation`,
  `Observation.referenceRange`, `Period.start`, `SimpleQuantity`) to the indexes of its constraints.
- `types`: each element path -> its type codes and, where a core profile is named on the type
  (`SimpleQuantity`), that profile; `choices`: container path -> JSON name -> choice element name;
  `contentReferences`: element path -> the path whose definition it reuses; `bases`: type -> base type.
- `bindings`: element path -> (strength, ValueSet) for required and extensible bindings of elements of
  type code, Coding and CodeableConcept; `valueSets`: the ValueSets among them that the package
  expands completely, as system -> codes (a filter or a code system the package does not enumerate
  leaves a ValueSet out, so no check can reject a code it cannot know; `unexpandable` lists them).
- `extensions`: every core extension definition by URL: its contexts, context invariants,
  cardinality, value types (none: a complex extension) and its sub-extensions.
- `origin`: package name, version, sha256 of the package file, and the number of resources read.

Usage: python -m app.validation.build_definitions [PATH_TO_TGZ] [OUTPUT_JSON_GZ]
"""
from __future__ import annotations

import gzip
import hashlib
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_TGZ = HERE.parents[2] / "shared" / "data" / "hl7.fhir.r4.examples-4.0.1.tgz"
DEFAULT_OUTPUT = HERE / "definitions" / "r4-core.json.gz"
CORE = "http://hl7.org/fhir/StructureDefinition/"
CORE_PROFILES = ("SimpleQuantity", "MoneyQuantity")
BOUND_TYPES = frozenset({"code", "Coding", "CodeableConcept"})
FHIRPATH_TYPE = "http://hl7.org/fhirpath/System."


class Unexpandable(Exception):
    """A ValueSet whose codes the package does not fully define."""


def read_package(tgz_path: str | Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The StructureDefinitions, ValueSets and CodeSystems of the package, and the package's identity."""
    wanted = ("StructureDefinition", "ValueSet", "CodeSystem")
    found: dict[str, list[dict[str, Any]]] = {t: [] for t in wanted}
    manifest: dict[str, Any] = {}
    with tarfile.open(tgz_path, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json"):
                continue
            if name != "package.json" and not name.startswith(wanted):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            resource = json.load(handle)
            if name == "package.json":
                manifest = resource
            elif resource.get("resourceType") in found:
                found[resource["resourceType"]].append(resource)
    return found, manifest


def _concepts(concepts: list[dict[str, Any]]) -> list[str]:
    codes: list[str] = []
    for concept in concepts:
        codes.append(concept["code"])
        codes.extend(_concepts(concept.get("concept", [])))
    return codes


class Expander:
    """Expands ValueSets (system -> codes) from the package's own ValueSets and CodeSystems."""

    def __init__(self, value_sets: list[dict[str, Any]], code_systems: list[dict[str, Any]]):
        self.value_sets = {vs["url"]: vs for vs in value_sets}
        self.code_systems = {cs["url"]: cs for cs in code_systems}

    def expand(self, url: str) -> dict[str, list[str]]:
        value_set = self.value_sets.get(url.split("|", 1)[0])
        if value_set is None:
            raise Unexpandable(url)
        compose = value_set.get("compose", {})
        included: dict[str, set[str]] = {}
        for include in compose.get("include", []):
            for system, codes in self._include(include).items():
                included.setdefault(system, set()).update(codes)
        for exclude in compose.get("exclude", []):
            for system, codes in self._include(exclude).items():
                included.get(system, set()).difference_update(codes)
        return {system: sorted(codes) for system, codes in sorted(included.items()) if codes}

    def _include(self, include: dict[str, Any]) -> dict[str, set[str]]:
        if include.get("filter"):
            raise Unexpandable("filter")
        result: dict[str, set[str]] | None = None
        system = include.get("system")
        if system is not None:
            if "concept" in include:
                result = {system: {c["code"] for c in include["concept"]}}
            else:
                code_system = self.code_systems.get(system)
                if code_system is None or code_system.get("content") != "complete":
                    raise Unexpandable(system)
                result = {system: set(_concepts(code_system.get("concept", [])))}
        for nested in include.get("valueSet", []):
            nested_codes = self.expand(nested)
            if result is None:
                result = {s: set(c) for s, c in nested_codes.items()}
            else:
                result = {s: c & set(nested_codes.get(s, [])) for s, c in result.items()}
        return result or {}


def _type_codes(element: dict[str, Any]) -> list[str]:
    codes = []
    for entry in element.get("type", []):
        code = entry["code"]
        codes.append("string" if code.startswith(FHIRPATH_TYPE) else code)
    return codes


def _extension(sd: dict[str, Any]) -> dict[str, Any]:
    """What the validator needs of one extension definition."""
    elements = sd["snapshot"]["element"]
    root = elements[0]
    value: dict[str, Any] = next((e for e in elements if e["id"] == "Extension.value[x]"), {})
    out: dict[str, Any] = {
        "context": [[c["type"], c["expression"]] for c in sd.get("context", [])],
        "min": root.get("min", 0),
        "max": root.get("max", "*"),
        "value": _type_codes(value) if value.get("max", "1") != "0" else [],
        "valueMin": value.get("min", 0),
    }
    if sd.get("contextInvariant"):
        out["contextInvariant"] = sd["contextInvariant"]
    children: dict[str, Any] = {}
    for element in elements:
        slice_name = element.get("sliceName")
        if element.get("path") != "Extension.extension" or not slice_name:
            continue
        prefix = element["id"]
        url = next((e.get("fixedUri") for e in elements if e["id"] == f"{prefix}.url"), slice_name)
        child_value: dict[str, Any] = next((e for e in elements if e["id"] == f"{prefix}.value[x]"), {})
        children[url] = {
            "min": element.get("min", 0),
            "max": element.get("max", "*"),
            "value": _type_codes(child_value) if child_value.get("max", "1") != "0" else [],
        }
    if children:
        out["children"] = children
        out["closed"] = any(
            e.get("path") == "Extension.extension" and not e.get("sliceName")
            and e.get("slicing", {}).get("rules") == "closed" for e in elements)
    return out


def build(tgz_path: str | Path) -> dict[str, Any]:
    package, manifest = read_package(tgz_path)
    expander = Expander(package["ValueSet"], package["CodeSystem"])
    constraint_index: dict[tuple[str, str, str, str], int] = {}
    constraints: list[list[str]] = []
    elements: dict[str, list[int]] = {}
    types: dict[str, list[Any]] = {}
    choices: dict[str, dict[str, str]] = {}
    content_references: dict[str, str] = {}
    bases: dict[str, str] = {}
    bindings: dict[str, list[str]] = {}
    value_sets: dict[str, dict[str, list[str]]] = {}
    unexpandable: set[str] = set()
    extensions: dict[str, Any] = {}
    for sd in sorted(package["StructureDefinition"], key=lambda s: s["url"]):
        name = sd["url"].removeprefix(CORE)
        specialisation = sd.get("derivation") == "specialization" or sd["url"] == CORE + "Element"
        if sd.get("type") == "Extension" and sd.get("derivation") == "constraint":
            extensions[sd["url"]] = _extension(sd)
            continue
        if not (specialisation and sd.get("kind") in ("resource", "complex-type", "primitive-type")) \
                and name not in CORE_PROFILES:
            continue
        if sd.get("baseDefinition"):
            bases[name] = sd["baseDefinition"].removeprefix(CORE)
        for element in sd["snapshot"]["element"]:
            path = element["path"]
            if name in CORE_PROFILES:
                if "." in path:
                    continue
                path = name
            keys = []
            for constraint in element.get("constraint", []):
                entry = (constraint["key"], constraint["severity"], constraint.get("human", ""),
                         constraint.get("expression", ""))
                if not entry[3]:
                    continue
                index = constraint_index.get(entry)
                if index is None:
                    index = constraint_index[entry] = len(constraints)
                    constraints.append(list(entry))
                if index not in keys:
                    keys.append(index)
            if keys:
                elements[path] = keys
            if name in CORE_PROFILES:
                continue
            codes = _type_codes(element)
            profiles = [p.removeprefix(CORE) for t in element.get("type", []) for p in t.get("profile", [])
                        if p.removeprefix(CORE) in CORE_PROFILES]
            if "." in path:
                types[path] = [codes, profiles[0]] if profiles else [codes]
            if "contentReference" in element:
                content_references[path] = element["contentReference"].lstrip("#")
            container, _, child = path.rpartition(".")
            if child.endswith("[x]"):
                base = child[:-3]
                for code in codes:
                    choices.setdefault(container, {})[base + code[0].upper() + code[1:]] = base
            binding = element.get("binding", {})
            strength = binding.get("strength")
            if strength not in ("required", "extensible") or not binding.get("valueSet"):
                continue
            if not set(codes) & BOUND_TYPES:
                continue
            url = binding["valueSet"]
            bare = url.split("|", 1)[0]
            if bare not in value_sets and bare not in unexpandable:
                try:
                    value_sets[bare] = expander.expand(bare)
                except Unexpandable:
                    unexpandable.add(bare)
            if bare in value_sets:
                bindings[path] = [strength, url]
    digest = hashlib.sha256(Path(tgz_path).read_bytes()).hexdigest()
    return {
        "origin": {
            "package": manifest.get("name", "hl7.fhir.r4.examples"),
            "version": manifest.get("version", "4.0.1"),
            "file": Path(tgz_path).name,
            "sha256": digest,
            "licence": "CC0-1.0 (HL7 FHIR specification)",
            "read": {k: len(v) for k, v in package.items()},
        },
        "constraints": constraints,
        "elements": dict(sorted(elements.items())),
        "types": dict(sorted(types.items())),
        "choices": dict(sorted(choices.items())),
        "contentReferences": dict(sorted(content_references.items())),
        "bases": dict(sorted(bases.items())),
        "bindings": dict(sorted(bindings.items())),
        "valueSets": dict(sorted(value_sets.items())),
        "unexpandable": sorted(unexpandable),
        "extensions": dict(sorted(extensions.items())),
    }


def write(table: dict[str, Any], output: Path) -> str:
    """Write gzip-compressed, deterministic JSON (no timestamp in the gzip header); its sha256."""
    output.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(table, sort_keys=True, separators=(",", ":")).encode()
    with open(output, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0,
                                                  filename="") as handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    tgz = Path(args[0]) if args else DEFAULT_TGZ
    output = Path(args[1]) if len(args) > 1 else DEFAULT_OUTPUT
    table = build(tgz)
    digest = write(table, output)
    print(f"{output}: {len(table['constraints'])} constraints on {len(table['elements'])} element paths, "
          f"{len(table['bindings'])} bindings, {len(table['valueSets'])} value sets "
          f"({len(table['unexpandable'])} not expandable from the package), "
          f"{len(table['extensions'])} extensions; sha256 of the JSON {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
