"""FHIRPath values: model-typed nodes over FHIR JSON (R4 model), dates with precision, quantities.

A collection is a Python list whose items are `Node` (an element of FHIR JSON with its FHIR type),
or System values: bool, int, Decimal, str, `Temporal`, `Quantity`. The R4 model (element paths,
choice types, type hierarchy) is fhirpathpy's, so `onset` resolves to `onsetDateTime` and `ofType(Period)`
knows what `onsetPeriod` is.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from fhirpathpy.models import models

from app.fhirpath import ucum
from app.fhirpath.model import PRIMITIVE_SYSTEM

_R4 = models["r4"]
PATH2TYPE: dict[str, str] = _R4["path2Type"]
CHOICES: dict[str, list[str]] = _R4["choiceTypePaths"]
ELSEWHERE: dict[str, str] = _R4["pathsDefinedElsewhere"]
PARENT: dict[str, str] = _R4["type2Parent"]

PRIMITIVES = frozenset(
    {
        "boolean",
        "integer",
        "string",
        "decimal",
        "uri",
        "url",
        "canonical",
        "base64Binary",
        "instant",
        "date",
        "dateTime",
        "time",
        "code",
        "oid",
        "id",
        "markdown",
        "unsignedInt",
        "positiveInt",
        "uuid",
        "xhtml",
    }
)
# FHIR primitive type -> the System type its value has (one table, with the R4 model)
SYSTEM_OF = PRIMITIVE_SYSTEM
QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity"}
)


class Node:
    """An element of FHIR JSON with its model path (to type its children) and FHIR type name."""

    __slots__ = ("data", "path", "type", "ext", "kids")

    def __init__(self, data: Any, path: str | None, type_: str | None, ext: Any = None):
        self.data = data
        self.path = path
        self.type = type_
        self.ext = ext  # the `_name` sibling of a primitive (its id and extensions)
        self.kids: dict[str, list[Node]] | None = None  # children already navigated to, by name

    def __repr__(self) -> str:
        return f"Node({self.type}, {self.data!r})"


def resource_node(data: dict[str, Any]) -> Node:
    rtype = data.get("resourceType")
    return Node(data, rtype, rtype)


def as_item(value: Any) -> Any:
    """A JSON value (or an item already) as a collection item."""
    if isinstance(value, dict):
        if "resourceType" in value:
            return resource_node(value)
        return Node(value, None, None)
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def as_collection(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return [as_item(v) for v in value if v is not None]
    return [as_item(value)]


def _decap(name: str) -> str:
    low = name[0].lower() + name[1:]
    return low if low in PRIMITIVES else name


_child_cache: dict[tuple[str | None, str], tuple[tuple[str, str | None, str | None], ...]] = {}


def child_info(path: str | None, key: str) -> tuple[tuple[str, str | None, str | None], ...]:
    """(JSON field, FHIR type, model path of the child) candidates for `key` under `path`."""
    cached = _child_cache.get((path, key))
    if cached is not None:
        return cached
    if path is None:
        info: tuple[tuple[str, str | None, str | None], ...] = ((key, None, None),)
    elif path == "TypeInfo":
        info = ((key, "string", None),)  # type(): namespace and name are strings
    elif key == "id" and "." not in path and path[:1].isupper() and PATH2TYPE.get(f"{path}.id") == "System.String":
        info = ((key, "id", None),)  # Resource.id is an `id` (R4)
    else:
        full = f"{path}.{key}"
        resolved = ELSEWHERE.get(full, full)
        choices = CHOICES.get(resolved)
        if choices:
            info = tuple((key + t, _decap(t), _decap(t)) for t in choices)
        else:
            declared = PATH2TYPE.get(resolved)
            if declared is None:
                # a BackboneElement (the model lists only typed paths), or a path the model does not know
                info = ((key, "BackboneElement", resolved),)
            elif declared.startswith("System."):
                info = ((key, "string" if declared == "System.String" else _decap(declared[7:]), None),)
            elif declared in ("BackboneElement", "Element"):
                info = ((key, declared, resolved),)
            else:
                info = ((key, declared, declared),)
    _child_cache[(path, key)] = info
    return info


def navigator(key: str) -> Callable[[Any, list[Any]], list[Any]]:
    """A function returning the children named `key` of every item (choice types resolved with the
    model); it keeps its own cache of the model lookups per parent path. Children of an element are
    remembered on its node, so that features sharing collections (the record's conditions, say)
    walk each element once per request."""
    cache: dict[str | None, tuple[tuple[str, str | None, str | None, str | None], ...]] = {}

    def lookup(path: str | None) -> tuple[tuple[str, str | None, str | None, str | None], ...]:
        info = tuple((f, t, p, "_" + f if t in PRIMITIVES else None) for f, t, p in child_info(path, key))
        cache[path] = info
        return info

    def children(item: Node, data: dict[str, Any]) -> list[Any]:
        info = cache.get(item.path)
        if info is None:
            info = lookup(item.path)
        for field, tname, cpath, ext_field in info:
            value = data.get(field)
            if value is None:
                continue
            if type(value) is list:
                ext = data.get(ext_field) if ext_field is not None else None
                found: list[Any] = []
                for i, v in enumerate(value):
                    if v is None:
                        # a repeating primitive with only an extension (`"given": [null, "x"]`, `_given`)
                        if type(ext) is list and i < len(ext) and type(ext[i]) is dict:
                            found.append(Node(None, cpath, tname, ext[i]))
                        continue
                    if type(v) is dict and "resourceType" in v:
                        rtype = v["resourceType"]
                        found.append(Node(v, rtype, rtype))
                    else:
                        found.append(
                            Node(v, cpath, tname, ext[i] if type(ext) is list and i < len(ext) else None)
                        )
                return found
            if type(value) is dict and "resourceType" in value:
                rtype = value["resourceType"]
                return [Node(value, rtype, rtype)]
            return [Node(value, cpath, tname, data.get(ext_field) if ext_field is not None else None)]
        return []

    def navigate_key(ctx: Any, items: list[Any]) -> list[Any]:
        # the signature of a compiled FHIRPath step, fn(ctx, focus), so that it is one directly
        out: list[Any] = []
        for item in items:
            if type(item) is not Node:
                if isinstance(item, Quantity):
                    if key == "value":
                        out.append(item.value)
                    elif key in ("unit", "code"):
                        out.append(item.unit)
                continue
            data = item.data
            if type(data) is not dict:
                if key == "extension" and type(item.ext) is dict:
                    out.extend(Node(e, "Extension", "Extension") for e in item.ext.get("extension", []) or [])
                continue
            kids = item.kids
            if kids is None:
                kids = item.kids = {}
            found = kids.get(key)
            if found is None:
                found = kids[key] = children(item, data)
            out.extend(found)
        return out

    return navigate_key


_navigators: dict[str, Any] = {}


def navigate(items: list[Any], key: str) -> list[Any]:
    """The children named `key` of every item."""
    fn = _navigators.get(key)
    if fn is None:
        fn = _navigators[key] = navigator(key)
    return fn(None, items)


def children_of(item: Any) -> list[Any]:
    if type(item) is not Node or type(item.data) is not dict:
        return []
    out: list[Any] = []
    seen: set[str] = set()
    for field in item.data:
        if field.startswith("_") or field == "resourceType":
            continue
        key = field
        if item.path is not None:
            # a choice field (onsetDateTime) is reached through its element name (onset)
            for name, types in (
                (f, CHOICES.get(ELSEWHERE.get(f"{item.path}.{f}", f"{item.path}.{f}")))
                for f in _prefixes(field)
            ):
                if types and any(name + t == field for t in types):
                    key = name
                    break
        if key in seen:
            continue
        seen.add(key)
        out.extend(navigate([item], key))
    return out


def _prefixes(field: str) -> list[str]:
    return [field[:i] for i in range(len(field) - 1, 0, -1) if field[i].isupper()]


_chains: dict[str | None, frozenset[str]] = {}


def type_chain(name: str | None) -> frozenset[str]:
    """The type and its ancestors (code -> string -> Element)."""
    chain = _chains.get(name)
    if chain is None:
        out = []
        current = name
        while current:
            out.append(current)
            current = PARENT.get(current)
        chain = _chains[name] = frozenset(out)
    return chain


def system_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, Decimal):
        return "Decimal"
    if isinstance(value, str):
        return "String"
    if isinstance(value, Temporal):
        return {"date": "Date", "dateTime": "DateTime", "time": "Time"}[value.kind]
    if isinstance(value, Quantity):
        return "Quantity"
    return None


# (element type, namespace, name, exact) -> verdict: a FHIR element's type test depends on its type only, and
# `entry.resource.ofType(X)` asks it of every resource of the record
_node_verdicts: dict[tuple[str | None, str | None, str, bool], bool] = {}


def _node_is_type(tname: str | None, namespace: str | None, name: str, exact: bool) -> bool:
    if tname is None:
        return False
    if namespace == "System":
        return False  # a FHIR element is no System value (R4 suite testType12/14)
    if exact and tname in PRIMITIVES and name in PRIMITIVES:
        # as()/ofType() take primitives by their exact type: a code is not taken as a string, though
        # it `is` one (R4 suite testFHIRPathAsFunction11/16 and testFHIRPathIsFunction2)
        return tname == name
    if name in type_chain(tname):
        return True
    return tname == "BackboneElement" and name == "Element"


def is_type(item: Any, namespace: str | None, name: str, exact: bool = False) -> bool:
    """`item is [namespace.]name`: FHIR elements by the FHIR type hierarchy (primitives exactly), System
    values by their System type (an unqualified lower-case primitive name also matches its System value)."""
    if type(item) is Node:
        key = (item.type, namespace, name, exact)
        verdict = _node_verdicts.get(key)
        if verdict is None:
            if len(_node_verdicts) > 50_000:
                _node_verdicts.clear()
            verdict = _node_verdicts[key] = _node_is_type(item.type, namespace, name, exact)
        return verdict
    system = system_type(item)
    if system is None:
        return False
    if namespace == "FHIR":
        return False
    if name == system:
        return True
    return (
        namespace is None
        and SYSTEM_OF.get(name) == system
        and name in ("boolean", "integer", "decimal", "string", "date", "dateTime", "time")
    )


def type_name(item: Any) -> tuple[str, str]:
    if type(item) is Node:
        return ("FHIR", item.type or "Element")
    return ("System", system_type(item) or "Any")


# -- primitive values ---------------------------------------------------------------------------------


def value_of(item: Any) -> Any:
    """The System value of an item (dates as Temporal, decimals as Decimal); complex data as dict."""
    if type(item) is not Node:
        return item
    data = item.data
    t = item.type
    if type(data) is dict:
        if t in QUANTITY_TYPES and "value" in data:
            return Quantity(Decimal(str(data["value"])), data.get("code") or data.get("unit") or "1")
        return data
    if t in ("date", "dateTime", "instant"):
        parsed = parse_temporal(data, "date" if t == "date" else "dateTime")
        return parsed if parsed is not None else data
    if t == "time":
        parsed = parse_temporal(data, "time")
        return parsed if parsed is not None else data
    if type(data) is float:
        return Decimal(str(data))
    return data


# -- dates and times ----------------------------------------------------------------------------------

_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_TIME_RE = re.compile(r"^T?(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")


class Temporal:
    """A FHIRPath Date, DateTime or Time with its precision (1 year … 7 fraction; time: 4 hour … 7)."""

    __slots__ = ("kind", "parts", "precision", "tz", "text")

    def __init__(self, kind: str, parts: tuple[int, ...], precision: int, tz: int | None, text: str):
        self.kind = kind
        self.parts = parts  # (year, month, day, hour, minute, second, microsecond), defaults filled
        self.precision = precision
        self.tz = tz  # offset in minutes, or None
        self.text = text

    def __repr__(self) -> str:
        return f"@{self.text}"

    def __str__(self) -> str:
        return self.text

    def normalized(self) -> tuple[int, ...]:
        """Parts in UTC when a time of day and an offset are present (comparison basis)."""
        if self.kind == "time" or self.precision < 4 or self.tz is None:
            return self.parts
        y, mo, d, h, mi, s, us = self.parts
        moment = datetime(y, mo, d, h, mi, s, us, tzinfo=timezone(timedelta(minutes=self.tz))).astimezone(UTC)
        return (
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond,
        )

    def compare(self, other: Temporal) -> int | None:
        """-1/0/1, or None when the shared precision cannot decide (FHIRPath date comparison)."""
        if (self.kind == "time") != (other.kind == "time"):
            raise ValueError(f"cannot compare {self.kind} with {other.kind}")
        timed = self.kind != "time" and min(self.precision, other.precision) >= 4
        if timed and (self.tz is None) != (other.tz is None):
            return None  # a time of day with an offset against one without: undecidable (N1 §6.1.1)
        a, b = self.normalized(), other.normalized()
        first = 3 if self.kind == "time" else 0
        common = min(self.precision, other.precision)
        for i in range(first, common):
            if a[i] != b[i]:
                return -1 if a[i] < b[i] else 1
        if self.precision != other.precision:
            # seconds and fractions are one precision in FHIRPath
            if {self.precision, other.precision} <= {6, 7}:
                return 0 if a[6] == b[6] else (-1 if a[6] < b[6] else 1)
            return None
        return 0

    def plus(self, quantity: Quantity, sign: int = 1) -> Temporal:
        unit = calendar_unit(quantity.unit)
        if unit is None:
            raise ValueError(f"cannot add {quantity} to a date")
        amount = int(quantity.value) * sign  # a calendar duration counts whole units (N1 §6.6.1)
        y, mo, d, h, mi, s, us = self.parts
        if unit in ("year", "month"):
            whole = int(amount)
            months = whole * 12 if unit == "year" else whole
            total = (y * 12 + (mo - 1)) + months
            y, mo = divmod(total, 12)
            mo += 1
            d = min(d, calendar.monthrange(y, mo)[1])
            moment = datetime(y, mo, d, h, mi, s, us)
        else:
            seconds = _SECONDS[unit]
            delta: Decimal = Decimal(amount) * Decimal(seconds)
            if self.kind != "time" and self.precision <= 3:
                # a date moves by whole days
                delta = Decimal(int(delta / 86400)) * 86400
            moment = datetime(y, mo, d, h, mi, s, us) + timedelta(seconds=float(delta))
        return Temporal.from_datetime(self.kind, moment, self.precision, self.tz)

    @staticmethod
    def from_datetime(kind: str, moment: datetime, precision: int, tz: int | None) -> Temporal:
        parts = (
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond,
        )
        return Temporal(kind, parts, precision, tz, _format(kind, parts, precision, tz))

    def as_kind(self, kind: str) -> Temporal:
        if kind == self.kind:
            return self
        if kind == "date":
            precision = min(self.precision, 3)
            return Temporal(
                "date",
                self.parts[:3] + (0, 0, 0, 0),
                precision,
                None,
                _format("date", self.parts, precision, None),
            )
        return Temporal(
            "dateTime",
            self.parts,
            self.precision,
            self.tz,
            _format("dateTime", self.parts, self.precision, self.tz),
        )


def _format(kind: str, parts: tuple[int, ...], precision: int, tz: int | None) -> str:
    y, mo, d, h, mi, s, us = parts
    if kind == "time":
        text = f"{h:02d}"
        if precision >= 5:
            text += f":{mi:02d}"
        if precision >= 6:
            text += f":{s:02d}"
        if precision >= 7:
            text += f".{us // 1000:03d}"
        return text
    text = f"{y:04d}"
    if precision >= 2:
        text += f"-{mo:02d}"
    if precision >= 3:
        text += f"-{d:02d}"
    if precision >= 4 and kind == "dateTime":
        text += f"T{h:02d}"
        if precision >= 5:
            text += f":{mi:02d}"
        if precision >= 6:
            text += f":{s:02d}"
        if precision >= 7:
            text += f".{us // 1000:03d}"
        if tz is not None:
            text += "Z" if tz == 0 else f"{'+' if tz > 0 else '-'}{abs(tz) // 60:02d}:{abs(tz) % 60:02d}"
    return text


@lru_cache(maxsize=65536)
def parse_temporal(text: str, kind: str) -> Temporal | None:
    """Parse a FHIR date/dateTime ('date'/'dateTime') or time ('time'); None when it is not one."""
    if not isinstance(text, str):
        return None
    if kind == "time":
        m = _TIME_RE.match(text)
        if not m:
            return None
        h, mi, s, frac = m.groups()
        precision = 4 + sum(x is not None for x in (mi, s, frac))
        us = int((frac or "0").ljust(6, "0")[:6])
        return Temporal(
            "time", (1970, 1, 1, int(h), int(mi or 0), int(s or 0), us), precision, None, text.lstrip("T")
        )
    m = _DATE_RE.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    precision = sum(x is not None for x in (y, mo, d, h, mi, s, frac))
    try:
        parts = (
            int(y),
            int(mo or 1),
            int(d or 1),
            int(h or 0),
            int(mi or 0),
            int(s or 0),
            int((frac or "0").ljust(6, "0")[:6]),
        )
        datetime(*parts)
    except ValueError:
        return None
    offset = None
    if tz:
        offset = 0 if tz == "Z" else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 60 + int(tz[4:6]))
    if kind == "date" and precision > 3:
        return Temporal("date", parts[:3] + (0, 0, 0, 0), 3, None, text[:10])
    return Temporal(kind, parts, precision, offset, text)


# -- quantities ---------------------------------------------------------------------------------------

_CALENDAR = {
    "year": "year",
    "years": "year",
    "month": "month",
    "months": "month",
    "week": "week",
    "weeks": "week",
    "wk": "week",
    "day": "day",
    "days": "day",
    "d": "day",
    "hour": "hour",
    "hours": "hour",
    "h": "hour",
    "minute": "minute",
    "minutes": "minute",
    "min": "minute",
    "second": "second",
    "seconds": "second",
    "s": "second",
    "millisecond": "millisecond",
    "milliseconds": "millisecond",
    "ms": "millisecond",
}
_SECONDS: dict[str, Decimal | int] = {
    "week": 604800,
    "day": 86400,
    "hour": 3600,
    "minute": 60,
    "second": 1,
    "millisecond": Decimal("0.001"),
}


_KEYWORDS = {
    k: k.rstrip("s") if k != "millisecond" else k
    for k in (
        "year", "years", "month", "months", "week", "weeks", "day", "days", "hour", "hours",
        "minute", "minutes", "second", "seconds", "millisecond", "milliseconds",
    )
}
_KEYWORDS["milliseconds"] = "millisecond"


def calendar_unit(unit: str) -> str | None:
    return _CALENDAR.get(unit.strip("'"))


class Quantity:
    """A FHIRPath Quantity: a decimal and a unit (a UCUM code, or a calendar keyword such as `week`)."""

    __slots__ = ("value", "unit")

    def __init__(self, value: Decimal | int, unit: str):
        self.value = value if isinstance(value, Decimal) else Decimal(value)
        self.unit = unit.strip("'") if unit else "1"

    def __repr__(self) -> str:
        return f"{self.value} '{self.unit}'"

    @property
    def keyword(self) -> str | None:
        """The calendar keyword (singular) when the unit is one (`7 days`), else None."""
        return _KEYWORDS.get(self.unit)

    def text(self) -> str:
        """As FHIRPath writes it: `1 week`, `4 'mg'`."""
        return f"{self.value} {self.unit}" if self.unit in _KEYWORDS else f"{self.value} '{self.unit}'"

    def comparable(self, other: Quantity) -> tuple[Decimal, Decimal] | None:
        """Both values in one unit, or None when the units do not convert."""
        if self.unit == other.unit:
            return self.value, other.value
        a, b = self.keyword or self.unit, other.keyword or other.unit
        if a == b:
            return self.value, other.value
        if a in ("year", "month") and b in ("year", "month"):
            return self.value * (12 if a == "year" else 1), other.value * (12 if b == "year" else 1)
        x, y = ucum.canonical(self.value, a), ucum.canonical(other.value, b)
        if x is None or y is None or x[1] != y[1]:
            return None
        return x[0], y[0]

    def to_json(self) -> dict[str, Any]:
        number = self.value
        value: Any = (
            int(number) if number == number.to_integral_value() and "." not in str(number) else float(number)
        )
        return {"value": value, "unit": self.unit, "system": "http://unitsofmeasure.org", "code": self.unit}


def to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None
