"""The FHIRPath functions, grouped by the sections of the N1 specification, in one registry (`FUNCTIONS`).

Each entry (`FunctionSpec`) gives the arity, how the arguments are evaluated (`mode`: a value on
`$this`, a lambda per input item, a type name, or the special forms iif/aggregate), the typing rule
the static analysis applies, and the builder of the compiled closure. Functions the host supplies
(memberOf, resolve, htmlChecks …) are not here: see `host`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from app.fhirpath.model import R4Model
from app.fhirpath.nodes import Call, Expr
from app.fhirpath.runtime import (
    Ctx,
    FHIRPathError,
    Fn,
    arith,
    compare_items,
    distinct,
    is_number,
    item_equal,
    item_key,
    number,
    single,
    string_input,
    to_boolean,
    to_string,
)
from app.fhirpath.static import BOOLEAN, DECIMAL, INTEGER, STRING, UNKNOWN, Static, more, system, union
from app.fhirpath.values import (
    Node,
    Quantity,
    Temporal,
    calendar_unit,
    children_of,
    is_type,
    navigate,
    parse_temporal,
    to_decimal,
    type_name,
    value_of,
)

Compile = Callable[[Expr], Fn]
Builder = Callable[[list[Any], Compile], Fn]


@dataclass(frozen=True)
class Typing:
    """What a function's typing rule sees: the model, the input's and the arguments' static types."""

    model: R4Model
    input: Static
    args: list[Static]
    node: Call


Result = Callable[[Typing], Static]


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    section: str
    low: int
    high: int
    build: Builder
    result: Result
    # how arguments are evaluated: "value" (on $this), "lambda" (per input item with $this/$index),
    # "type" (a type name), "iif", "aggregate"
    mode: str = "value"
    criterion: bool = False  # the first argument is a Boolean criterion (one item, Boolean)
    env: bool = False  # reads the evaluation environment (clock, trace)
    input_free: bool = False  # does not read its input


def _fixed(static: Static) -> Result:
    return lambda t: static


def _same(t: Typing) -> Static:
    return t.input


def _same_one(t: Typing) -> Static:
    return t.input.one()


def _same_many(t: Typing) -> Static:
    return t.input.with_many(True)


def _per_item(static: Static) -> Result:
    """One result per input item (a many input gives many results)."""
    return lambda t: static.with_many(t.input.many)


def _lambda(param: Expr, compile: Compile) -> Callable[[Ctx, Any, int], list[Any]]:
    """A lambda argument: evaluated on one item with $this and $index set."""
    body = compile(param)

    def run(ctx: Ctx, item: Any, index: int) -> list[Any]:
        # an error abandons the whole evaluation, so the context is restored on success only
        saved_this, saved_index = ctx.this, ctx.index
        this = ctx.this = [item]
        ctx.index = [index]
        result = body(ctx, this)
        ctx.this, ctx.index = saved_this, saved_index
        return result

    return run


def _value(param: Expr, compile: Compile) -> Fn:
    """A value argument: evaluated on the current $this (the input of the expression being evaluated)."""
    body = compile(param)

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        return body(ctx, ctx.this)

    return run


def _reads_index(param: Any) -> bool:
    """Whether a criterion reads `$index` (its own, not a nested iteration's): set per item only then."""
    return "index" in getattr(param, "free", ("index",))


def _f_where(params: list[Any], compile: Compile) -> Fn:
    body = compile(params[0])
    indexed = _reads_index(params[0])

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
        saved_this, saved_index = ctx.this, ctx.index
        out = []
        for i, item in enumerate(focus):
            this = ctx.this = [item]
            if indexed:
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


# Results of projections that are a function of the item alone (`select(<expr of $this>)` over strings and
# integers, e.g. a date's day number), shared by every evaluation: the same input gives the same output.
_PURE_RESULTS: dict[tuple[str, type, Any], tuple[Any, ...]] = {}
_PURE_LIMIT = 1 << 16
_PURE_INPUTS = (str, int, bool)


def _f_select(params: list[Any], compile: Compile) -> Fn:
    body = compile(params[0])
    indexed = _reads_index(params[0])
    # reads nothing but the item: no variable, environment, $index or $total
    pure = params[0].free <= {"focus", "this"}
    key = params[0].key

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
        saved_this, saved_index = ctx.this, ctx.index
        out: list[Any] = []
        for i, item in enumerate(focus):
            kind = type(item)
            if pure and kind in _PURE_INPUTS:
                shared = (key, kind, item)
                hit = _PURE_RESULTS.get(shared)
                if hit is None:
                    this = ctx.this = [item]
                    hit = tuple(body(ctx, this))  # an error is raised as before, and nothing is kept
                    if len(_PURE_RESULTS) >= _PURE_LIMIT:
                        _PURE_RESULTS.clear()
                    _PURE_RESULTS[shared] = hit
                out.extend(hit)
                continue
            this = ctx.this = [item]
            if indexed:
                ctx.index = [i]
            out.extend(body(ctx, this))
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return fn


