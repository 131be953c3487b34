"""What compiled FHIRPath runs on: the evaluation context and the item semantics every operator shares.

Equality, equivalence, ordering, singleton evaluation, distinctness, string conversion and
arithmetic of items follow http://hl7.org/fhirpath/N1/ (§6.1 equality, §6.4 comparison, §6.6 math,
§4.5 singleton evaluation); the operator table (`operators`) and the functions (`functions`) are
built from these.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from app.fhirpath.values import (
    Node,
    Quantity,
    Temporal,
    parse_temporal,
    type_name,
    value_of,
)


class FHIRPathError(ValueError):
    """An expression that cannot be evaluated on this input (type errors, cardinality errors)."""


class Ctx:
    """The state of one evaluation: variables, the standard %-values, the host environment, $this/$index/$total."""

    __slots__ = ("vars", "std", "env", "this", "index", "total", "root", "memo")

    def __init__(
        self, variables: Any, std: dict[str, list[Any]], env: Any, root: list[Any], memo: dict[str, Any] | None = None
    ):
        self.vars = variables
        self.std = std
        self.env = env
        self.this = root
        self.index: list[Any] = []
        self.total: list[Any] = []
        self.root = root
        self.memo = memo  # results of subexpressions that read only %-variables, shared per scope


Fn = Callable[[Ctx, list[Any]], list[Any]]


def const(values: list[Any]) -> Fn:
    """A compiled expression that always yields `values`."""

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
        return values

    return fn


# -- helpers --------------------------------------------------------------------------------------------


def single(collection: list[Any], what: str) -> Any:
    if not collection:
        return None
    if len(collection) > 1:
        raise FHIRPathError(f"{what} expects a single item, got {len(collection)}")
    return collection[0]


def to_boolean(collection: list[Any]) -> bool | None:
    """Singleton evaluation of a collection where a Boolean is expected."""
    if not collection:
        return None
    if len(collection) > 1:
        raise FHIRPathError(f"expected a single boolean, got {len(collection)} items")
    value = collection[0]
    if value is True or value is False:
        return value
    if type(value) is Node:
        data = value.data
        if data is True or data is False:
            return data
    return True


def is_number(value: Any) -> bool:
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


def temporal_pair(a: Any, b: Any) -> tuple[Temporal, Temporal] | None:
    if isinstance(a, str):
        a = parse_temporal(a, b.kind if isinstance(b, Temporal) else "dateTime")
    if isinstance(b, str):
        b = parse_temporal(b, a.kind if isinstance(a, Temporal) else "dateTime")
    if isinstance(a, Temporal) and isinstance(b, Temporal):
        return a, b
    return None


_TEMPORAL_TYPES = frozenset({"date", "dateTime", "instant", "time"})


def item_equal(x: Any, y: Any) -> bool | None:
    # the common case first: a string element against a string
    a = (
        x.data
        if type(x) is Node and x.type not in _TEMPORAL_TYPES and type(x.data) is not float
        else value_of(x)
    )
    b = (
        y.data
        if type(y) is Node and y.type not in _TEMPORAL_TYPES and type(y.data) is not float
        else value_of(y)
    )
    if type(a) is str and type(b) is str:
        return a == b
    a, b = value_of(x), value_of(y)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, Temporal) or isinstance(b, Temporal):
        pair = temporal_pair(a, b)
        if pair is None:
            return False
        if (pair[0].kind == "time") != (pair[1].kind == "time"):
            return False
        result = pair[0].compare(pair[1])
        return None if result is None else result == 0
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        pair_q = a.comparable(b)
        return None if pair_q is None else pair_q[0] == pair_q[1]
    if type(a) is not type(b):
        return False
    return bool(a == b)


def _normal_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def item_equivalent(x: Any, y: Any) -> bool:
    a, b = value_of(x), value_of(y)
    if isinstance(a, str) and isinstance(b, str):
        return _normal_text(a) == _normal_text(b)
    if is_number(a) and is_number(b):
        return _same_at_least_precision(Decimal(a), Decimal(b), Decimal(a), Decimal(b))
    if isinstance(a, Temporal) or isinstance(b, Temporal):
        pair = temporal_pair(a, b)
        if pair is None:
            return False
        # seconds and their fractions are one precision (N1 §6.1.2)
        p, q = min(pair[0].precision, 6), min(pair[1].precision, 6)
        return p == q and pair[0].compare(pair[1]) == 0
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        # compared in a's unit at the precision of the less precise value: 4 'g' ~ 4040 'mg'
        pair_q = Quantity(Decimal(1), a.unit).comparable(b)
        if pair_q is None or not pair_q[0]:
            return False
        b_in_a = pair_q[1] / pair_q[0]
        return _same_at_least_precision(a.value, b_in_a, a.value, b_in_a if a.unit != b.unit else b.value)
    return bool(item_equal(x, y))


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _same_at_least_precision(a: Decimal, b: Decimal, written_a: Decimal, written_b: Decimal) -> bool:
    quantum = Decimal(1).scaleb(-min(_places(written_a), _places(written_b)))
    return a.quantize(quantum, ROUND_HALF_UP) == b.quantize(quantum, ROUND_HALF_UP)


def compare_items(x: Any, y: Any) -> int | None:
    a, b = value_of(x), value_of(y)
    if is_number(a) and is_number(b):
        return int((a > b) - (a < b))
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if isinstance(a, Temporal) or isinstance(b, Temporal):
        pair = temporal_pair(a, b)
        if pair is None:
            raise FHIRPathError(f"cannot compare {a!r} with {b!r}")
        return pair[0].compare(pair[1])
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        pair_q = a.comparable(b)
        if pair_q is None:
            return None
        return (pair_q[0] > pair_q[1]) - (pair_q[0] < pair_q[1])
    raise FHIRPathError(f"cannot compare {type_name(x)[1]} with {type_name(y)[1]}")


def _freeze(data: Any) -> Any:
    if type(data) is dict:
        return tuple(sorted((k, _freeze(v)) for k, v in data.items()))
    if type(data) is list:
        return tuple(_freeze(v) for v in data)
    return data


def item_key(item: Any) -> Any:
    """Equality key for distinct/union: resources by type and id, other elements by value."""
    if type(item) is Node:
        data = item.data
        if type(data) is dict:
            if "resourceType" in data:
                return ("r", data["resourceType"], data.get("id") or id(data))
            return ("e", _freeze(data))
        item = value_of(item)
    if isinstance(item, bool):
        return ("b", item)
    if is_number(item):
        return ("d", Decimal(item).normalize())
    if isinstance(item, Temporal):
        return ("t", item.kind, item.text)
    if isinstance(item, Quantity):
        return ("q", item.value.normalize(), item.unit)
    if isinstance(item, (dict, list)):
        return ("e", _freeze(item))
    return ("s", item)


def distinct(collection: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    out = []
    for item in collection:
        key = item_key(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def to_string(item: Any) -> str | None:
    value = value_of(item)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Temporal):
        return value.text
    if isinstance(value, Quantity):
        return value.text()
    return None


def string_input(collection: list[Any], name: str) -> str | None:
    item = single(collection, f"{name}()")
    if item is None:
        return None
    value = value_of(item)
    if not isinstance(value, str):
        text = to_string(item)
        if text is None:
            raise FHIRPathError(f"{name}() expects a string")
        return text
    return value


def number(item: Any, what: str) -> int | Decimal:
    value = value_of(item)
    if not is_number(value):
        raise FHIRPathError(f"{what} expects a number, got {value!r}")
    return value  # type: ignore[no-any-return]



def arith(op: str, a: Any, b: Any) -> list[Any]:
    x = a.data if type(a) is Node and a.type in ("integer", "positiveInt", "unsignedInt") else value_of(a)
    y = b.data if type(b) is Node and b.type in ("integer", "positiveInt", "unsignedInt") else value_of(b)
    if type(x) is int and type(y) is int:
        if op == "+":
            return [x + y]
        if op == "-":
            return [x - y]
        if op == "*":
            return [x * y]
        if op == "div":
            if y == 0:
                return []
            q = abs(x) // abs(y)
            return [q if (x >= 0) == (y >= 0) else -q]
        if op == "mod":
            if y == 0:
                return []
            q = abs(x) // abs(y)
            q = q if (x >= 0) == (y >= 0) else -q
            return [x - y * q]
    if op == "+":
        if isinstance(x, str) and isinstance(y, str):
            return [x + y]
        if isinstance(x, Temporal) and isinstance(y, Quantity):
            return [x.plus(y)]
        if isinstance(x, Quantity) and isinstance(y, Quantity):
            pair = x.comparable(y)
            if pair is None:
                raise FHIRPathError(f"cannot add {x} and {y}")
            return (
                [Quantity(pair[0] + pair[1], y.unit)]
                if x.unit != y.unit
                else [Quantity(x.value + y.value, x.unit)]
            )
    if op == "-":
        if isinstance(x, Temporal) and isinstance(y, Quantity):
            return [x.plus(y, -1)]
        if isinstance(x, str) and isinstance(y, Quantity):
            parsed = parse_temporal(x, "dateTime" if "T" in x else "date")
            if parsed is not None:
                return [parsed.plus(y, -1)]
        if isinstance(x, Quantity) and isinstance(y, Quantity) and x.unit == y.unit:
            return [Quantity(x.value - y.value, x.unit)]
    if op in ("*", "/") and isinstance(x, Quantity) and isinstance(y, Quantity):
        return [_quantity_product(op, x, y)]
    if op == "*" and is_number(x) and isinstance(y, Quantity):
        return [Quantity(y.value * x, y.unit)]
    if op in ("*", "/") and isinstance(x, Quantity) and is_number(y):
        return (
            [Quantity(x.value * y if op == "*" else x.value / Decimal(y), x.unit)]
            if (op == "*" or y != 0)
            else []
        )
    if not (is_number(x) and is_number(y)):
        raise FHIRPathError(f"cannot apply {op} to {x!r} and {y!r}")
    if op == "+":
        return [x + y]
    if op == "-":
        return [x - y]
    if op == "*":
        return [x * y]
    if op == "/":
        if y == 0:
            return []
        return [Decimal(x) / Decimal(y)]
    if op == "div":
        if y == 0:
            return []
        quotient = (Decimal(x) / Decimal(y)).to_integral_value(rounding=ROUND_DOWN)
        return [int(quotient)] if isinstance(x, int) and isinstance(y, int) else [quotient]
    if op == "mod":
        if y == 0:
            return []
        quotient = (Decimal(x) / Decimal(y)).to_integral_value(rounding=ROUND_DOWN)
        rest = Decimal(x) - Decimal(y) * quotient
        return [int(rest)] if isinstance(x, int) and isinstance(y, int) else [rest]
    raise FHIRPathError(f"unknown operator {op}")



def _quantity_product(op: str, x: Quantity, y: Quantity) -> Quantity:
    """Quantity * or / Quantity, in base UCUM units (2.0 'cm' * 2.0 'm' = 0.040 'm2')."""
    from app.fhirpath import ucum  # noqa: PLC0415

    a, b = ucum.canonical(x.value, x.keyword or x.unit), ucum.canonical(y.value, y.keyword or y.unit)
    if a is None or b is None:
        if x.unit == y.unit and op == "/":
            return Quantity(x.value / y.value, "1")
        raise FHIRPathError(f"cannot {'multiply' if op == '*' else 'divide'} {x.text()} and {y.text()}")
    sign = 1 if op == "*" else -1
    dim = tuple(p + sign * q for p, q in zip(a[1], b[1], strict=True))
    value = a[0] * b[0] if op == "*" else a[0] / b[0]
    return Quantity(value, ucum.unit_of(dim))  # type: ignore[arg-type]
