"""Static types of FHIRPath subexpressions: a set of possible type names and whether more than one item may come.

A `Static` with `types=None` is unknown (the analysis could not decide, and says so as a warning
where it matters). Type names follow `model`: FHIR names as such, System types as `System.X`.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.fhirpath.model import R4Model


@dataclass(frozen=True)
class Static:
    """What the analysis knows about a collection: its possible item types and its cardinality."""

    types: frozenset[str] | None
    many: bool | None  # None: the cardinality is unknown (it comes from something of unknown type)
    unordered: bool = False  # from children()/descendants(): the order of the items is not defined

    def one(self) -> Static:
        return Static(self.types, False)

    def with_many(self, many: bool | None) -> Static:
        return Static(self.types, many)

    def describe(self) -> str:
        if self.types is None:
            kind = "items of unknown type"
        elif not self.types:
            kind = "nothing"
        else:
            kind = " or ".join(sorted(t.removeprefix("System.") for t in self.types))
        return f"{kind}{' (possibly several)' if self.many else ''}"


def more(a: bool | None, b: bool | None) -> bool | None:
    """The cardinality of something that has several items when either part has (None: unknown)."""
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def system(name: str, many: bool = False) -> Static:
    return Static(frozenset({f"System.{name}"}), many)


UNKNOWN = Static(None, None)
UNKNOWN_ONE = Static(None, False)
EMPTY = Static(frozenset(), False)
BOOLEAN = system("Boolean")
STRING = system("String")
INTEGER = system("Integer")
DECIMAL = system("Decimal")


def union(a: Static, b: Static, *, many: bool | None = None) -> Static:
    types = None if a.types is None or b.types is None else a.types | b.types
    return Static(types, more(a.many, b.many) if many is None else many)


def categories(model: R4Model, static: Static) -> frozenset[str] | None:
    """The System categories of a static type (FHIR complex types as themselves); None when unknown.

    Integer and Decimal are one category (Number); Date and DateTime are one (Date).
    """
    if static.types is None:
        return None
    out: set[str] = set()
    for name in static.types:
        system_type = model.system_type(name)
        if system_type in ("Integer", "Decimal"):
            out.add("Number")
        elif system_type in ("Date", "DateTime"):
            out.add("Date")
        elif system_type is not None:
            out.add(system_type)
        elif name in ("Element", "BackboneElement", "Resource", "DomainResource"):
            return None  # an abstract type: anything may come
        else:
            out.add(name)
    return frozenset(out)


def is_boolean(model: R4Model, static: Static) -> bool | None:
    """True when every possible type is Boolean, False when none is, None when unknown or mixed."""
    cats = categories(model, static)
    if cats is None:
        return None
    if not cats:
        return True  # `{}`: empty is an acceptable (unknown) Boolean
    if cats == {"Boolean"}:
        return True
    if "Boolean" not in cats:
        return False
    return None
