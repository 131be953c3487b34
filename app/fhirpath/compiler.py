"""FHIRPath (N1, as FHIR R4 uses it) compiled from fhirpathpy's AST into Python closures.

Each AST node becomes `fn(ctx, focus) -> collection`; function arguments are compiled once, and
lambda arguments (where, select, exists, all, repeat, aggregate, iif) run with `$this`/`$index`
(and `$total`) set on the evaluation context. Semantics follow http://hl7.org/fhirpath/N1/:
empty propagation, singleton evaluation of collections, three-valued logic, date comparison by
precision, calendar arithmetic with quantities. Engine functions (memberOf, weight, resolve …) read
the per-evaluation `Environment` on the context.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from app.fhirpath.values import (
    Node,
    Quantity,
    Temporal,
    as_collection,
    children_of,
    is_type,
    navigate,
    navigator,
    parse_temporal,
    to_decimal,
    type_chain,
    type_name,
    value_of,
)

Fn = Callable[["Ctx", list], list]


class FHIRPathError(ValueError):
    """An expression that cannot be evaluated on this input (type errors, cardinality errors)."""


class Ctx:
    __slots__ = ("vars", "std", "env", "this", "index", "total", "root", "memo")

    def __init__(self, variables: Any, std: dict[str, list], env: Any, root: list, memo: dict | None = None):
        self.vars = variables
        self.std = std
        self.env = env
        self.this = root
        self.index: list = []
        self.total: list = []
        self.root = root
        self.memo = memo  # results of subexpressions that read only %-variables, shared per scope


# -- helpers --------------------------------------------------------------------------------------------


def _single(collection: list, what: str) -> Any:
    if not collection:
        return None
    if len(collection) > 1:
        raise FHIRPathError(f"{what} expects a single item, got {len(collection)}")
    return collection[0]


def to_boolean(collection: list) -> bool | None:
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


def _temporal_pair(a: Any, b: Any) -> tuple[Temporal, Temporal] | None:
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
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, Temporal) or isinstance(b, Temporal):
        pair = _temporal_pair(a, b)
        if pair is None:
            return False
        if (pair[0].kind == "time") != (pair[1].kind == "time"):
            return False
        result = pair[0].compare(pair[1])
        return None if result is None else result == 0
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        pair_q = a.comparable(b)
        return pair_q is not None and pair_q[0] == pair_q[1]
    if type(a) is not type(b):
        return False
    return a == b


def _normal_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def item_equivalent(x: Any, y: Any) -> bool:
    a, b = value_of(x), value_of(y)
    if isinstance(a, str) and isinstance(b, str):
        return _normal_text(a) == _normal_text(b)
    if _is_number(a) and _is_number(b):
        da, db = Decimal(a), Decimal(b)
        places = min(
            -da.as_tuple().exponent if da.as_tuple().exponent < 0 else 0,
            -db.as_tuple().exponent if db.as_tuple().exponent < 0 else 0,
        )
        quantum = Decimal(1).scaleb(-places)
        return da.quantize(quantum, ROUND_HALF_UP) == db.quantize(quantum, ROUND_HALF_UP)
    if isinstance(a, Temporal) or isinstance(b, Temporal):
        pair = _temporal_pair(a, b)
        return pair is not None and pair[0].precision == pair[1].precision and pair[0].compare(pair[1]) == 0
    return bool(item_equal(x, y))


def compare_items(x: Any, y: Any) -> int | None:
    a, b = value_of(x), value_of(y)
    if _is_number(a) and _is_number(b):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if isinstance(a, Temporal) or isinstance(b, Temporal):
        pair = _temporal_pair(a, b)
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
    if _is_number(item):
        return ("d", Decimal(item).normalize())
    if isinstance(item, Temporal):
        return ("t", item.kind, item.text)
    if isinstance(item, Quantity):
        return ("q", item.value.normalize(), item.unit)
    if isinstance(item, (dict, list)):
        return ("e", _freeze(item))
    return ("s", item)


def distinct(collection: list) -> list:
    seen: set = set()
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
        return f"{value.value} '{value.unit}'"
    return None


def _string_input(collection: list, name: str) -> str | None:
    item = _single(collection, f"{name}()")
    if item is None:
        return None
    value = value_of(item)
    if not isinstance(value, str):
        text = to_string(item)
        if text is None:
            raise FHIRPathError(f"{name}() expects a string")
        return text
    return value


def _number(item: Any, what: str) -> int | Decimal:
    value = value_of(item)
    if not _is_number(value):
        raise FHIRPathError(f"{what} expects a number, got {value!r}")
    return value


# -- compiling ------------------------------------------------------------------------------------------


def _identifier(node: dict[str, Any]) -> str:
    text = node.get("text") or (node.get("terminalNodeText") or [""])[0]
    return re.sub(r"^[`'\"]|[`'\"]$", "", text)


def _string_literal(text: str) -> str:
    body = text[1:-1]
    out = []
    i = 0
    escapes = {"'": "'", '"': '"', "`": "`", "r": "\r", "n": "\n", "t": "\t", "f": "\f", "\\": "\\", "/": "/"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 5 < len(body) + 1:
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(escapes.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _const(values: list) -> Fn:
    def fn(ctx: Ctx, focus: list) -> list:
        return values

    return fn


def compile_ast(node: dict[str, Any]) -> Fn:
    kind = node.get("type")
    handler = _COMPILERS.get(kind or "")
    if handler is None:
        raise FHIRPathError(f"unsupported FHIRPath construct {kind}")
    return _optimise(node, handler(node))


# What a subexpression depends on: the input ("focus"), $this/$index/$total, "env" (clock,
# terminology, references) and %-variables ("%name"). With none, it is folded to a constant at
# compile time; with only variables and env, its result is memoised per scope, so case features
# that share a prefix (the same questionnaire response walked for each red flag) compute it once.
_LOCAL = frozenset({"focus", "this", "index", "total"})
_LAMBDA_FUNCTIONS = frozenset({"where", "select", "repeat", "exists", "all"})
_ENV_FUNCTIONS = frozenset({"today", "now", "timeOfDay", "memberOf", "resolve", "weight", "ordinal", "trace"})
_INPUT_FREE_FUNCTIONS = frozenset({"today", "now", "timeOfDay"})
_NOT_OPTIMISED = frozenset(
    {
        "TermExpression",
        "LiteralTerm",
        "ParenthesizedTerm",
        "ExternalConstantTerm",
        "NullLiteral",
        "BooleanLiteral",
        "StringLiteral",
        "NumberLiteral",
        "DateTimeLiteral",
        "TimeLiteral",
        "QuantityLiteral",
    }
)
_free_cache: dict[int, frozenset[str]] = {}
_compile_lock = threading.Lock()
_lambda_depth = 0  # > 0 while compiling an argument that is evaluated on other input than the expression's


def _function_free(functn: dict[str, Any]) -> frozenset[str]:
    children = _children(functn)
    name = _identifier(children[0])
    params = _children(children[1]) if len(children) > 1 else []
    free: set[str] = {"env"} if name in _ENV_FUNCTIONS else set()
    for i, param in enumerate(params):
        inner = free_of(param)
        if name in _LAMBDA_FUNCTIONS:
            inner = inner - {"focus", "this", "index"}
        elif name == "aggregate":
            inner = inner - _LOCAL if i == 0 else frozenset("this" if v == "focus" else v for v in inner)
        elif name == "iif":
            inner = inner - {"focus", "this"}
        elif name in ("ofType", "is", "as"):
            inner = frozenset()
        else:  # a value argument is evaluated on $this
            inner = frozenset("this" if v == "focus" else v for v in inner)
        free |= inner
    return frozenset(free)


def compile_root(node: dict[str, Any]) -> Fn:
    """Compile a whole expression (the dependency analysis is cached per AST, by node identity)."""
    global _lambda_depth
    with _compile_lock:
        _free_cache.clear()
        _lambda_depth = 0
        try:
            return compile_ast(node)
        finally:
            _free_cache.clear()
            _lambda_depth = 0


def free_of(node: dict[str, Any]) -> frozenset[str]:
    key = id(node)
    cached = _free_cache.get(key)
    if cached is not None:
        return cached
    kind = node.get("type")
    children = _children(node)
    if kind == "ExternalConstantTerm":
        constant = children[0]
        inner = _children(constant)
        name = (
            _identifier(inner[0])
            if inner
            else _identifier({"text": (constant.get("terminalNodeText") or ["", ""])[1]})
        )
        free: frozenset[str] = frozenset({"%" + name})
    elif kind == "InvocationTerm":
        free = _invocation_free(children[0], as_term=True)
    elif kind == "InvocationExpression":
        free = free_of(children[0]) | _invocation_free(children[1], as_term=False)
    elif kind in ("TypeSpecifier",):
        free = frozenset()
    elif kind == "TypeExpression":
        free = free_of(children[0])
    else:
        free = frozenset().union(*(free_of(c) for c in children)) if children else frozenset()
    _free_cache[key] = free
    return free


def _invocation_free(node: dict[str, Any], *, as_term: bool) -> frozenset[str]:
    kind = node.get("type")
    if kind == "MemberInvocation":
        return frozenset({"focus"}) if as_term else frozenset()
    if kind == "FunctionInvocation":
        functn = _children(node)[0]
        name = _identifier(_children(functn)[0])
        free = _function_free(functn)
        if as_term and name not in _INPUT_FREE_FUNCTIONS:
            free = free | {"focus"}
        return free
    if kind == "ThisInvocation":
        return frozenset({"this"})
    if kind == "IndexInvocation":
        return frozenset({"index"})
    if kind == "TotalInvocation":
        return frozenset({"total"})
    return frozenset({"focus"})


_FOLD_CTX_ARGS = ({}, {}, None, [])


def _optimise(node: dict[str, Any], fn: Fn) -> Fn:
    if node.get("type") in _NOT_OPTIMISED:
        return fn
    free = free_of(node)
    if not free:
        try:
            value = fn(Ctx(*_FOLD_CTX_ARGS), [])
        except Exception:  # an error stays an evaluation error, raised when evaluated
            return fn
        return _const(value)
    if free & _LOCAL:
        if free & _LOCAL == {"focus"} and _lambda_depth == 0:
            # reads the expression's input (the record), not an item of an iteration: shared by every
            # evaluation over the same input in the scope, e.g. `entry.resource.ofType(Condition)`
            return _root_memoised(node, fn)
        return fn
    key = _structure(node)

    def memoised(ctx: Ctx, focus: list) -> list:
        memo = ctx.memo
        if memo is None:
            return fn(ctx, focus)
        value = memo.get(key)
        if value is None:
            value = fn(ctx, focus)
            memo[key] = value
        return value

    return memoised


def _root_memoised(node: dict[str, Any], fn: Fn) -> Fn:
    key = "@root" + _structure(node)

    def memoised(ctx: Ctx, focus: list) -> list:
        memo = ctx.memo
        if memo is None or focus is not ctx.root:
            return fn(ctx, focus)
        stored = memo.get(key)
        if stored is not None and stored[0] is focus:
            return stored[1]
        value = fn(ctx, focus)
        memo[key] = (focus, value)  # kept with its input: a scope may be used over another input
        return value

    return memoised


def _structure(node: dict[str, Any]) -> str:
    parts = [node.get("type") or "", "|".join(node.get("terminalNodeText") or []), node.get("text") or ""]
    return "(" + " ".join(parts) + "".join(_structure(c) for c in _children(node)) + ")"


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("children") or []


def _c_term(node):
    return compile_ast(_children(node)[0])


def _c_invocation_term(node):
    return _compile_invocation(_children(node)[0])


def _member_path(node: dict[str, Any]) -> list[str] | None:
    """`a.b.c` as ['a', 'b', 'c'] when the expression is only lower-case member steps from its input."""
    kind = node.get("type")
    if kind == "TermExpression":
        return _member_path(_children(node)[0])
    if kind == "InvocationTerm":
        inner = _children(node)[0]
        if inner.get("type") == "MemberInvocation":
            name = _identifier(_children(inner)[0])
            return [name] if not name[:1].isupper() else None
        return None
    if kind == "InvocationExpression":
        left = _member_path(_children(node)[0])
        right = _children(node)[1]
        if left is None or right.get("type") != "MemberInvocation":
            return None
        name = _identifier(_children(right)[0])
        return left + [name] if not name[:1].isupper() else None
    return None


def _c_invocation_expression(node):
    path = _member_path(node) if _lambda_depth else None
    if path is not None and len(path) > 1:
        # inside a lambda (evaluated per item, never memoised): `code.coding.system` as one step
        steps = tuple(navigator(name) for name in path)

        def walk(ctx, focus):
            for step in steps:
                focus = step(ctx, focus)
                if not focus:
                    return focus
            return focus

        return walk
    left = compile_ast(_children(node)[0])
    right = _compile_invocation(_children(node)[1])

    def fn(ctx, focus):
        return right(ctx, left(ctx, focus))

    return fn


def _compile_invocation(node: dict[str, Any]) -> Fn:
    kind = node.get("type")
    if kind == "MemberInvocation":
        name = _identifier(_children(node)[0])
        if name[:1].isupper():
            # a type name at the start of a path selects the items of that type
            def by_type(ctx, focus):
                selected = [i for i in focus if type(i) is Node and name in type_chain(i.type)]
                return selected if selected else navigate(focus, name)

            return by_type

        return navigator(name)
    if kind == "FunctionInvocation":
        return _compile_function(_children(node)[0])
    if kind == "ThisInvocation":
        return lambda ctx, focus: ctx.this
    if kind == "IndexInvocation":
        return lambda ctx, focus: ctx.index
    if kind == "TotalInvocation":
        return lambda ctx, focus: ctx.total
    raise FHIRPathError(f"unsupported invocation {kind}")


def _c_literal_term(node):
    return compile_ast(_children(node)[0])


def _c_parenthesized(node):
    return compile_ast(_children(node)[0])


def _c_null(node):
    return _const([])


def _c_boolean(node):
    return _const([node.get("text") == "true"])


def _c_string(node):
    return _const([_string_literal(node["text"])])


def _c_number(node):
    text = node["text"]
    value = Decimal(text) if "." in text else int(text)
    return _const([value])


def _c_datetime(node):
    text = node["text"][1:]
    temporal = parse_temporal(text, "dateTime" if "T" in text else "date")
    if temporal is None:
        raise FHIRPathError(f"invalid date/time literal @{text}")
    return _const([temporal])


def _c_time(node):
    text = node["text"][2:]
    temporal = parse_temporal(text, "time")
    if temporal is None:
        raise FHIRPathError(f"invalid time literal @T{text}")
    return _const([temporal])


def _c_quantity(node):
    quantity = _children(node)[0]
    value = Decimal(quantity["terminalNodeText"][0])
    unit_node = _children(quantity)[0] if _children(quantity) else {}
    unit = (unit_node.get("terminalNodeText") or [None])[0]
    if unit is None and _children(unit_node):
        unit = (_children(unit_node)[0].get("terminalNodeText") or ["1"])[0]
    return _const([Quantity(value, unit or "1")])


def _c_external_constant(node):
    constant = _children(node)[0]
    inner = _children(constant)
    name = (
        _identifier(inner[0])
        if inner
        else _identifier({"text": (constant.get("terminalNodeText") or ["", ""])[1]})
    )

    def fn(ctx, focus):
        value = ctx.vars.get(name)
        if value is None:
            value = ctx.std.get(name)
            if value is None:
                if name.startswith("vs-"):
                    return ["http://hl7.org/fhir/ValueSet/" + name[3:]]
                if name.startswith("ext-"):
                    return ["http://hl7.org/fhir/StructureDefinition/" + name[4:]]
                raise FHIRPathError(f"%{name} is not defined")
        return value

    return fn


def _c_indexer(node):
    collection = compile_ast(_children(node)[0])
    index = compile_ast(_children(node)[1])

    def fn(ctx, focus):
        items = collection(ctx, focus)
        position = _single(index(ctx, focus), "an indexer")
        if position is None:
            return []
        position = int(_number(position, "an indexer"))
        return [items[position]] if 0 <= position < len(items) else []

    return fn


def _c_polarity(node):
    operand = compile_ast(_children(node)[0])
    negative = node["terminalNodeText"][0] == "-"

    def fn(ctx, focus):
        item = _single(operand(ctx, focus), "unary minus")
        if item is None:
            return []
        value = value_of(item)
        if isinstance(value, Quantity):
            return [Quantity(-value.value, value.unit)] if negative else [value]
        value = _number(item, "unary minus")
        return [-value if negative else value]

    return fn


def _binary(node) -> tuple[Fn, Fn, str]:
    children = _children(node)
    return compile_ast(children[0]), compile_ast(children[1]), node["terminalNodeText"][0]


def _literal_string(node: dict[str, Any]) -> str | None:
    """The value of a string literal operand (TermExpression > LiteralTerm > StringLiteral), else None."""
    while node.get("type") in ("TermExpression", "LiteralTerm", "ParenthesizedTerm") and _children(node):
        node = _children(node)[0]
    return _string_literal(node["text"]) if node.get("type") == "StringLiteral" else None


def _c_equality(node):
    left, right, op = _binary(node)
    literal = _literal_string(_children(node)[1])

    if op in ("=", "!=") and literal is not None:
        # `element = 'text'`, the commonest comparison in rules: compared without the general machinery
        negate = op == "!="

        def with_literal(ctx, focus):
            a = left(ctx, focus)
            if not a:
                return []
            if len(a) != 1:
                return [negate]
            x = a[0]
            if type(x) is Node:
                data = x.data
                if type(data) is str and x.type not in _TEMPORAL_TYPES:
                    return [(data == literal) != negate]
            elif type(x) is str:
                return [(x == literal) != negate]
            same = item_equal(x, literal)
            return [] if same is None else [same != negate]

        return with_literal

    if op in ("=", "!="):
        negate = op == "!="

        def fn(ctx, focus):
            a, b = left(ctx, focus), right(ctx, focus)
            if not a or not b:
                return []
            if len(a) != len(b):
                return [negate]
            result = True
            for x, y in zip(a, b, strict=True):
                same = item_equal(x, y)
                if same is None:
                    return []
                if not same:
                    result = False
                    break
            return [result != negate]

        return fn

    negate = op == "!~"

    def equivalent(ctx, focus):
        a, b = left(ctx, focus), right(ctx, focus)
        if not a and not b:
            result = True
        elif len(a) != len(b):
            result = False
        else:
            result = all(any(item_equivalent(x, y) for y in b) for x in a)
        return [result != negate]

    return equivalent


def _c_inequality(node):
    left, right, op = _binary(node)
    test = {"<": lambda c: c < 0, ">": lambda c: c > 0, "<=": lambda c: c <= 0, ">=": lambda c: c >= 0}[op]

    def fn(ctx, focus):
        a = _single(left(ctx, focus), op)
        b = _single(right(ctx, focus), op)
        if a is None or b is None:
            return []
        result = compare_items(a, b)
        return [] if result is None else [test(result)]

    return fn


def _c_and(node):
    left, right, _ = _binary(node)

    def fn(ctx, focus):
        a = to_boolean(left(ctx, focus))
        if a is False:
            return [False]
        b = to_boolean(right(ctx, focus))
        if b is False:
            return [False]
        if a is None or b is None:
            return []
        return [True]

    return fn


def _c_or(node):
    left, right, op = _binary(node)
    if op == "xor":

        def xor(ctx, focus):
            a, b = to_boolean(left(ctx, focus)), to_boolean(right(ctx, focus))
            return [] if a is None or b is None else [a != b]

        return xor

    def fn(ctx, focus):
        a = to_boolean(left(ctx, focus))
        if a is True:
            return [True]
        b = to_boolean(right(ctx, focus))
        if b is True:
            return [True]
        if a is None or b is None:
            return []
        return [False]

    return fn


def _c_implies(node):
    left, right, _ = _binary(node)

    def fn(ctx, focus):
        a = to_boolean(left(ctx, focus))
        if a is False:
            return [True]
        b = to_boolean(right(ctx, focus))
        if b is True:
            return [True]
        if a is None:
            return []
        return [] if b is None else [False]

    return fn


def _c_union(node):
    left, right, _ = _binary(node)

    def fn(ctx, focus):
        return distinct(left(ctx, focus) + right(ctx, focus))

    return fn


def _c_membership(node):
    left, right, op = _binary(node)

    def fn(ctx, focus):
        a, b = left(ctx, focus), right(ctx, focus)
        element, collection = (a, b) if op == "in" else (b, a)
        item = _single(element, op)
        if item is None:
            return []
        return [any(item_equal(item, other) is True for other in collection)]

    return fn


def _type_of(node: dict[str, Any]) -> tuple[str | None, str]:
    text = (node.get("text") or "").replace("`", "")
    namespace, _, name = text.rpartition(".")
    return (namespace or None), name


def _c_type_expression(node):
    children = _children(node)
    operand = compile_ast(children[0])
    namespace, name = _type_of(children[1])
    op = node["terminalNodeText"][0]

    def fn(ctx, focus):
        item = _single(operand(ctx, focus), op)
        if item is None:
            return []
        matches = is_type(item, namespace, name)
        if op == "is":
            return [matches]
        return [item] if matches else []

    return fn


def _arith(op: str, a: Any, b: Any) -> list:
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
    if op in ("*", "/") and isinstance(x, Quantity) and _is_number(y):
        return (
            [Quantity(x.value * y if op == "*" else x.value / Decimal(y), x.unit)]
            if (op == "*" or y != 0)
            else []
        )
    if not (_is_number(x) and _is_number(y)):
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


def _c_arithmetic(node):
    left, right, op = _binary(node)
    if op == "&":

        def concat(ctx, focus):
            a = _single(left(ctx, focus), "&")
            b = _single(right(ctx, focus), "&")
            return [
                (to_string(a) or "" if a is not None else "") + (to_string(b) or "" if b is not None else "")
            ]

        return concat

    def fn(ctx, focus):
        a = _single(left(ctx, focus), op)
        b = _single(right(ctx, focus), op)
        if a is None or b is None:
            return []
        return _arith(op, a, b)

    return fn


_COMPILERS: dict[str, Callable[[dict[str, Any]], Fn]] = {
    "TermExpression": _c_term,
    "InvocationTerm": _c_invocation_term,
    "InvocationExpression": _c_invocation_expression,
    "LiteralTerm": _c_literal_term,
    "ParenthesizedTerm": _c_parenthesized,
    "ExternalConstantTerm": _c_external_constant,
    "NullLiteral": _c_null,
    "BooleanLiteral": _c_boolean,
    "StringLiteral": _c_string,
    "NumberLiteral": _c_number,
    "DateTimeLiteral": _c_datetime,
    "TimeLiteral": _c_time,
    "QuantityLiteral": _c_quantity,
    "IndexerExpression": _c_indexer,
    "PolarityExpression": _c_polarity,
    "EqualityExpression": _c_equality,
    "InequalityExpression": _c_inequality,
    "AndExpression": _c_and,
    "OrExpression": _c_or,
    "ImpliesExpression": _c_implies,
    "UnionExpression": _c_union,
    "MembershipExpression": _c_membership,
    "TypeExpression": _c_type_expression,
    "AdditiveExpression": _c_arithmetic,
    "MultiplicativeExpression": _c_arithmetic,
}


# -- functions ------------------------------------------------------------------------------------------


def _compile_inner(param: dict[str, Any]) -> Fn:
    """Compile an argument evaluated on something else than the expression's input (a lambda)."""
    global _lambda_depth
    _lambda_depth += 1
    try:
        return compile_ast(param)
    finally:
        _lambda_depth -= 1


