"""The R4 model the static analysis types against: element types and cardinality, the type hierarchy.

Read from `r4_model.json`, generated from the official R4 StructureDefinitions by `build_model.py`
(origin and regeneration there). Type names are FHIR's (`Patient`, `HumanName`, `code`); a
BackboneElement is named by its element path (`Patient.contact`, `Questionnaire.item`). System
types are `System.Boolean`, `System.String`, `System.Integer`, `System.Decimal`, `System.Date`,
`System.DateTime`, `System.Time`, `System.Quantity`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SYSTEM_TYPES = frozenset(
    {"Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"}
)
# FHIR primitive -> the System type its value has
PRIMITIVE_SYSTEM = {
    "boolean": "Boolean",
    "integer": "Integer",
    "unsignedInt": "Integer",
    "positiveInt": "Integer",
    "decimal": "Decimal",
    "date": "Date",
    "dateTime": "DateTime",
    "instant": "DateTime",
    "time": "Time",
    **{
        t: "String"
        for t in ("string", "uri", "url", "canonical", "base64Binary", "code", "oid", "id", "markdown", "uuid", "xhtml")
    },
}


@dataclass(frozen=True)
class ElementInfo:
    """An element of a type: its possible types (several for a choice) and whether it repeats."""

    types: tuple[str, ...]
    many: bool


class R4Model:
    """Lookups over the generated R4 definitions."""

    def __init__(self, data: dict[str, Any]):
        self.origin: str = data["origin"]
        self.types: dict[str, dict[str, Any]] = data["types"]
        self.elements: dict[str, list[Any]] = data["elements"]

    def is_type(self, name: str) -> bool:
        return name in self.types or name in self.elements and self._backbone(name)

    def _backbone(self, path: str) -> bool:
        entry = self.elements.get(path)
        if entry is None:
            return False
        return len(entry) > 2 and entry[2] != "choice" or entry[0] in (["BackboneElement"], ["Element"])

    def base(self, name: str) -> str | None:
        if name in self.types:
            base = self.types[name].get("base")
            return str(base) if base else None
        if name.startswith("System."):
            return None
        if "." in name:
            return "BackboneElement"
        return None

    @cache  # noqa: B019 (one model per process, never released)
    def ancestors(self, name: str) -> tuple[str, ...]:
        """The type and its ancestors, nearest first (code, string, PrimitiveType?, Element)."""
        out = [name]
        current = self.base(name)
        while current and current not in out:
            out.append(current)
            current = self.base(current)
        return tuple(out)

    def is_resource(self, name: str) -> bool:
        return self.types.get(name, {}).get("kind") == "resource"

    def kind(self, name: str) -> str | None:
        if name.startswith("System."):
            return "system"
        if name in self.types:
            return str(self.types[name]["kind"])
        return "complex-type" if "." in name else None

    @cache  # noqa: B019
    def element(self, type_name: str, member: str) -> ElementInfo | None:
        """The element `member` of `type_name` (choice names like valueQuantity resolved), or None."""
        entry = self.elements.get(type_name)
        if entry is not None and len(entry) > 2 and entry[2] != "choice":
            type_name = str(entry[2])  # a contentReference: the element it repeats
        for owner in self.ancestors(type_name):
            if owner.startswith("System."):
                return None
            found = self._element(f"{owner}.{member}")
            if found is not None:
                return found
            # a choice element addressed with its type suffix: valueQuantity
            for i in range(len(member) - 1, 0, -1):
                if member[i].isupper():
                    entry = self.elements.get(f"{owner}.{member[:i]}")
                    if entry is not None and len(entry) > 2 and entry[2] == "choice":
                        suffix = member[i:]
                        for t in entry[0]:
                            if t[:1].upper() + t[1:] == suffix:
                                return ElementInfo((t,), False)
        return None

    def _element(self, path: str) -> ElementInfo | None:
        entry = self.elements.get(path)
        if entry is None:
            return None
        codes, many = entry[0], bool(entry[1])
        if len(entry) > 2 and entry[2] != "choice":
            return ElementInfo((str(entry[2]),), many)  # a contentReference: the same backbone element
        if codes in (["BackboneElement"], ["Element"]):
            return ElementInfo((path,), many)
        return ElementInfo(tuple(codes), many)

    def system_type(self, name: str) -> str | None:
        """The System type a value of FHIR type `name` converts to implicitly (Quantity included)."""
        if name.startswith("System."):
            return name[7:]
        if name in PRIMITIVE_SYSTEM:
            return PRIMITIVE_SYSTEM[name]
        if "Quantity" in self.ancestors(name):
            return "Quantity"
        return None

    def resolve_type(self, namespace: str | None, name: str) -> str | None:
        """A type name as written in `is`/`as`/`ofType`; None when no such type exists."""
        if namespace == "System":
            return f"System.{name}" if name in SYSTEM_TYPES else None
        if namespace not in (None, "FHIR"):
            return None
        if name in self.types:
            return name
        if namespace is None and name in SYSTEM_TYPES:
            return f"System.{name}"
        return None


@cache
def r4() -> R4Model:
    """The R4 model (loaded once)."""
    return R4Model(json.loads(Path(__file__).with_name("r4_model.json").read_text()))
