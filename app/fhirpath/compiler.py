"""Code generation: the typed tree (annotated by `analysis.annotate`) into Python closures.

Each node becomes `fn(ctx, focus) -> collection`; operators come from `operators.OPERATORS`,
functions from `functions.FUNCTIONS` and the host's registry (`host.Functions`). A subexpression
that depends on nothing is folded to a constant; one that reads only %-variables and the
environment is computed once per `Scope` (one request) and shared by every expression that has it;
one that reads only the expression's input is shared by every evaluation over the same input.
Semantics follow http://hl7.org/fhirpath/N1/. The compiler keeps no state between compilations.
"""

from __future__ import annotations

from typing import Any

from app.fhirpath.functions import FUNCTIONS
from app.fhirpath.host import DEFAULT_FUNCTIONS, Functions, HostFunction
from app.fhirpath.nodes import (
    Binary,
    Call,
    Expr,
    Indexer,
    Literal,
    Member,
    Special,
    TypeOp,
    Unary,
    Variable,
)
from app.fhirpath.operators import OPERATORS
from app.fhirpath.runtime import (
    Ctx,
    FHIRPathError,
    Fn,
    const,
    number,
    single,
    to_boolean,
)
from app.fhirpath.values import (
    Node,
    Quantity,
    as_collection,
    as_item,
    is_type,
    navigate,
    navigator,
    type_chain,
    value_of,
)

__all__ = ["FHIRPathError", "compile_tree", "to_boolean"]

_LOCAL = frozenset({"focus", "this", "index", "total"})
_FOLD_CTX_ARGS: tuple[Any, ...] = ({}, {}, None, [])


def compile_tree(tree: Expr, functions: Functions = DEFAULT_FUNCTIONS) -> Fn:
    """Compile an annotated tree (see `analysis.annotate`)."""
    return _Compiler(functions).compile(tree)


class _Compiler:
    def __init__(self, functions: Functions):
        self.functions = functions

    def compile(self, node: Expr) -> Fn:
        fn = self._generate(node)
        if isinstance(node, Literal | Variable):
            return fn
        return self._optimise(node, fn)

    # -- sharing and folding --------------------------------------------------------------------------

    def _optimise(self, node: Expr, fn: Fn) -> Fn:
        free = node.free
        if not free:
            try:
                value = fn(Ctx(*_FOLD_CTX_ARGS), [])
            except Exception:  # an error stays an evaluation error, raised when evaluated
                return fn
            return const(value)
        if free & _LOCAL:
            if free & _LOCAL == {"focus"} and not node.in_lambda:
                # reads the expression's input (the record), not an item of an iteration: shared by every
                # evaluation over the same input in the scope, e.g. `entry.resource.ofType(Condition)`
                return _root_memoised(node.key, fn)
            return fn
        key = node.key

        def memoised(ctx: Ctx, focus: list[Any]) -> list[Any]:
            memo = ctx.memo
            if memo is None:
                return fn(ctx, focus)
            value = memo.get(key)
            if value is None:
                observations = ctx.vars.observations
                seen = observations[0]
                value = fn(ctx, focus)
                if observations[0] == seen:  # a read the scope must see each time is never hidden in the memo
                    memo[key] = value
            return value

        return memoised

    # -- one generator per node class -----------------------------------------------------------------

    def _generate(self, node: Expr) -> Fn:
        if isinstance(node, Literal):
            return const([] if node.value is None else [node.value])
        if isinstance(node, Variable):
            return _variable(node.name)
        if isinstance(node, Special):
            return _special(node.name)
        if isinstance(node, Member):
            return self._member(node)
        if isinstance(node, Call):
            return self._call(node)
        if isinstance(node, Indexer):
            return self._indexer(node)
        if isinstance(node, Unary):
            return self._unary(node)
        if isinstance(node, Binary):
            operator = OPERATORS[node.op]
            return operator.build(self.compile(node.left), self.compile(node.right), node)
        if isinstance(node, TypeOp):
            return self._type_op(node)
        raise FHIRPathError(f"unsupported FHIRPath construct {type(node).__name__}")

    def _member(self, node: Member) -> Fn:
        path = _member_path(node) if node.in_lambda else None
        if path is not None and len(path) > 1:
            # inside a lambda (evaluated per item, never memoised): `code.coding.system` as one step
            steps = tuple(navigator(name) for name in path)

            def walk(ctx: Ctx, focus: list[Any]) -> list[Any]:
                for step in steps:
                    focus = step(ctx, focus)
                    if not focus:
                        return focus
                return focus

            return walk
        step = _step(node.name)
        if node.source is None:
            return step
        source = self.compile(node.source)

        def member(ctx: Ctx, focus: list[Any]) -> list[Any]:
            return step(ctx, source(ctx, focus))

        return member

    def _call(self, node: Call) -> Fn:
        spec = FUNCTIONS.get(node.name)
        if spec is not None:
            if not spec.low <= len(node.args) <= spec.high:
                raise FHIRPathError(_arity_message(node.name, spec.low, spec.high, len(node.args)))
            fn = spec.build(node.args, self.compile)
        else:
            host = self.functions.get(node.name)
            if host is None:
                raise FHIRPathError(f"unknown function {node.name}()")
            if not host.min_args <= len(node.args) <= host.max_args:
                raise FHIRPathError(_arity_message(node.name, host.min_args, host.max_args, len(node.args)))
            fn = _host_call(host, [self.compile(a) for a in node.args])
        if node.source is None:
            return fn
        source = self.compile(node.source)

        def call(ctx: Ctx, focus: list[Any]) -> list[Any]:
            return fn(ctx, source(ctx, focus))

        return call

    def _indexer(self, node: Indexer) -> Fn:
        collection = self.compile(node.source)
        index = self.compile(node.index)

        def indexer(ctx: Ctx, focus: list[Any]) -> list[Any]:
            items = collection(ctx, focus)
            position = single(index(ctx, focus), "an indexer")
            if position is None:
                return []
            at = int(number(position, "an indexer"))
            return [items[at]] if 0 <= at < len(items) else []

        return indexer

    def _unary(self, node: Unary) -> Fn:
        operand = self.compile(node.operand)
        negative = node.op == "-"

        def unary(ctx: Ctx, focus: list[Any]) -> list[Any]:
            item = single(operand(ctx, focus), "unary minus")
            if item is None:
                return []
            value = value_of(item)
            if isinstance(value, Quantity):
                return [Quantity(-value.value, value.unit)] if negative else [value]
            value = number(item, "unary minus")
            return [-value if negative else value]

        return unary

    def _type_op(self, node: TypeOp) -> Fn:
        operand = self.compile(node.operand)
        namespace, name, op = node.type.namespace, node.type.name, node.op

        def type_op(ctx: Ctx, focus: list[Any]) -> list[Any]:
            item = single(operand(ctx, focus), op)
            if item is None:
                return []
            matches = is_type(item, namespace, name, exact=op == "as")
            if op == "is":
                return [matches]
            return [item] if matches else []

        return type_op