def _lambda(param: dict[str, Any]) -> Callable[[Ctx, Any, int], list]:
    """A lambda argument: evaluated on one item with $this and $index set."""
    body = _compile_inner(param)

    def run(ctx: Ctx, item: Any, index: int) -> list:
        # an error abandons the whole evaluation, so the context is restored on success only
        saved_this, saved_index = ctx.this, ctx.index
        this = ctx.this = [item]
        ctx.index = [index]
        result = body(ctx, this)
        ctx.this, ctx.index = saved_this, saved_index
        return result

    return run


def _value(param: dict[str, Any]) -> Fn:
    """A value argument: evaluated on the current $this (the input of the expression being evaluated)."""
    body = compile_ast(param)

    def run(ctx: Ctx, focus: list) -> list:
        return body(ctx, ctx.this)

    return run


def _f_where(params):
    body = _compile_inner(params[0])

    def fn(ctx, focus):
        saved_this, saved_index = ctx.this, ctx.index
        out = []
        for i, item in enumerate(focus):
            this = ctx.this = [item]
            ctx.index = [i]
            result = body(ctx, this)
            if result:
                if len(result) > 1:
                    raise FHIRPathError(f"where() criteria must yield one boolean, got {len(result)} items")
                value = result[0]
                if (
                    value is True
                    or (type(value) is Node and value.data is True)
                    or (value is not False and not (type(value) is Node and value.data is False))
                ):
                    out.append(item)
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return fn


