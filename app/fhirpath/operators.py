"""The FHIRPath operators in one table: precedence, typing rule, implementation (N1 §6 and §9).

Each row gives the N1 precedence (1 binds tightest; `.` and `[]` are 1, unary +/- 2), the typing
rule the static analysis applies (operand types in, result type and errors out) and the builder of
the compiled closure (left and right compiled operands in). `is`/`as` (precedence 5) have their own
node (`nodes.TypeOp`) because their right side is a type name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.fhirpath.model import R4Model
from app.fhirpath.nodes import Binary, Literal
from app.fhirpath.runtime import (
    Ctx,
    Fn,
    arith,
    compare_items,
    distinct,
    item_equal,
    item_equivalent,
    single,
    to_boolean,
    to_string,
)
from app.fhirpath.static import BOOLEAN, STRING, Static, categories, is_boolean, union
from app.fhirpath.values import Node

# a finding of a typing rule: (tier, message); tier "spec" (FHIRPath says it is an error) or "policy" (an
# expression that can only be right by accident: the checker of artifacts refuses it, see `analysis`)
Finding = tuple[str, str]
Typing = Callable[[R4Model, Static, Static], tuple[Static, list[Finding]]]
Builder = Callable[[Fn, Fn, Binary], Fn]


@dataclass(frozen=True)
class Operator:
    symbol: str
    precedence: int
    typing: Typing
    build: Builder


# -- typing rules ---------------------------------------------------------------------------------------

_TEMPORAL = frozenset({"date", "dateTime", "instant", "time"})


_ORDERED = frozenset({"Number", "String", "Date", "Time", "Quantity"})


def _comparable(model: R4Model, op: str, left: Static, right: Static, *, ordered: bool) -> list[Finding]:
    a, b = categories(model, left), categories(model, right)
    if not a or not b:
        return []
    if ordered:
        a, b = a & _ORDERED, b & _ORDERED
        if not a or not b:
            kinds = ", ".join(sorted((categories(model, left) or set()) | (categories(model, right) or set())))
            return [("spec", f"'{op}' cannot order {kinds} values")]
        if not a & b:
            return [("spec", f"'{op}' compares {left.describe()} with {right.describe()}: they cannot be ordered")]
        return []
    if not a & b:
        return [("policy", f"'{op}' compares {left.describe()} with {right.describe()}: the types are incompatible")]
    return []


def _equality(op: str) -> Typing:
    def rule(model: R4Model, left: Static, right: Static) -> tuple[Static, list[Finding]]:
        return BOOLEAN, _comparable(model, op, left, right, ordered=False)

    return rule


def _ordering(op: str) -> Typing:
    def rule(model: R4Model, left: Static, right: Static) -> tuple[Static, list[Finding]]:
        errors = _comparable(model, op, left, right, ordered=True)
        for side, static in (("left", left), ("right", right)):
            if static.many:
                errors.append(("policy", f"the {side} operand of '{op}' may hold more than one item"))
        return BOOLEAN, errors

    return rule


def _logical(op: str) -> Typing:
    def rule(model: R4Model, left: Static, right: Static) -> tuple[Static, list[Finding]]:
        errors: list[Finding] = []
        for side, static in (("left", left), ("right", right)):
            verdict = is_boolean(model, static)
            if verdict is False:
                errors.append(("policy", f"the {side} operand of '{op}' is {static.describe()}, not Boolean"))
            elif static.many:
                errors.append(("policy", f"the {side} operand of '{op}' may hold more than one item"))
        return BOOLEAN, errors

    return rule


# which categories each arithmetic operator accepts, and the result category
_ARITHMETIC: dict[str, dict[tuple[str, str], str]] = {
    "+": {
        ("Number", "Number"): "Number",
        ("String", "String"): "String",
        ("Quantity", "Quantity"): "Quantity",
        ("Date", "Quantity"): "Date",
        ("Time", "Quantity"): "Time",
    },
    "-": {
        ("Number", "Number"): "Number",
        ("Quantity", "Quantity"): "Quantity",
        ("Date", "Quantity"): "Date",
        ("Time", "Quantity"): "Time",
    },
    "*": {("Number", "Number"): "Number", ("Quantity", "Quantity"): "Quantity", ("Quantity", "Number"): "Quantity",
          ("Number", "Quantity"): "Quantity"},
    "/": {("Number", "Number"): "Number", ("Quantity", "Quantity"): "Quantity", ("Quantity", "Number"): "Quantity"},
    "div": {("Number", "Number"): "Number"},
    "mod": {("Number", "Number"): "Number"},
}


def _arithmetic(op: str) -> Typing:
    table = _ARITHMETIC[op]

    def rule(model: R4Model, left: Static, right: Static) -> tuple[Static, list[Finding]]:
        errors: list[Finding] = [
            ("policy", f"the {side} operand of '{op}' may hold more than one item")
            for side, static in (("left", left), ("right", right))
            if static.many
        ]
        a, b = categories(model, left), categories(model, right)
        if not a or not b:
            return Static(None, False), errors
        results = {table[(x, y)] for x in a for y in b if (x, y) in table}
        if not results:
            errors.append(("spec", f"'{op}' cannot combine {left.describe()} and {right.describe()}"))
            return Static(None, False), errors
        types: set[str] = set()
        for category in results:
            if category == "Number":
                operand_types = {model.system_type(t) for t in (left.types or set()) | (right.types or set())}
                types.add("System.Decimal" if op == "/" or "Decimal" in operand_types else "System.Integer")
            elif category == "Date":
                types.update(t if t.startswith("System.") else f"System.{model.system_type(t)}"
                             for t in left.types or () if model.system_type(t) in ("Date", "DateTime"))
            else:
                types.add(f"System.{category}")
        return Static(frozenset(types), False), errors

    return rule


def _concatenation(model: R4Model, left: Static, right: Static) -> tuple[Static, list[Finding]]:
    errors: list[Finding] = [
        ("policy", f"the {side} operand of '&' may hold more than one item")
        for side, static in (("left", left), ("right", right))
        if static.many
    ]
    return STRING, errors


def _union_typing(model: R4Model, left: Static, right: Static) -> tuple[Static, list[Finding]]:
    return union(left, right, many=True), []


def _membership(op: str) -> Typing:
    def rule(model: R4Model, left: Static, right: Static) -> tuple[Static, list[Finding]]:
        element = left if op == "in" else right
        errors = _comparable(model, op, left, right, ordered=False)
        if element.many:
            errors.append(("policy", f"the single operand of '{op}' may hold more than one item"))
        return BOOLEAN, errors

    return rule


# -- implementations ------------------------------------------------------------------------------------


def _literal_string(node: Any) -> str | None:
    return node.value if isinstance(node, Literal) and node.kind == "String" else None


def _build_equal(left: Fn, right: Fn, node: Binary) -> Fn:
    negate = node.op == "!="
    literal = _literal_string(node.right)
    if literal is not None:
        # `element = 'text'`, the commonest comparison in rules: compared without the general machinery

        def with_literal(ctx: Ctx, focus: list[Any]) -> list[Any]:
            a = left(ctx, focus)
            if not a:
                return []
            if len(a) != 1:
                return [negate]
            x = a[0]
            if type(x) is Node:
                data = x.data
                if type(data) is str and x.type not in _TEMPORAL:
                    return [(data == literal) != negate]
            elif type(x) is str:
                return [(x == literal) != negate]
            same = item_equal(x, literal)
            return [] if same is None else [same != negate]

        return with_literal

    def equal(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a, b = left(ctx, focus), right(ctx, focus)
        if not a or not b:
            return []
        if len(a) != len(b):
            return [negate]
        for x, y in zip(a, b, strict=True):
            same = item_equal(x, y)
            if same is None:
                return []
            if not same:
                return [negate]
        return [not negate]

    return equal


def _build_equivalent(left: Fn, right: Fn, node: Binary) -> Fn:
    negate = node.op == "!~"

    def equivalent(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a, b = left(ctx, focus), right(ctx, focus)
        if not a and not b:
            result = True
        elif len(a) != len(b):
            result = False
        else:
            result = all(any(item_equivalent(x, y) for y in b) for x in a)
        return [result != negate]

    return equivalent


_ORDER_TESTS: dict[str, Callable[[int], bool]] = {
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
    "<=": lambda c: c <= 0,
    ">=": lambda c: c >= 0,
}


def _build_ordering(left: Fn, right: Fn, node: Binary) -> Fn:
    op = node.op
    test = _ORDER_TESTS[op]

    def ordering(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = single(left(ctx, focus), op)
        b = single(right(ctx, focus), op)
        if a is None or b is None:
            return []
        result = compare_items(a, b)
        return [] if result is None else [test(result)]

    return ordering


def _build_and(left: Fn, right: Fn, node: Binary) -> Fn:
    def and_(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = to_boolean(left(ctx, focus))
        if a is False:
            return [False]
        b = to_boolean(right(ctx, focus))
        if b is False:
            return [False]
        if a is None or b is None:
            return []
        return [True]

    return and_


def _build_or(left: Fn, right: Fn, node: Binary) -> Fn:
    def or_(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = to_boolean(left(ctx, focus))
        if a is True:
            return [True]
        b = to_boolean(right(ctx, focus))
        if b is True:
            return [True]
        if a is None or b is None:
            return []
        return [False]

    return or_


def _build_xor(left: Fn, right: Fn, node: Binary) -> Fn:
    def xor(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a, b = to_boolean(left(ctx, focus)), to_boolean(right(ctx, focus))
        return [] if a is None or b is None else [a != b]

    return xor


def _build_implies(left: Fn, right: Fn, node: Binary) -> Fn:
    def implies(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = to_boolean(left(ctx, focus))
        if a is False:
            return [True]
        b = to_boolean(right(ctx, focus))
        if b is True:
            return [True]
        if a is None:
            return []
        return [] if b is None else [False]

    return implies


def _build_union(left: Fn, right: Fn, node: Binary) -> Fn:
    def union_(ctx: Ctx, focus: list[Any]) -> list[Any]:
        return distinct(left(ctx, focus) + right(ctx, focus))

    return union_


def _build_membership(left: Fn, right: Fn, node: Binary) -> Fn:
    op = node.op

    def membership(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a, b = left(ctx, focus), right(ctx, focus)
        element, collection = (a, b) if op == "in" else (b, a)
        item = single(element, op)
        if item is None:
            return []
        return [any(item_equal(item, other) is True for other in collection)]

    return membership


def _build_concatenation(left: Fn, right: Fn, node: Binary) -> Fn:
    def concat(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = single(left(ctx, focus), "&")
        b = single(right(ctx, focus), "&")
        return [(to_string(a) or "" if a is not None else "") + (to_string(b) or "" if b is not None else "")]

    return concat


def _build_arithmetic(left: Fn, right: Fn, node: Binary) -> Fn:
    op = node.op

    def arithmetic(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = single(left(ctx, focus), op)
        b = single(right(ctx, focus), op)
        if a is None or b is None:
            return []
        return arith(op, a, b)

    return arithmetic


OPERATORS: dict[str, Operator] = {
    op.symbol: op
    for op in (
        Operator("*", 3, _arithmetic("*"), _build_arithmetic),
        Operator("/", 3, _arithmetic("/"), _build_arithmetic),
        Operator("div", 3, _arithmetic("div"), _build_arithmetic),
        Operator("mod", 3, _arithmetic("mod"), _build_arithmetic),
        Operator("+", 4, _arithmetic("+"), _build_arithmetic),
        Operator("-", 4, _arithmetic("-"), _build_arithmetic),
        Operator("&", 4, _concatenation, _build_concatenation),
        Operator("|", 6, _union_typing, _build_union),
        Operator("<", 7, _ordering("<"), _build_ordering),
        Operator(">", 7, _ordering(">"), _build_ordering),
        Operator("<=", 7, _ordering("<="), _build_ordering),
        Operator(">=", 7, _ordering(">="), _build_ordering),
        Operator("=", 8, _equality("="), _build_equal),
        Operator("!=", 8, _equality("!="), _build_equal),
        Operator("~", 8, _equality("~"), _build_equivalent),
        Operator("!~", 8, _equality("!~"), _build_equivalent),
        Operator("in", 9, _membership("in"), _build_membership),
        Operator("contains", 9, _membership("contains"), _build_membership),
        Operator("and", 10, _logical("and"), _build_and),
        Operator("or", 11, _logical("or"), _build_or),
        Operator("xor", 11, _logical("xor"), _build_xor),
        Operator("implies", 12, _logical("implies"), _build_implies),
    )
}
TYPE_OPERATOR_PRECEDENCE = 5  # `is`, `as`
