"""The typed syntax tree of a FHIRPath expression: what the parser builds, the analysis types, the compiler reads.

Every node keeps its source offset (`start`) for messages and carries two fields the analysis fills
in: `free` (what the subexpression depends on: "focus", "this", "index", "total", "env" and
"%name" for each variable) and `in_lambda` (it runs once per item of an iteration). The compiler
uses both to fold constants and share results; `key` is the node's structural text, equal for
equal subexpressions (computed once, after the tree is built).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass(eq=False)
class Expr:
    """Base of every expression node."""

    start: int = field(default=0, kw_only=True)
    free: frozenset[str] = field(default=frozenset(), kw_only=True, repr=False)
    in_lambda: bool = field(default=False, kw_only=True, repr=False)

    @cached_property
    def key(self) -> str:
        raise NotImplementedError

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(eq=False)
class Literal(Expr):
    """A literal: `{}` (empty), true/false, 'string', 42, 4.5, @2020-01-01, @T12:00, 4 'mg'."""

    kind: str  # "null", "Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"
    value: Any  # the System value (None for `{}`)
    text: str

    @cached_property
    def key(self) -> str:
        return f"(lit {self.kind} {self.text})"


@dataclass(eq=False)
class Variable(Expr):
    """`%name`: an environment or host variable."""

    name: str

    @cached_property
    def key(self) -> str:
        return f"(% {self.name})"


@dataclass(eq=False)
class Special(Expr):
    """`$this`, `$index` or `$total`."""

    name: str  # "this", "index", "total"

    @cached_property
    def key(self) -> str:
        return f"(${self.name})"


@dataclass(eq=False)
class Member(Expr):
    """`source.name`, or `name` on the focus when `source` is None."""

    source: Expr | None
    name: str

    @cached_property
    def key(self) -> str:
        return f"(. {self.source.key if self.source else '_'} {self.name})"

    def children(self) -> tuple[Expr, ...]:
        return (self.source,) if self.source else ()


@dataclass(eq=False)
class Call(Expr):
    """`source.name(args)`, or `name(args)` on the focus when `source` is None."""

    source: Expr | None
    name: str
    args: list[Expr]

    @cached_property
    def key(self) -> str:
        inner = " ".join(a.key for a in self.args)
        return f"(call {self.source.key if self.source else '_'} {self.name} {inner})"

    def children(self) -> tuple[Expr, ...]:
        return ((self.source,) if self.source else ()) + tuple(self.args)


@dataclass(eq=False)
class Indexer(Expr):
    """`source[index]`."""

    source: Expr
    index: Expr

    @cached_property
    def key(self) -> str:
        return f"([] {self.source.key} {self.index.key})"

    def children(self) -> tuple[Expr, ...]:
        return (self.source, self.index)


@dataclass(eq=False)
class Unary(Expr):
    """`-x` or `+x`."""

    op: str
    operand: Expr

    @cached_property
    def key(self) -> str:
        return f"(u{self.op} {self.operand.key})"

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(eq=False)
class Binary(Expr):
    """Every binary operator of the operator table (`operators.OPERATORS`)."""

    op: str
    left: Expr
    right: Expr

    @cached_property
    def key(self) -> str:
        return f"({self.op} {self.left.key} {self.right.key})"

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(eq=False)
class TypeSpec(Expr):
    """A type name as written: `Patient`, `FHIR.string`, `System.Integer`."""

    namespace: str | None
    name: str

    @cached_property
    def key(self) -> str:
        return f"(type {self.namespace or ''}.{self.name})"

    @property
    def text(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name


@dataclass(eq=False)
class TypeOp(Expr):
    """`operand is Type` / `operand as Type`."""

    op: str  # "is" or "as"
    operand: Expr
    type: TypeSpec

    @cached_property
    def key(self) -> str:
        return f"({self.op} {self.operand.key} {self.type.key})"

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


def walk(node: Expr) -> list[Expr]:
    """The node and all nodes under it, parents first."""
    out: list[Expr] = []
    stack = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(current.children()))
    return out


def variables(node: Expr) -> frozenset[str]:
    """The %-names an expression reads."""
    return frozenset(n.name for n in walk(node) if isinstance(n, Variable))