def _f_select(params):
    body = _compile_inner(params[0])

    def fn(ctx, focus):
        saved_this, saved_index = ctx.this, ctx.index
        out: list = []
        for i, item in enumerate(focus):
            this = ctx.this = [item]
            ctx.index = [i]
            out.extend(body(ctx, this))
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return fn


def _f_repeat(params):
    projection = _lambda(params[0])

    def fn(ctx, focus):
        out: list = []
        seen: set = set()
        pending = list(focus)
        while pending:
            found: list = []
            for i, item in enumerate(pending):
                for child in projection(ctx, item, i):
                    key = item_key(child)
                    if key not in seen:
                        seen.add(key)
                        out.append(child)
                        found.append(child)
            pending = found
        return out

    return fn


def _f_exists(params):
    if not params:
        return lambda ctx, focus: [True] if focus else [False]
    body = _compile_inner(params[0])

    def fn(ctx, focus):
        saved_this, saved_index = ctx.this, ctx.index
        found = False
        for i, item in enumerate(focus):
            this = ctx.this = [item]
            ctx.index = [i]
            if to_boolean(body(ctx, this)) is True:
                found = True
                break
        ctx.this, ctx.index = saved_this, saved_index
        return [found]

    return fn


def _f_all(params):
    criteria = _lambda(params[0])

    def fn(ctx, focus):
        return [all(to_boolean(criteria(ctx, item, i)) is True for i, item in enumerate(focus))]

    return fn