def _f_repeat(params: list[Any], compile: Compile) -> Fn:
    projection = _lambda(params[0], compile)

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
        out: list[Any] = []
        seen: set[Any] = set()
        pending = list(focus)
        while pending:
            found: list[Any] = []
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


def _f_exists(params: list[Any], compile: Compile) -> Fn:
    if not params:
        return lambda ctx, focus: [True] if focus else [False]
    body = compile(params[0])

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
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


def _f_all(params: list[Any], compile: Compile) -> Fn:
    criteria = _lambda(params[0], compile)

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
        return [all(to_boolean(criteria(ctx, item, i)) is True for i, item in enumerate(focus))]

    return fn


def _f_aggregate(params: list[Any], compile: Compile) -> Fn:
    aggregator = compile(params[0])
    initial = _value(params[1], compile) if len(params) > 1 else None

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
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


def _f_iif(params: list[Any], compile: Compile) -> Fn:
    criterion = compile(params[0])
    true_result = compile(params[1])
    otherwise = compile(params[2]) if len(params) > 2 else None

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
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


def _simple(body: Callable[[list[Any]], Any]) -> Builder:
    """A function of its input collection only; returns a collection or one value (None = empty)."""

    def build(params: list[Any], compile: Compile) -> Fn:
        def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
            result = body(focus)
            if result is None:
                return []
            return result if type(result) is list else [result]

        return fn

    return build


def _with_args(body: Callable[..., Any]) -> Builder:
    """A function of its input and evaluated value arguments (each a collection)."""

    def build(params: list[Any], compile: Compile) -> Fn:
        args = tuple(compile(p) for p in params)

        if not args:

            def fn0(ctx: Ctx, focus: list[Any]) -> list[Any]:
                result = body(ctx, focus)
                if result is None:
                    return []
                return result if type(result) is list else [result]

            return fn0

        if len(args) == 1:
            first = args[0]

            def fn1(ctx: Ctx, focus: list[Any]) -> list[Any]:
                result = body(ctx, focus, first(ctx, ctx.this))
                if result is None:
                    return []
                return result if type(result) is list else [result]

            return fn1

        def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
            this = ctx.this
            result = body(ctx, focus, *[a(ctx, this) for a in args])
            if result is None:
                return []
            return result if type(result) is list else [result]

        return fn

    return build


def _typed(body: Callable[[list[Any], str | None, str], list[Any]]) -> Builder:
    def build(params: list[Any], compile: Compile) -> Fn:
        namespace, name = params[0].namespace, params[0].name

        def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
            return body(focus, namespace, name)

        return fn

    return build


def _arg_value(collection: list[Any], what: str) -> Any:
    item = single(collection, what)
    return None if item is None else value_of(item)


def _count_arg(collection: list[Any], what: str) -> int:
    value = _arg_value(collection, what)
    if not is_number(value):
        raise FHIRPathError(f"{what} expects an integer")
    return int(value)


def _not(focus: list[Any]) -> Any:
    value = to_boolean(focus)
    return None if value is None else (not value)


def _boolean_all(focus: list[Any], wanted: bool, all_: bool) -> Any:
    values = [value_of(i) for i in focus]
    if any(not isinstance(v, bool) for v in values):
        raise FHIRPathError("expects booleans")
    return all(v is wanted for v in values) if all_ else any(v is wanted for v in values)


def _to_integer(focus: list[Any]) -> Any:
    item = single(focus, "toInteger()")
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


def _to_decimal(focus: list[Any]) -> Any:
    item = single(focus, "toDecimal()")
    if item is None:
        return None
    value = value_of(item)
    if isinstance(value, bool):
        return Decimal(1 if value else 0)
    if isinstance(value, str) and not re.fullmatch(r"\s*[+-]?\d+(\.\d+)?\s*", value):
        return None
    return to_decimal(value)


def _to_boolean(focus: list[Any]) -> Any:
    item = single(focus, "toBoolean()")
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
    if is_number(value):
        if value == 1:
            return True
        if value == 0:
            return False
    return None


def _to_string(focus: list[Any]) -> Any:
    item = single(focus, "toString()")
    return None if item is None else to_string(item)


def _to_temporal(kind: str) -> Callable[[list[Any]], Any]:
    def convert(focus: list[Any]) -> Any:
        item = single(focus, f"to{kind}()")
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


def _to_quantity(ctx: Ctx, focus: list[Any], *args: list[Any]) -> Any:
    item = single(focus, "toQuantity()")
    if item is None:
        return None
    value = value_of(item)
    quantity = None
    if isinstance(value, Quantity):
        quantity = value
    elif isinstance(value, bool):
        quantity = Quantity(Decimal("1.0" if value else "0.0"), "1")
    elif is_number(value):
        quantity = Quantity(Decimal(value), "1")
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*('([^']+)'|[a-z]+)?\s*", value)
        # unquoted, only a calendar keyword is a unit (`4 days`; `1 wk` is no quantity)
        if m and (m.group(3) is not None or m.group(2) is None or calendar_unit(m.group(2)) == m.group(2).rstrip("s")):
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


