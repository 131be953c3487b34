"""FHIRPath text to the typed tree (`nodes`), over fhirpathpy's ANTLR grammar, with N1 precedence.

fhirpathpy's grammar (a copy of the pre-N1 one) ranks `is`/`as` below `|` and the comparisons;
N1 (http://hl7.org/fhirpath/N1/#operator-precedence) ranks them just below the additive operators.
The builder re-associates an unparenthesised `a | b is T` / `a < b is T` into `a | (b is T)` /
`a < (b is T)`. The grammar predates partial dateTime literals (`@2015T`, `@2015-02T`): those are
read as dates and typed as DateTime by their source offset. Syntax errors are collected by an error
listener (ANTLR would otherwise recover silently) and raised as `FHIRPathSyntaxError`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from app.fhirpath.nodes import (
    Binary,
    Call,
    Expr,
    Indexer,
    Literal,
    Member,
    Special,
    TypeOp,
    TypeSpec,
    Unary,
    Variable,
)
from app.fhirpath.operators import OPERATORS
from app.fhirpath.values import Quantity, parse_temporal

P = FHIRPathParser

# functions whose argument is a type name, not an expression
TYPE_ARGUMENT_FUNCTIONS = frozenset({"ofType", "is", "as"})

# `@YYYY[-MM[-DD]]T` not followed by a time: a partial dateTime literal (outside strings and comments)
_PARTIAL_DATETIME = re.compile(r"@\d{4}(?:-\d{2}(?:-\d{2})?)?T(?![0-9])")
_SKIPPED = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|//[^\n]*|/\*.*?\*/", re.S)


class FHIRPathSyntaxError(ValueError):
    """The text is not FHIRPath."""


class _Errors(ErrorListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.messages: list[str] = []

    def syntaxError(  # noqa: N802 (antlr API)
        self, recognizer: Any, offendingSymbol: Any, line: int, column: int, msg: str, e: Any  # noqa: N803
    ) -> None:
        self.messages.append(f"column {column + 1}: {msg}")


def _partial_datetimes(text: str) -> tuple[str, frozenset[int]]:
    """The text with `@2015T` read as `@2015 ` (same offsets), and the offsets of those literals."""
    skipped = [(m.start(), m.end()) for m in _SKIPPED.finditer(text)]
    starts: set[int] = set()
    chars = list(text)
    for m in _PARTIAL_DATETIME.finditer(text):
        if any(a <= m.start() < b for a, b in skipped):
            continue
        starts.add(m.start())
        chars[m.end() - 1] = " "
    return "".join(chars), frozenset(starts)


def parse(text: str) -> Expr:
    """The typed tree of an expression; FHIRPathSyntaxError when it does not parse."""
    if not isinstance(text, str) or not text.strip():
        raise FHIRPathSyntaxError("empty expression")
    source, partial = _partial_datetimes(text)
    errors = _Errors()
    lexer = FHIRPathLexer(InputStream(source))
    lexer.removeErrorListeners()
    lexer.addErrorListener(errors)
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(errors)
    tree = parser.expression()
    if not errors.messages and tokens.LA(1) != Token.EOF:
        errors.messages.append(f"column {tokens.LT(1).column + 1}: unexpected {tokens.LT(1).text!r}")
    if errors.messages:
        raise FHIRPathSyntaxError("; ".join(errors.messages))
    return _Builder(partial).expression(tree)


def string_literal(text: str) -> str:
    """The value of a quoted string literal or delimited identifier (escapes resolved)."""
    body = text[1:-1]
    out = []
    i = 0
    escapes = {"'": "'", '"': '"', "`": "`", "r": "\r", "n": "\n", "t": "\t", "f": "\f", "\\": "\\", "/": "/"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 6 <= len(body):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(escapes.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _is(ctx: Any, cls: type) -> bool:
    """isinstance without narrowing: the generated parser's contexts are untyped, so they stay Any here."""
    return isinstance(ctx, cls)


def _identifier(ctx: Any) -> str:
    text = str(ctx.getText())
    return string_literal(text) if text[:1] == "`" else text


_ROTATED = frozenset({"|", "<", "<=", ">", ">="})