def _f_aggregate(params):
    aggregator = _compile_inner(params[0])
    initial = _value(params[1]) if len(params) > 1 else None

    def fn(ctx, focus):
        saved = ctx.this, ctx.index, ctx.total
        ctx.total = initial(ctx, focus) if initial is not None else []
        try:
            for i, item in enumerate(focus):
                ctx.this = [item]
                ctx.index = [i]
                ctx.total = aggregator(ctx, ctx.this)
            return ctx.total
        finally:
            ctx.this, ctx.index, ctx.total = saved

    return fn


def _f_iif(params):
    criterion = _compile_inner(params[0])
    true_result = _compile_inner(params[1])
    otherwise = _compile_inner(params[2]) if len(params) > 2 else None

    def fn(ctx, focus):
        if len(focus) > 1:
            raise FHIRPathError("iif() expects a single input item")
        saved = ctx.this
        ctx.this = focus
        try:
            if to_boolean(criterion(ctx, focus)) is True:
                return true_result(ctx, focus)
            return otherwise(ctx, focus) if otherwise is not None else []
        finally:
            ctx.this = saved

    return fn


def _simple(body: Callable[[list], Any]):
    """A function of its input collection only; returns a collection or one value (None = empty)."""

    def build(params):
        def fn(ctx, focus):
            result = body(focus)
            if result is None:
                return []
            return result if type(result) is list else [result]

        return fn

    return build