def _converts(convert: Callable[..., Any]) -> Callable[[list[Any]], Any]:
    def body(focus: list[Any]) -> Any:
        if len(focus) != 1:
            return None if not focus else False
        try:
            return convert(focus) is not None
        except FHIRPathError:
            return False

    return body


def _converts_quantity(ctx: Ctx, focus: list[Any], *args: list[Any]) -> Any:
    if len(focus) != 1:
        return None if not focus else False
    return _to_quantity(ctx, focus, *args) is not None


def _string_fn(body: Callable[..., Any]) -> Callable[..., Any]:
    name = body.__name__.strip("_")

    def wrapped(ctx: Ctx, focus: list[Any], *args: list[Any]) -> Any:
        if not focus:
            return None
        item = focus[0]
        text = item.data if type(item) is Node else item
        if len(focus) > 1 or not isinstance(text, str):
            text = string_input(focus, name)
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


def _substring(text: str, start: Any, length: Any = None) -> Any:
    start = int(start)
    if start < 0 or start >= len(text):
        return None
    if length is None:
        return text[start:]
    return text[start : start + max(int(length), 0)]


def _index_of(text: str, sub: Any) -> Any:
    return text.find(sub)


def _starts_with(text: str, prefix: Any) -> Any:
    return text.startswith(prefix)


def _ends_with(text: str, suffix: Any) -> Any:
    return text.endswith(suffix)


def _contains(text: str, sub: Any) -> Any:
    return sub in text


def _upper(text: str) -> Any:
    return text.upper()


def _lower(text: str) -> Any:
    return text.lower()


def _replace(text: str, pattern: Any, substitution: Any) -> Any:
    return text.replace(pattern, substitution)


def _matches(text: str, regex: Any) -> Any:
    return re.search(regex, text, re.DOTALL) is not None


def _replace_matches(text: str, regex: Any, substitution: Any) -> Any:
    if regex == "":
        return text  # an empty pattern matches nowhere in FHIRPath (N1 §5.6.10)
    return re.sub(regex, re.sub(r"\$(\d+)", r"\\\1", substitution), text)


def _length(text: str) -> Any:
    return len(text)


def _to_chars(text: str) -> Any:
    return list(text)


def _split(text: str, separator: Any) -> Any:
    return text.split(separator)


def _trim(text: str) -> Any:
    return text.strip()


def _encode(text: str, encoding: Any) -> Any:
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


def _decode(text: str, encoding: Any) -> Any:
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


def _join(ctx: Ctx, focus: list[Any], *args: list[Any]) -> Any:
    separator = _arg_value(args[0], "join()") if args else ""
    parts = []
    for item in focus:
        text = to_string(item)
        if text is None:
            raise FHIRPathError("join() expects strings")
        parts.append(text)
    return "".join(parts) if not separator else str(separator).join(parts)


def _math(body: Callable[[Any], Any]) -> Callable[[list[Any]], Any]:
    def run(focus: list[Any]) -> Any:
        item = single(focus, "a math function")
        if item is None:
            return None
        value = value_of(item)
        if isinstance(value, Quantity):
            result = body(value.value)
            return None if result is None else Quantity(Decimal(result), value.unit)
        return body(number(item, "a math function"))

    return run


def _ceiling(v: Any) -> Any:
    return int(math.ceil(v))


def _floor(v: Any) -> Any:
    return int(math.floor(v))


def _truncate(v: Any) -> Any:
    return int(v)


def _sqrt(v: Any) -> Any:
    return None if v < 0 else Decimal(v).sqrt()


def _exp(v: Any) -> Any:
    return Decimal(v).exp()


def _ln(v: Any) -> Any:
    return None if v <= 0 else Decimal(v).ln()


def _round(ctx: Ctx, focus: list[Any], *args: list[Any]) -> Any:
    item = single(focus, "round()")
    if item is None:
        return None
    precision = _count_arg(args[0], "round()") if args and args[0] else 0
    value = Decimal(number(item, "round()"))
    return value.quantize(Decimal(1).scaleb(-precision), ROUND_HALF_UP)


def _log(ctx: Ctx, focus: list[Any], base: list[Any]) -> Any:
    item = single(focus, "log()")
    b = _arg_value(base, "log()")
    if item is None or b is None:
        return None
    value = Decimal(number(item, "log()"))
    if value <= 0 or b <= 0 or b == 1:
        return None
    return value.ln() / Decimal(b).ln()


def _power(ctx: Ctx, focus: list[Any], exponent: list[Any]) -> Any:
    item = single(focus, "power()")
    e = _arg_value(exponent, "power()")
    if item is None or e is None:
        return None
    base = number(item, "power()")
    try:
        result = Decimal(base) ** Decimal(e)
    except InvalidOperation:
        return None
    if isinstance(base, int) and isinstance(e, int) and e >= 0:
        return int(result)
    return result


