"""The R4 core definitions shipped with the project (definitions/r4-core.json.gz), read once.

Built by `build_definitions.py` from the official package; `README.md` beside the file records its
origin and checksums. Nothing here reads the package itself.
"""
from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path
from typing import Any

import orjson

DEFINITIONS_PATH = Path(__file__).resolve().parent / "definitions" / "r4-core.json.gz"


class CoreDefinitions:
    """Constraints, element types, bindings, ValueSet expansions and extension definitions of R4."""

    def __init__(self, table: dict[str, Any]):
        self.origin: dict[str, Any] = table["origin"]
        self.constraints: list[list[str]] = table["constraints"]
        self.elements: dict[str, list[int]] = table["elements"]
        self.types: dict[str, list[Any]] = table["types"]
        self.choices: dict[str, dict[str, str]] = table["choices"]
        self.content_references: dict[str, str] = table["contentReferences"]
        self.bases: dict[str, str] = table["bases"]
        self.bindings: dict[str, list[str]] = table["bindings"]
        self.value_sets: dict[str, dict[str, frozenset[str]]] = {
            url: {system: frozenset(codes) for system, codes in systems.items()}
            for url, systems in table["valueSets"].items()
        }
        self.extensions: dict[str, dict[str, Any]] = table["extensions"]

    def type_chain(self, type_name: str) -> list[str]:
        """The type and its ancestors: `Age` -> Age, Quantity, Element."""
        chain = []
        current: str | None = type_name
        while current and current not in chain:
            chain.append(current)
            current = self.bases.get(current)
        return chain

    def definition_path(self, path: str) -> str:
        """The path whose definition an element reuses (`Questionnaire.item.item` -> `Questionnaire.item`)."""
        return self.content_references.get(path, path)


@cache
def core() -> CoreDefinitions:
    with gzip.open(DEFINITIONS_PATH, "rb") as handle:
        return CoreDefinitions(orjson.loads(handle.read()))