def _with_args(body: Callable[..., Any]):
    """A function of its input and evaluated value arguments (each a collection)."""

    def build(params):
        args = tuple(compile_ast(p) for p in params)

        if not args:

            def fn0(ctx, focus):
                result = body(ctx, focus)
                if result is None:
                    return []
                return result if type(result) is list else [result]

            return fn0

        if len(args) == 1:
            first = args[0]

            def fn1(ctx, focus):
                result = body(ctx, focus, first(ctx, ctx.this))
                if result is None:
                    return []
                return result if type(result) is list else [result]

            return fn1

        def fn(ctx, focus):
            this = ctx.this
            result = body(ctx, focus, *[a(ctx, this) for a in args])
            if result is None:
                return []
            return result if type(result) is list else [result]

        return fn

    return build


def _typed(body: Callable[[list, str | None, str], list]):
    def build(params):
        namespace, name = _type_of(params[0])

        def fn(ctx, focus):
            return body(focus, namespace, name)

        return fn

    return build


def _arg_value(collection: list, what: str) -> Any:
    item = _single(collection, what)
    return None if item is None else value_of(item)


def _count_arg(collection: list, what: str) -> int:
    value = _arg_value(collection, what)
    if not _is_number(value):
        raise FHIRPathError(f"{what} expects an integer")
    return int(value)


def _not(focus):
    value = to_boolean(focus)
    return None if value is None else (not value)


def _boolean_all(focus, wanted: bool, all_: bool):
    values = [value_of(i) for i in focus]
    if any(not isinstance(v, bool) for v in values):
        raise FHIRPathError("expects booleans")
    return all(v is wanted for v in values) if all_ else any(v is wanted for v in values)


def _to_integer(focus):
    item = _single(focus, "toInteger()")
    if item is None:
        return None
    value = value_of(item)
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    return None


def _to_decimal(focus):
    item = _single(focus, "toDecimal()")
    if item is None:
        return None
    value = value_of(item)
    if isinstance(value, bool):
        return Decimal(1 if value else 0)
    if isinstance(value, str) and not re.fullmatch(r"\s*[+-]?\d+(\.\d+)?\s*", value):
        return None
    return to_decimal(value)