def _sum(focus: list[Any]) -> Any:
    values = [value_of(i) for i in focus]
    if not values:
        return 0
    if all(isinstance(v, Quantity) for v in values):
        total = values[0]
        for v in values[1:]:
            total = arith("+", total, v)[0]
        return total
    if any(not is_number(v) for v in values):
        raise FHIRPathError("sum() expects numbers")
    return sum(values)


def _extreme(focus: list[Any], largest: bool) -> Any:
    if not focus:
        return None
    best = focus[0]
    for item in focus[1:]:
        result = compare_items(item, best)
        if result is not None and (result > 0 if largest else result < 0):
            best = item
    return value_of(best)


def _avg(focus: list[Any]) -> Any:
    values = [value_of(i) for i in focus]
    if not values:
        return None
    if any(not is_number(v) for v in values):
        raise FHIRPathError("avg() expects numbers")
    return Decimal(sum(values)) / Decimal(len(values))


def _single_fn(focus: list[Any]) -> Any:
    if len(focus) > 1:
        raise FHIRPathError("single() found more than one item")
    return list(focus)


def _skip(ctx: Ctx, focus: list[Any], n: list[Any]) -> Any:
    return list(focus[max(_count_arg(n, "skip()"), 0) :])


def _take(ctx: Ctx, focus: list[Any], n: list[Any]) -> Any:
    return list(focus[: max(_count_arg(n, "take()"), 0)])


def _intersect(ctx: Ctx, focus: list[Any], other: list[Any]) -> Any:
    keys = {item_key(i) for i in other}
    return [i for i in distinct(focus) if item_key(i) in keys]


def _exclude(ctx: Ctx, focus: list[Any], other: list[Any]) -> Any:
    keys = {item_key(i) for i in other}
    return [i for i in focus if item_key(i) not in keys]


def _union(ctx: Ctx, focus: list[Any], other: list[Any]) -> Any:
    return distinct(list(focus) + list(other))


def _combine(ctx: Ctx, focus: list[Any], other: list[Any]) -> Any:
    return list(focus) + list(other)


def _subset_of(ctx: Ctx, focus: list[Any], other: list[Any]) -> Any:
    return all(any(item_equal(a, b) is True for b in other) for a in focus)


def _superset_of(ctx: Ctx, focus: list[Any], other: list[Any]) -> Any:
    return all(any(item_equal(a, b) is True for a in focus) for b in other)


def _of_type(focus: list[Any], namespace: str | None, name: str) -> list[Any]:
    return [i for i in focus if is_type(i, namespace, name, exact=True)]


def _is_fn(focus: list[Any], namespace: str | None, name: str) -> list[Any]:
    item = single(focus, "is()")
    return [] if item is None else [is_type(item, namespace, name)]


def _as_fn(focus: list[Any], namespace: str | None, name: str) -> list[Any]:
    item = single(focus, "as()")
    return [item] if item is not None and is_type(item, namespace, name, exact=True) else []


def _extension(ctx: Ctx, focus: list[Any], url: list[Any]) -> Any:
    wanted = _arg_value(url, "extension()")
    out = []
    for ext in [e for e in _navigate_extensions(focus)]:
        if isinstance(ext.data, dict) and ext.data.get("url") == wanted:
            out.append(ext)
    return out


def _navigate_extensions(focus: list[Any]) -> Any:
    return navigate(focus, "extension")


def _children_fn(focus: list[Any]) -> Any:
    out: list[Any] = []
    for item in focus:
        out.extend(children_of(item))
    return out


def _descendants(focus: list[Any]) -> Any:
    out: list[Any] = []
    pending = list(focus)
    while pending:
        found = _children_fn(pending)
        out.extend(found)
        pending = found
    return out


def _type_fn(focus: list[Any]) -> Any:
    return [
        Node({"namespace": ns, "name": name}, "TypeInfo", "TypeInfo") for ns, name in (type_name(i) for i in focus)
    ]


def _has_value(focus: list[Any]) -> Any:
    return (
        len(focus) == 1
        and type(focus[0]) is Node
        and focus[0].data is not None
        and not isinstance(focus[0].data, (dict, list))
    )


def _get_value(focus: list[Any]) -> Any:
    if len(focus) == 1 and type(focus[0]) is Node and not isinstance(focus[0].data, (dict, list)):
        return value_of(focus[0])
    return None


def _trace(ctx: Ctx, focus: list[Any], *args: list[Any]) -> Any:
    tracer = getattr(ctx.env, "trace", None)
    if tracer is not None:
        tracer(_arg_value(args[0], "trace()") if args else "", focus)
    return list(focus)


def _today(ctx: Ctx, focus: list[Any]) -> Any:
    return ctx.std["today"]


def _now(ctx: Ctx, focus: list[Any]) -> Any:
    return ctx.std["now"]