class _Builder:
    def __init__(self, partial: frozenset[int]):
        self.partial = partial

    def expression(self, ctx: Any) -> Expr:
        start = int(ctx.start.start)
        if _is(ctx, P.TermExpressionContext):
            return self.term(ctx.term())
        if _is(ctx, P.InvocationExpressionContext):
            return self.invocation(ctx.invocation(), self.expression(ctx.expression()))
        if _is(ctx, P.IndexerExpressionContext):
            return Indexer(self.expression(ctx.expression(0)), self.expression(ctx.expression(1)), start=start)
        if _is(ctx, P.PolarityExpressionContext):
            return Unary(str(ctx.getChild(0).getText()), self.expression(ctx.expression()), start=start)
        if _is(ctx, P.TypeExpressionContext):
            spec = self.type_spec(ctx.typeSpecifier().qualifiedIdentifier())
            return self.type_op(str(ctx.getChild(1).getText()), self.expression(ctx.expression()), spec, start)
        if _is(ctx, P.ExpressionContext) and ctx.getChildCount() == 3:
            op = str(ctx.getChild(1).getText())
            if op in OPERATORS:
                left = self.expression(ctx.expression(0))
                right = self.expression(ctx.expression(1))
                return Binary(op, left, right, start=start)
        raise FHIRPathSyntaxError(f"unsupported construct {type(ctx).__name__}: {ctx.getText()}")

    def type_op(self, op: str, operand: Expr, spec: TypeSpec, start: int) -> Expr:
        # N1: `is`/`as` bind tighter than `|` and the comparisons (see the module docstring)
        if isinstance(operand, Binary) and operand.op in _ROTATED and not getattr(operand, "parenthesised", False):
            operand.right = self.type_op(op, operand.right, spec, operand.right.start)
            return operand
        return TypeOp(op, operand, spec, start=start)

    def type_spec(self, ctx: Any) -> TypeSpec:
        names = [_identifier(i) for i in ctx.identifier()]
        return TypeSpec(".".join(names[:-1]) or None, names[-1], start=int(ctx.start.start))

    def term(self, ctx: Any) -> Expr:
        start = int(ctx.start.start)
        if _is(ctx, P.InvocationTermContext):
            return self.invocation(ctx.invocation(), None)
        if _is(ctx, P.LiteralTermContext):
            return self.literal(ctx.literal())
        if _is(ctx, P.ExternalConstantTermContext):
            constant = ctx.externalConstant()
            if constant.identifier() is not None:
                return Variable(_identifier(constant.identifier()), start=start)
            return Variable(string_literal(str(constant.STRING().getText())), start=start)
        if _is(ctx, P.ParenthesizedTermContext):
            inner = self.expression(ctx.expression())
            inner.parenthesised = True  # type: ignore[attr-defined]
            return inner
        raise FHIRPathSyntaxError(f"unsupported term {ctx.getText()}")

    def invocation(self, ctx: Any, source: Expr | None) -> Expr:
        start = int(ctx.start.start)
        if _is(ctx, P.MemberInvocationContext):
            return Member(source, _identifier(ctx.identifier()), start=start)
        if _is(ctx, P.FunctionInvocationContext):
            functn = ctx.functn()
            name = _identifier(functn.identifier())
            params = functn.paramList()
            args: list[Expr] = [self.expression(e) for e in params.expression()] if params is not None else []
            if name in TYPE_ARGUMENT_FUNCTIONS and len(args) == 1:
                args = [self.type_argument(args[0])]
            return Call(source, name, args, start=start)
        if _is(ctx, P.ThisInvocationContext):
            return Special("this", start=start)
        if _is(ctx, P.IndexInvocationContext):
            return Special("index", start=start)
        if _is(ctx, P.TotalInvocationContext):
            return Special("total", start=start)
        raise FHIRPathSyntaxError(f"unsupported invocation {ctx.getText()}")

    def type_argument(self, arg: Expr) -> Expr:
        """`ofType(FHIR.Patient)` was parsed as a path: read it back as a type name."""
        names: list[str] = []
        node: Expr | None = arg
        while isinstance(node, Member):
            names.append(node.name)
            node = node.source
        if node is not None or not names or len(names) > 2:
            raise FHIRPathSyntaxError("a type name was expected")
        names.reverse()
        return TypeSpec(names[0] if len(names) == 2 else None, names[-1], start=arg.start)

    def literal(self, ctx: Any) -> Expr:
        start = int(ctx.start.start)
        text = str(ctx.getText())
        if _is(ctx, P.NullLiteralContext):
            return Literal("null", None, "{}", start=start)
        if _is(ctx, P.BooleanLiteralContext):
            return Literal("Boolean", text == "true", text, start=start)
        if _is(ctx, P.StringLiteralContext):
            return Literal("String", string_literal(text), text, start=start)
        if _is(ctx, P.NumberLiteralContext):
            if "." in text:
                return Literal("Decimal", Decimal(text), text, start=start)
            return Literal("Integer", int(text), text, start=start)
        if _is(ctx, P.DateTimeLiteralContext):
            body = text[1:]
            kind = "dateTime" if "T" in body or start in self.partial else "date"
            if kind == "date" and body.endswith("Z"):
                kind = "dateTime"
            value = parse_temporal(body, kind)
            if value is None:
                raise FHIRPathSyntaxError(f"invalid date/time literal {text}")
            return Literal("DateTime" if kind == "dateTime" else "Date", value, text, start=start)
        if _is(ctx, P.TimeLiteralContext):
            value = parse_temporal(text[2:], "time")
            if value is None:
                raise FHIRPathSyntaxError(f"invalid time literal {text}")
            return Literal("Time", value, text, start=start)
        if _is(ctx, P.QuantityLiteralContext):
            quantity = ctx.quantity()
            number = Decimal(str(quantity.NUMBER().getText()))
            unit_ctx = quantity.unit()
            unit = "1"
            if unit_ctx is not None:
                unit_text = str(unit_ctx.getText())
                unit = string_literal(unit_text) if unit_text.startswith("'") else unit_text
            return Literal("Quantity", Quantity(number, unit), text, start=start)
        raise FHIRPathSyntaxError(f"unsupported literal {text}")