def _to_boolean(focus):
    item = _single(focus, "toBoolean()")
    if item is None:
        return None
    value = value_of(item)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.lower()
        if low in ("true", "t", "yes", "y", "1", "1.0"):
            return True
        if low in ("false", "f", "no", "n", "0", "0.0"):
            return False
        return None
    if _is_number(value):
        if value == 1:
            return True
        if value == 0:
            return False
    return None


def _to_string(focus):
    item = _single(focus, "toString()")
    return None if item is None else to_string(item)


def _to_temporal(kind: str):
    def convert(focus):
        item = _single(focus, f"to{kind}()")
        if item is None:
            return None
        value = value_of(item)
        if isinstance(value, Temporal):
            if value.kind == "time" and kind != "time" or kind == "time" and value.kind != "time":
                return None
            return value.as_kind(kind) if kind != "time" else value
        if isinstance(value, str):
            return parse_temporal(value, kind)
        return None

    return convert


def _to_quantity(ctx, focus, *args):
    item = _single(focus, "toQuantity()")
    if item is None:
        return None
    value = value_of(item)
    quantity = None
    if isinstance(value, Quantity):
        quantity = value
    elif _is_number(value):
        quantity = Quantity(Decimal(value), "1")
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*('([^']+)'|[a-z]+)?\s*", value)
        if m:
            quantity = Quantity(Decimal(m.group(1)), m.group(3) or m.group(2) or "1")
    if quantity is None:
        return None
    if args and args[0]:
        unit = str(_arg_value(args[0], "toQuantity()"))
        if unit != quantity.unit:
            pair = quantity.comparable(Quantity(Decimal(1), unit))
            if pair is None:
                return None
            return Quantity(pair[0] / pair[1], unit)
    return quantity


def _converts(convert: Callable[..., Any]):
    def body(focus):
        if len(focus) != 1:
            return None if not focus else False
        try:
            return convert(focus) is not None
        except FHIRPathError:
            return False

    return body


def _converts_quantity(focus):
    if len(focus) != 1:
        return None if not focus else False
    return _to_quantity(None, focus) is not None


def _string_fn(body: Callable[..., Any]):
    name = body.__name__.strip("_")

    def wrapped(ctx, focus, *args):
        if not focus:
            return None
        item = focus[0]
        text = item.data if type(item) is Node else item
        if len(focus) > 1 or not isinstance(text, str):
            text = _string_input(focus, name)
            if text is None:
                return None
        values = []
        for arg in args:
            if not arg:
                return None
            if len(arg) > 1:
                raise FHIRPathError(f"{name}() expects single arguments")
            value = arg[0]
            values.append(value_of(value) if type(value) is Node else value)
        return body(text, *values)

    return wrapped


def _substring(text, start, length=None):
    start = int(start)
    if start < 0 or start >= len(text):
        return None
    if length is None:
        return text[start:]
    return text[start : start + max(int(length), 0)]


def _index_of(text, sub):
    return text.find(sub)


def _starts_with(text, prefix):
    return text.startswith(prefix)


def _ends_with(text, suffix):
    return text.endswith(suffix)


def _contains(text, sub):
    return sub in text


def _upper(text):
    return text.upper()


def _lower(text):
    return text.lower()


def _replace(text, pattern, substitution):
    return text.replace(pattern, substitution)


def _matches(text, regex):
    return re.search(regex, text, re.DOTALL) is not None


def _replace_matches(text, regex, substitution):
    return re.sub(regex, re.sub(r"\$(\d+)", r"\\\1", substitution), text)


def _length(text):
    return len(text)


def _to_chars(text):
    return list(text)


def _split(text, separator):
    return text.split(separator)


def _trim(text):
    return text.strip()


def _encode(text, encoding):
    import base64
    import urllib.parse

    if encoding == "base64":
        return base64.b64encode(text.encode()).decode()
    if encoding == "urlbase64":
        return base64.urlsafe_b64encode(text.encode()).decode()
    if encoding == "hex":
        return text.encode().hex()
    if encoding == "url":
        return urllib.parse.quote(text)
    return None


def _decode(text, encoding):
    import base64
    import urllib.parse

    if encoding == "base64":
        return base64.b64decode(text).decode()
    if encoding == "urlbase64":
        return base64.urlsafe_b64decode(text).decode()
    if encoding == "hex":
        return bytes.fromhex(text).decode()
    if encoding == "url":
        return urllib.parse.unquote(text)
    return None


def _join(ctx, focus, *args):
    separator = _arg_value(args[0], "join()") if args else ""
    parts = []
    for item in focus:
        text = to_string(item)
        if text is None:
            raise FHIRPathError("join() expects strings")
        parts.append(text)
    return "".join(parts) if not separator else str(separator).join(parts)


def _math(body: Callable[[Decimal | int], Any]):
    def run(focus):
        item = _single(focus, "a math function")
        if item is None:
            return None
        value = value_of(item)
        if isinstance(value, Quantity):
            result = body(value.value)
            return None if result is None else Quantity(Decimal(result), value.unit)
        return body(_number(item, "a math function"))

    return run


def _ceiling(v):
    return int(math.ceil(v))


def _floor(v):
    return int(math.floor(v))


def _truncate(v):
    return int(v)


def _sqrt(v):
    return None if v < 0 else Decimal(v).sqrt()


def _exp(v):
    return Decimal(v).exp()


def _ln(v):
    return None if v <= 0 else Decimal(v).ln()


def _round(ctx, focus, *args):
    item = _single(focus, "round()")
    if item is None:
        return None
    precision = _count_arg(args[0], "round()") if args and args[0] else 0
    value = Decimal(_number(item, "round()"))
    return value.quantize(Decimal(1).scaleb(-precision), ROUND_HALF_UP)


def _log(ctx, focus, base):
    item = _single(focus, "log()")
    b = _arg_value(base, "log()")
    if item is None or b is None:
        return None
    value = Decimal(_number(item, "log()"))
    if value <= 0 or b <= 0 or b == 1:
        return None
    return value.ln() / Decimal(b).ln()