def _time_of_day(ctx: Ctx, focus: list[Any]) -> Any:
    now = ctx.std["now"][0]
    return Temporal(
        "time", now.parts, 7, None, now.text.split("T", 1)[1][:12] if "T" in now.text else "00:00:00"
    )



def _f_sort(params: list[Any], compile: Compile) -> Fn:
    """sort(key, …): ascending by each key; a key written `-expr` sorts descending by expr."""
    from app.fhirpath.nodes import Unary  # noqa: PLC0415 (node class only needed here)

    keys: list[tuple[Fn, bool]] = []
    for param in params:
        if isinstance(param, Unary) and param.op == "-":
            keys.append((compile(param.operand), True))
        else:
            keys.append((compile(param), False))

    def order(a: Any, b: Any) -> int:
        if a is None or b is None:
            return (a is None) - (b is None) if (a is None) != (b is None) else 0
        result = compare_items(a, b)
        if result is None:
            raise FHIRPathError("sort(): the keys cannot be ordered")
        return result

    def fn(ctx: Ctx, focus: list[Any]) -> list[Any]:
        import functools  # noqa: PLC0415

        if not keys:
            return sorted(focus, key=functools.cmp_to_key(order))
        saved_this, saved_index = ctx.this, ctx.index
        rows = []
        for i, item in enumerate(focus):
            this = ctx.this = [item]
            ctx.index = [i]
            rows.append((item, [single(key(ctx, this), "sort()") for key, _ in keys]))
        ctx.this, ctx.index = saved_this, saved_index

        def compare(x: tuple[Any, list[Any]], y: tuple[Any, list[Any]]) -> int:
            for (_, descending), a, b in zip(keys, x[1], y[1], strict=True):
                result = order(a, b)
                if result:
                    return -result if descending else result
            return 0

        return [row[0] for row in sorted(rows, key=functools.cmp_to_key(compare))]

    return fn


def _matches_full(text: str, regex: str) -> bool:
    return re.fullmatch(regex, text, re.DOTALL) is not None


def _escape(text: str, target: str) -> str | None:
    import html  # noqa: PLC0415
    import json  # noqa: PLC0415

    if target == "html":
        return html.escape(text, quote=True).replace("&#x27;", "&#39;")
    if target == "json":
        return json.dumps(text, ensure_ascii=False)[1:-1]
    return None


def _unescape(text: str, target: str) -> str | None:
    import html  # noqa: PLC0415

    if target == "html":
        return html.unescape(text)
    if target == "json":
        pattern = r'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})'
        simple = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
        return re.sub(pattern, lambda m: simple.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), text)
    return None


_DATE_DIGITS = {1: 4, 2: 6, 3: 8, 4: 10, 5: 12, 6: 14, 7: 17}  # precision -> digits (N1 §5.9 precision())
_TIME_DIGITS = {4: 2, 5: 4, 6: 6, 7: 9}


def _decimal_places(value: Decimal | int) -> int:
    exponent = Decimal(value).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _precision(focus: list[Any]) -> Any:
    item = single(focus, "precision()")
    if item is None:
        return None
    value = value_of(item)
    if isinstance(value, Temporal):
        return (_TIME_DIGITS if value.kind == "time" else _DATE_DIGITS)[value.precision]
    if is_number(value):
        return _decimal_places(value)
    raise FHIRPathError("precision() expects a number, date or time")


def _boundary(high: bool) -> Callable[..., Any]:
    def boundary(ctx: Ctx, focus: list[Any], *args: list[Any]) -> Any:
        item = single(focus, "boundary")
        if item is None:
            return None
        digits = _arg_value(args[0], "boundary") if args and args[0] else None
        value = value_of(item)
        if isinstance(value, Quantity):
            bound = _number_boundary(value.value, digits, high)
            return None if bound is None else Quantity(bound, value.unit)
        if is_number(value):
            return _number_boundary(value, digits, high)
        if isinstance(value, Temporal):
            return _temporal_boundary(value, digits, high)
        raise FHIRPathError("a boundary needs a number, quantity, date or time")

    return boundary


def _number_boundary(value: Decimal | int, digits: Any, high: bool) -> Decimal | None:
    places = 8 if digits is None else int(digits)
    if places < 0 or places > 28:
        return None
    half = Decimal(5).scaleb(-_decimal_places(value) - 1)
    edge = Decimal(value) + half if high else Decimal(value) - half
    quantum = Decimal(1).scaleb(-places)
    from decimal import ROUND_CEILING, ROUND_FLOOR  # noqa: PLC0415

    if abs(edge) < quantum:
        return Decimal(0).quantize(quantum).copy_sign(edge)
    return edge.quantize(quantum, ROUND_CEILING if high else ROUND_FLOOR)