def _arity_message(name: str, low: int, high: int, given: int) -> str:
    expected = str(low) if low == high else f"{low} to {high}"
    return f"{name}() takes {expected} argument(s), not {given}"


def _root_memoised(key: str, fn: Fn) -> Fn:
    key = "@root" + key

    def memoised(ctx: Ctx, focus: list[Any]) -> list[Any]:
        memo = ctx.memo
        if memo is None or focus is not ctx.root:
            return fn(ctx, focus)
        stored = memo.get(key)
        if stored is not None and stored[0] is focus:
            return stored[1]  # type: ignore[no-any-return]
        value = fn(ctx, focus)
        memo[key] = (focus, value)  # kept with its input: a scope may be used over another input
        return value

    return memoised


def _variable(name: str) -> Fn:
    def variable(ctx: Ctx, focus: list[Any]) -> list[Any]:
        value = ctx.vars.get(name)
        if value is None:
            value = ctx.vars.missing(name)
            if value is None:
                value = ctx.std.get(name)
            if value is None:
                if name.startswith("vs-"):
                    return ["http://hl7.org/fhir/ValueSet/" + name[3:]]
                if name.startswith("ext-"):
                    return ["http://hl7.org/fhir/StructureDefinition/" + name[4:]]
                raise FHIRPathError(f"%{name} is not defined")
        return value  # type: ignore[no-any-return]

    return variable


def _special(name: str) -> Fn:
    if name == "this":
        return lambda ctx, focus: ctx.this
    if name == "index":
        return lambda ctx, focus: ctx.index
    return lambda ctx, focus: ctx.total


def _step(name: str) -> Fn:
    if name[:1].isupper():
        # a type name at the start of a path selects the items of that type
        def by_type(ctx: Ctx, focus: list[Any]) -> list[Any]:
            selected = [i for i in focus if type(i) is Node and name in type_chain(i.type)]
            return selected if selected else navigate(focus, name)

        return by_type
    return navigator(name)


def _member_path(node: Expr) -> list[str] | None:
    """`a.b.c` as ['a', 'b', 'c'] when the expression is only lower-case member steps from its input."""
    if not isinstance(node, Member) or node.name[:1].isupper():
        return None
    if node.source is None:
        return [node.name]
    left = _member_path(node.source)
    return None if left is None else left + [node.name]


def _items(result: list[Any]) -> list[Any]:
    """A host function's result as engine items (FHIR JSON dicts and floats converted)."""
    if not result:
        return []
    for value in result:
        if type(value) is dict or type(value) is float or value is None:
            return [as_item(v) for v in result if v is not None]
    return result


def _host_call(host: HostFunction, args: list[Fn]) -> Fn:
    impl = host.impl
    if len(args) == 1:
        (arg,) = args

        def call1(ctx: Ctx, focus: list[Any]) -> list[Any]:
            return _items(impl(ctx.env, focus, arg(ctx, ctx.this)))

        return call1

    def call(ctx: Ctx, focus: list[Any]) -> list[Any]:
        this = ctx.this
        return _items(impl(ctx.env, focus, *[a(ctx, this) for a in args]))

    return call


def collection(value: Any) -> list[Any]:
    """A JSON value or list as a collection of engine items."""
    return as_collection(value)