def _power(ctx, focus, exponent):
    item = _single(focus, "power()")
    e = _arg_value(exponent, "power()")
    if item is None or e is None:
        return None
    base = _number(item, "power()")
    try:
        result = Decimal(base) ** Decimal(e)
    except InvalidOperation:
        return None
    if isinstance(base, int) and isinstance(e, int) and e >= 0:
        return int(result)
    return result


def _sum(focus):
    values = [value_of(i) for i in focus]
    if not values:
        return 0
    if all(isinstance(v, Quantity) for v in values):
        total = values[0]
        for v in values[1:]:
            total = _arith("+", total, v)[0]
        return total
    if any(not _is_number(v) for v in values):
        raise FHIRPathError("sum() expects numbers")
    return sum(values)


def _extreme(focus, largest: bool):
    if not focus:
        return None
    best = focus[0]
    for item in focus[1:]:
        result = compare_items(item, best)
        if result is not None and (result > 0 if largest else result < 0):
            best = item
    return value_of(best)


def _avg(focus):
    values = [value_of(i) for i in focus]
    if not values:
        return None
    if any(not _is_number(v) for v in values):
        raise FHIRPathError("avg() expects numbers")
    return Decimal(sum(values)) / Decimal(len(values))


def _single_fn(focus):
    if len(focus) > 1:
        raise FHIRPathError("single() found more than one item")
    return list(focus)


def _skip(ctx, focus, n):
    return list(focus[max(_count_arg(n, "skip()"), 0) :])


def _take(ctx, focus, n):
    return list(focus[: max(_count_arg(n, "take()"), 0)])


def _intersect(ctx, focus, other):
    keys = {item_key(i) for i in other}
    return [i for i in distinct(focus) if item_key(i) in keys]


def _exclude(ctx, focus, other):
    keys = {item_key(i) for i in other}
    return [i for i in focus if item_key(i) not in keys]


def _union(ctx, focus, other):
    return distinct(list(focus) + list(other))


def _combine(ctx, focus, other):
    return list(focus) + list(other)


def _subset_of(ctx, focus, other):
    return all(any(item_equal(a, b) is True for b in other) for a in focus)


def _superset_of(ctx, focus, other):
    return all(any(item_equal(a, b) is True for a in focus) for b in other)


def _of_type(focus, namespace, name):
    return [i for i in focus if is_type(i, namespace, name)]


def _is_fn(focus, namespace, name):
    item = _single(focus, "is()")
    return [] if item is None else [is_type(item, namespace, name)]


def _as_fn(focus, namespace, name):
    item = _single(focus, "as()")
    return [item] if item is not None and is_type(item, namespace, name) else []


def _extension(ctx, focus, url):
    wanted = _arg_value(url, "extension()")
    out = []
    for ext in [e for e in _navigate_extensions(focus)]:
        if isinstance(ext.data, dict) and ext.data.get("url") == wanted:
            out.append(ext)
    return out


def _navigate_extensions(focus):
    return navigate(focus, "extension")


def _children_fn(focus):
    out: list = []
    for item in focus:
        out.extend(children_of(item))
    return out


def _descendants(focus):
    out: list = []
    pending = list(focus)
    while pending:
        found = _children_fn(pending)
        out.extend(found)
        pending = found
    return out


def _type_fn(focus):
    return [
        Node({"namespace": ns, "name": name}, None, "TypeInfo") for ns, name in (type_name(i) for i in focus)
    ]


def _has_value(focus):
    return len(focus) == 1 and type(focus[0]) is Node and not isinstance(focus[0].data, (dict, list))


def _get_value(focus):
    if len(focus) == 1 and type(focus[0]) is Node and not isinstance(focus[0].data, (dict, list)):
        return value_of(focus[0])
    return None


def _trace(ctx, focus, *args):
    tracer = getattr(ctx.env, "trace", None)
    if tracer is not None:
        tracer(_arg_value(args[0], "trace()") if args else "", focus)
    return list(focus)


def _today(ctx, focus):
    return ctx.std["today"]


def _now(ctx, focus):
    return ctx.std["now"]


def _time_of_day(ctx, focus):
    now = ctx.std["now"][0]
    return Temporal(
        "time", now.parts, 7, None, now.text.split("T", 1)[1][:12] if "T" in now.text else "00:00:00"
    )


def _member_of(ctx, focus, url):
    terminology = ctx.env.terminology
    if terminology is None:
        raise FHIRPathError("memberOf() needs a terminology index")
    if len(url) != 1:
        if not url:
            return []
        raise FHIRPathError("memberOf() expects one ValueSet url")
    target = url[0].data if type(url[0]) is Node else url[0]
    if not terminology.has_valueset(target):
        raise FHIRPathError(f"memberOf(): ValueSet {target} is not loaded")
    test = terminology.matcher(target)
    out = []
    for item in focus:
        verdict = test(item.data if type(item) is Node else item)
        if verdict is not None:
            out.append(verdict)
    return out


def _weight(ctx, focus):
    env = ctx.env
    out = []
    for item in focus:
        coding = item.data if type(item) is Node else item
        if not isinstance(coding, dict):
            continue
        weight = env.weight_of(coding)
        if weight is not None:
            out.append(weight)
    return out


def _resolve(ctx, focus):
    references = ctx.env.references
    out = []
    for item in focus:
        value = item.data if type(item) is Node else item
        ref = value.get("reference") if isinstance(value, dict) else value
        if isinstance(ref, str) and ref in references:
            out.append(as_collection(references[ref])[0])
    return out


def _html_checks(focus):
    return True