def _temporal_boundary(value: Temporal, digits: Any, high: bool) -> Temporal | None:
    table = _TIME_DIGITS if value.kind == "time" else _DATE_DIGITS
    wanted = {d: p for p, d in table.items()}.get(17 if digits is None and value.kind != "time" else
                                                   9 if digits is None else int(digits))
    if wanted is None:
        return None
    import calendar as cal  # noqa: PLC0415

    y, mo, d, h, mi, s, us = value.parts
    known = value.precision
    if value.kind != "time" and known == 4:
        known = 5  # an hour alone is read as hour:00 (FHIR has no hour-only dateTime)
    if high:
        fill = [y, 12, 0, 23, 59, 59, 999000]
        parts = [y, mo, d, h, mi, s, us]
        first = 0 if value.kind != "time" else 3
        for i in range(first, 7):
            if i + 1 > known:
                parts[i] = fill[i]
        if value.kind != "time" and known < 3:
            parts[2] = cal.monthrange(parts[0], parts[1])[1]
    else:
        parts = [y, mo, d, h, mi, s, us]
        first = 0 if value.kind != "time" else 3
        defaults = [y, 1, 1, 0, 0, 0, 0]
        for i in range(first, 7):
            if i + 1 > known:
                parts[i] = defaults[i]
    kind = value.kind
    tz = value.tz
    if kind != "time" and wanted >= 4:
        kind = "dateTime"
        if tz is None:
            tz = -12 * 60 if high else 14 * 60
    elif kind != "time":
        kind = "date" if wanted <= 3 else kind
        tz = None if wanted <= 3 else tz
    from datetime import datetime as _dt  # noqa: PLC0415

    y, mo, d, h, mi, s, us = parts
    return Temporal.from_datetime(kind, _dt(y, mo, d, h, mi, s, us), wanted, tz)


def _comparable_fn(ctx: Ctx, focus: list[Any], other: list[Any]) -> Any:
    a, b = single(focus, "comparable()"), single(other, "comparable()")
    if a is None or b is None:
        return None
    x, y = value_of(a), value_of(b)
    if not isinstance(x, Quantity) or not isinstance(y, Quantity):
        raise FHIRPathError("comparable() expects quantities")
    return x.comparable(y) is not None


_CORE_PROFILE = "http://hl7.org/fhir/StructureDefinition/"


def _conforms_to(ctx: Ctx, focus: list[Any], url: list[Any]) -> Any:
    """conformsTo(url) for the R4 core types; a profile beyond them cannot be checked here (an error)."""
    from app.fhirpath.model import r4  # noqa: PLC0415

    item = single(focus, "conformsTo()")
    target = _arg_value(url, "conformsTo()")
    if item is None or target is None:
        return None
    name = str(target).removeprefix(_CORE_PROFILE)
    if not str(target).startswith(_CORE_PROFILE) or not r4().is_resource(name):
        raise FHIRPathError(f"conformsTo(): {target} is not an R4 core resource type; profiles are not checked")
    return type(item) is Node and name in r4().ancestors(item.type or "")


# -- typing rules of the functions ----------------------------------------------------------------------


def _select_type(t: Typing) -> Static:
    arg = t.args[0] if t.args else UNKNOWN
    return Static(arg.types, more(t.input.many, arg.many))


def _repeat_type(t: Typing) -> Static:
    arg = t.args[0] if t.args else UNKNOWN
    return Static(arg.types, True)


def _iif_type(t: Typing) -> Static:
    result = t.args[1]
    return union(result, t.args[2]) if len(t.args) > 2 else result


def _type_arg(t: Typing) -> frozenset[str] | None:
    spec = t.node.args[0] if t.node.args else None
    name = t.model.resolve_type(getattr(spec, "namespace", None), getattr(spec, "name", ""))
    return frozenset({name}) if name else None


def _of_type_type(t: Typing) -> Static:
    return Static(_type_arg(t), t.input.many)


def _as_type(t: Typing) -> Static:
    return Static(_type_arg(t), False)


def _aggregate_type(t: Typing) -> Static:
    return union(t.args[0], t.args[1], many=t.args[0].many)


def _input_one_types(t: Typing) -> Static:
    return Static(t.input.types, False)


def _numeric_result(t: Typing) -> Static:
    return Static(t.input.types, False)


S = FunctionSpec
_SECTIONS: dict[str, list[FunctionSpec]] = {
    "5.1 Existence": [
        S("empty", "", 0, 0, _simple(lambda f: not f), _fixed(BOOLEAN)),
        S("exists", "", 0, 1, _f_exists, _fixed(BOOLEAN), mode="lambda", criterion=True),
        S("all", "", 1, 1, _f_all, _fixed(BOOLEAN), mode="lambda", criterion=True),
        S("allTrue", "", 0, 0, _simple(lambda f: _boolean_all(f, True, True)), _fixed(BOOLEAN)),
        S("anyTrue", "", 0, 0, _simple(lambda f: _boolean_all(f, True, False)), _fixed(BOOLEAN)),
        S("allFalse", "", 0, 0, _simple(lambda f: _boolean_all(f, False, True)), _fixed(BOOLEAN)),
        S("anyFalse", "", 0, 0, _simple(lambda f: _boolean_all(f, False, False)), _fixed(BOOLEAN)),
        S("subsetOf", "", 1, 1, _with_args(_subset_of), _fixed(BOOLEAN)),
        S("supersetOf", "", 1, 1, _with_args(_superset_of), _fixed(BOOLEAN)),
        S("count", "", 0, 0, _simple(len), _fixed(INTEGER)),
        S("distinct", "", 0, 0, _simple(distinct), _same),
        S("isDistinct", "", 0, 0, _simple(lambda f: len(distinct(f)) == len(f)), _fixed(BOOLEAN)),
    ],
    "5.2 Filtering and projection": [
        S("where", "", 1, 1, _f_where, _same, mode="lambda", criterion=True),
        S("select", "", 1, 1, _f_select, _select_type, mode="lambda"),
        S("repeat", "", 1, 1, _f_repeat, _repeat_type, mode="lambda"),
        S("ofType", "", 1, 1, _typed(_of_type), _of_type_type, mode="type"),
    ],
    "5.3 Subsetting": [
        S("single", "", 0, 0, _simple(_single_fn), _same_one),
        S("first", "", 0, 0, _simple(lambda f: f[:1]), _same_one),
        S("last", "", 0, 0, _simple(lambda f: f[-1:]), _same_one),
        S("tail", "", 0, 0, _simple(lambda f: f[1:]), _same),
        S("skip", "", 1, 1, _with_args(_skip), _same),
        S("take", "", 1, 1, _with_args(_take), _same),
        S("intersect", "", 1, 1, _with_args(_intersect), _same),
        S("exclude", "", 1, 1, _with_args(_exclude), _same),
    ],
    "5.4 Combining": [
        S("union", "", 1, 1, _with_args(_union), lambda t: union(t.input, t.args[0], many=True)),
        S("combine", "", 1, 1, _with_args(_combine), lambda t: union(t.input, t.args[0], many=True)),
    ],
    "5.5 Conversion": [
        S("iif", "", 2, 3, _f_iif, _iif_type, mode="iif", criterion=True),
        S("toBoolean", "", 0, 0, _simple(_to_boolean), _fixed(BOOLEAN)),
        S("convertsToBoolean", "", 0, 0, _simple(_converts(_to_boolean)), _fixed(BOOLEAN)),
        S("toInteger", "", 0, 0, _simple(_to_integer), _fixed(INTEGER)),
        S("convertsToInteger", "", 0, 0, _simple(_converts(_to_integer)), _fixed(BOOLEAN)),
        S("toDecimal", "", 0, 0, _simple(_to_decimal), _fixed(DECIMAL)),
        S("convertsToDecimal", "", 0, 0, _simple(_converts(_to_decimal)), _fixed(BOOLEAN)),
        S("toString", "", 0, 0, _simple(_to_string), _fixed(STRING)),
        S("convertsToString", "", 0, 0, _simple(_converts(_to_string)), _fixed(BOOLEAN)),
        S("toDate", "", 0, 0, _simple(_to_temporal("date")), _fixed(system("Date"))),
        S("convertsToDate", "", 0, 0, _simple(_converts(_to_temporal("date"))), _fixed(BOOLEAN)),
        S("toDateTime", "", 0, 0, _simple(_to_temporal("dateTime")), _fixed(system("DateTime"))),
        S("convertsToDateTime", "", 0, 0, _simple(_converts(_to_temporal("dateTime"))), _fixed(BOOLEAN)),
        S("toTime", "", 0, 0, _simple(_to_temporal("time")), _fixed(system("Time"))),
        S("convertsToTime", "", 0, 0, _simple(_converts(_to_temporal("time"))), _fixed(BOOLEAN)),
        S("toQuantity", "", 0, 1, _with_args(_to_quantity), _fixed(system("Quantity"))),
        S("convertsToQuantity", "", 0, 1, _with_args(_converts_quantity), _fixed(BOOLEAN)),
    ],
    "5.6 String manipulation": [
        S("indexOf", "", 1, 1, _with_args(_string_fn(_index_of)), _fixed(INTEGER)),
        S("substring", "", 1, 2, _with_args(_string_fn(_substring)), _fixed(STRING)),
        S("startsWith", "", 1, 1, _with_args(_string_fn(_starts_with)), _fixed(BOOLEAN)),
        S("endsWith", "", 1, 1, _with_args(_string_fn(_ends_with)), _fixed(BOOLEAN)),
        S("contains", "", 1, 1, _with_args(_string_fn(_contains)), _fixed(BOOLEAN)),
        S("upper", "", 0, 0, _with_args(_string_fn(_upper)), _fixed(STRING)),
        S("lower", "", 0, 0, _with_args(_string_fn(_lower)), _fixed(STRING)),
        S("replace", "", 2, 2, _with_args(_string_fn(_replace)), _fixed(STRING)),
        S("matches", "", 1, 1, _with_args(_string_fn(_matches)), _fixed(BOOLEAN)),
        S("matchesFull", "", 1, 1, _with_args(_string_fn(_matches_full)), _fixed(BOOLEAN)),
        S("replaceMatches", "", 2, 2, _with_args(_string_fn(_replace_matches)), _fixed(STRING)),
        S("length", "", 0, 0, _with_args(_string_fn(_length)), _fixed(INTEGER)),
        S("toChars", "", 0, 0, _with_args(_string_fn(_to_chars)), _fixed(system("String", True))),
        S("encode", "", 1, 1, _with_args(_string_fn(_encode)), _fixed(STRING)),
        S("decode", "", 1, 1, _with_args(_string_fn(_decode)), _fixed(STRING)),
        S("escape", "", 1, 1, _with_args(_string_fn(_escape)), _fixed(STRING)),
        S("unescape", "", 1, 1, _with_args(_string_fn(_unescape)), _fixed(STRING)),
        S("trim", "", 0, 0, _with_args(_string_fn(_trim)), _fixed(STRING)),
        S("split", "", 1, 1, _with_args(_string_fn(_split)), _fixed(system("String", True))),
        S("join", "", 0, 1, _with_args(_join), _fixed(STRING)),
    ],
    "5.7 Math": [
        S("abs", "", 0, 0, _simple(_math(abs)), _numeric_result),
        S("ceiling", "", 0, 0, _simple(_math(_ceiling)), _fixed(INTEGER)),
        S("exp", "", 0, 0, _simple(_math(_exp)), _fixed(DECIMAL)),
        S("floor", "", 0, 0, _simple(_math(_floor)), _fixed(INTEGER)),
        S("ln", "", 0, 0, _simple(_math(_ln)), _fixed(DECIMAL)),
        S("log", "", 1, 1, _with_args(_log), _fixed(DECIMAL)),
        S("power", "", 1, 1, _with_args(_power), _numeric_result),
        S("round", "", 0, 1, _with_args(_round), _fixed(DECIMAL)),
        S("sqrt", "", 0, 0, _simple(_math(_sqrt)), _fixed(DECIMAL)),
        S("truncate", "", 0, 0, _simple(_math(_truncate)), _fixed(INTEGER)),
    ],
    "5.8 Tree navigation": [
        S("children", "", 0, 0, _simple(_children_fn), _fixed(Static(None, None, unordered=True))),
        S("descendants", "", 0, 0, _simple(_descendants), _fixed(Static(None, None, unordered=True))),
    ],
    "5.9 Utility": [
        S("trace", "", 1, 2, _with_args(_trace), _same, mode="lambda", env=True),
        S("now", "", 0, 0, _with_args(_now), _fixed(system("DateTime")), env=True, input_free=True),
        S("timeOfDay", "", 0, 0, _with_args(_time_of_day), _fixed(system("Time")), env=True, input_free=True),
        S("today", "", 0, 0, _with_args(_today), _fixed(system("Date")), env=True, input_free=True),
        S("lowBoundary", "", 0, 1, _with_args(_boundary(False)), _input_one_types),
        S("highBoundary", "", 0, 1, _with_args(_boundary(True)), _input_one_types),
        S("precision", "", 0, 0, _simple(_precision), _fixed(INTEGER)),
        S("comparable", "", 1, 1, _with_args(_comparable_fn), _fixed(BOOLEAN)),
        S("sort", "", 0, 9, _f_sort, _same, mode="lambda"),
    ],
    "6.3 Types": [
        S("is", "", 1, 1, _typed(_is_fn), _fixed(BOOLEAN), mode="type"),
        S("as", "", 1, 1, _typed(_as_fn), _as_type, mode="type"),
        S("type", "", 0, 0, _simple(_type_fn), _fixed(UNKNOWN)),
    ],
    "6.5 Boolean logic": [
        S("not", "", 0, 0, _simple(_not), _fixed(BOOLEAN)),
    ],
    "7 Aggregates": [
        S("aggregate", "", 1, 2, _f_aggregate, _aggregate_type, mode="aggregate"),
        S("sum", "", 0, 0, _simple(_sum), _input_one_types),
        S("min", "", 0, 0, _simple(lambda f: _extreme(f, False)), _input_one_types),
        S("max", "", 0, 0, _simple(lambda f: _extreme(f, True)), _input_one_types),
        S("avg", "", 0, 0, _simple(_avg), _fixed(DECIMAL)),
    ],
    "FHIR R4 §2.1.9 additional functions": [
        S("extension", "", 1, 1, _with_args(_extension), _fixed(Static(frozenset({"Extension"}), True))),
        S("hasValue", "", 0, 0, _simple(_has_value), _fixed(BOOLEAN)),
        S("getValue", "", 0, 0, _simple(_get_value), _fixed(Static(None, False))),
        S("conformsTo", "", 1, 1, _with_args(_conforms_to), _fixed(BOOLEAN)),
    ],
}

FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: FunctionSpec(
        spec.name, section, spec.low, spec.high, spec.build, spec.result, spec.mode, spec.criterion, spec.env,
        spec.input_free,
    )
    for section, specs in _SECTIONS.items()
    for spec in specs
}