# name -> (builder, min arguments, max arguments)
FUNCTIONS: dict[str, tuple[Callable[[list], Fn], int, int]] = {
    "empty": (_simple(lambda f: not f), 0, 0),
    "exists": (_f_exists, 0, 1),
    "all": (_f_all, 1, 1),
    "allTrue": (_simple(lambda f: _boolean_all(f, True, True)), 0, 0),
    "anyTrue": (_simple(lambda f: _boolean_all(f, True, False)), 0, 0),
    "allFalse": (_simple(lambda f: _boolean_all(f, False, True)), 0, 0),
    "anyFalse": (_simple(lambda f: _boolean_all(f, False, False)), 0, 0),
    "subsetOf": (_with_args(_subset_of), 1, 1),
    "supersetOf": (_with_args(_superset_of), 1, 1),
    "count": (_simple(len), 0, 0),
    "distinct": (_simple(distinct), 0, 0),
    "isDistinct": (_simple(lambda f: len(distinct(f)) == len(f)), 0, 0),
    "where": (_f_where, 1, 1),
    "select": (_f_select, 1, 1),
    "repeat": (_f_repeat, 1, 1),
    "ofType": (_typed(_of_type), 1, 1),
    "is": (_typed(_is_fn), 1, 1),
    "as": (_typed(_as_fn), 1, 1),
    "single": (_simple(_single_fn), 0, 0),
    "first": (_simple(lambda f: f[:1]), 0, 0),
    "last": (_simple(lambda f: f[-1:]), 0, 0),
    "tail": (_simple(lambda f: f[1:]), 0, 0),
    "skip": (_with_args(_skip), 1, 1),
    "take": (_with_args(_take), 1, 1),
    "intersect": (_with_args(_intersect), 1, 1),
    "exclude": (_with_args(_exclude), 1, 1),
    "union": (_with_args(_union), 1, 1),
    "combine": (_with_args(_combine), 1, 1),
    "iif": (_f_iif, 2, 3),
    "aggregate": (_f_aggregate, 1, 2),
    "not": (_simple(_not), 0, 0),
    "toInteger": (_simple(_to_integer), 0, 0),
    "toDecimal": (_simple(_to_decimal), 0, 0),
    "toBoolean": (_simple(_to_boolean), 0, 0),
    "toString": (_simple(_to_string), 0, 0),
    "toDate": (_simple(_to_temporal("date")), 0, 0),
    "toDateTime": (_simple(_to_temporal("dateTime")), 0, 0),
    "toTime": (_simple(_to_temporal("time")), 0, 0),
    "toQuantity": (_with_args(_to_quantity), 0, 1),
    "convertsToInteger": (_simple(_converts(_to_integer)), 0, 0),
    "convertsToDecimal": (_simple(_converts(_to_decimal)), 0, 0),
    "convertsToBoolean": (_simple(_converts(_to_boolean)), 0, 0),
    "convertsToString": (_simple(_converts(_to_string)), 0, 0),
    "convertsToDate": (_simple(_converts(_to_temporal("date"))), 0, 0),
    "convertsToDateTime": (_simple(_converts(_to_temporal("dateTime"))), 0, 0),
    "convertsToTime": (_simple(_converts(_to_temporal("time"))), 0, 0),
    "convertsToQuantity": (_simple(_converts_quantity), 0, 1),
    "indexOf": (_with_args(_string_fn(_index_of)), 1, 1),
    "substring": (_with_args(_string_fn(_substring)), 1, 2),
    "startsWith": (_with_args(_string_fn(_starts_with)), 1, 1),
    "endsWith": (_with_args(_string_fn(_ends_with)), 1, 1),
    "contains": (_with_args(_string_fn(_contains)), 1, 1),
    "upper": (_with_args(_string_fn(_upper)), 0, 0),
    "lower": (_with_args(_string_fn(_lower)), 0, 0),
    "replace": (_with_args(_string_fn(_replace)), 2, 2),
    "matches": (_with_args(_string_fn(_matches)), 1, 1),
    "replaceMatches": (_with_args(_string_fn(_replace_matches)), 2, 2),
    "length": (_with_args(_string_fn(_length)), 0, 0),
    "toChars": (_with_args(_string_fn(_to_chars)), 0, 0),
    "split": (_with_args(_string_fn(_split)), 1, 1),
    "trim": (_with_args(_string_fn(_trim)), 0, 0),
    "encode": (_with_args(_string_fn(_encode)), 1, 1),
    "decode": (_with_args(_string_fn(_decode)), 1, 1),
    "join": (_with_args(_join), 0, 1),
    "abs": (_simple(_math(abs)), 0, 0),
    "ceiling": (_simple(_math(_ceiling)), 0, 0),
    "floor": (_simple(_math(_floor)), 0, 0),
    "truncate": (_simple(_math(_truncate)), 0, 0),
    "sqrt": (_simple(_math(_sqrt)), 0, 0),
    "exp": (_simple(_math(_exp)), 0, 0),
    "ln": (_simple(_math(_ln)), 0, 0),
    "round": (_with_args(_round), 0, 1),
    "log": (_with_args(_log), 1, 1),
    "power": (_with_args(_power), 1, 1),
    "sum": (_simple(_sum), 0, 0),
    "min": (_simple(lambda f: _extreme(f, False)), 0, 0),
    "max": (_simple(lambda f: _extreme(f, True)), 0, 0),
    "avg": (_simple(_avg), 0, 0),
    "children": (_simple(_children_fn), 0, 0),
    "descendants": (_simple(_descendants), 0, 0),
    "type": (_simple(_type_fn), 0, 0),
    "trace": (_with_args(_trace), 1, 2),
    "today": (_with_args(_today), 0, 0),
    "now": (_with_args(_now), 0, 0),
    "timeOfDay": (_with_args(_time_of_day), 0, 0),
    "extension": (_with_args(_extension), 1, 1),
    "hasValue": (_simple(_has_value), 0, 0),
    "getValue": (_simple(_get_value), 0, 0),
    "htmlChecks": (_simple(_html_checks), 0, 0),
    "memberOf": (_with_args(_member_of), 1, 1),
    "resolve": (_with_args(_resolve), 0, 0),
    "weight": (_with_args(_weight), 0, 0),
    "ordinal": (_with_args(_weight), 0, 0),
}


def _compile_function(functn: dict[str, Any]) -> Fn:
    children = _children(functn)
    name = _identifier(children[0])
    params = _children(children[1]) if len(children) > 1 else []
    spec = FUNCTIONS.get(name)
    if spec is None:
        raise FHIRPathError(f"unknown function {name}()")
    builder, low, high = spec
    if not low <= len(params) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise FHIRPathError(f"{name}() takes {expected} argument(s), not {len(params)}")
    return builder(params)
