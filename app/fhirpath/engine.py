"""The public face of the engine: compile once per text, evaluate over a focus with a Scope and an Environment.

The pipeline is parse (`parser`, fhirpathpy's ANTLR grammar with N1 precedence) → typed tree
(`nodes`) → static analysis (`analysis`: dependencies, and types against the R4 model) → closures
(`compiler`). Closures rather than an interpreter because fhirpathpy's interpreter costs about
1.5 ms per case feature, which a CDS hook cannot afford, and reads the wall clock and module-global
state in `today()`/`now()`. Within one `Scope` (one request), a subexpression that reads only
%-variables, or only the record, is computed once and shared by every expression that has it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from app.errors import FHIRError, Issue
from app.fhirpath.analysis import Analysis, Diagnostic, annotate, infer
from app.fhirpath.compiler import compile_tree
from app.fhirpath.host import DEFAULT_FUNCTIONS, Functions
from app.fhirpath.nodes import Expr, variables
from app.fhirpath.parser import FHIRPathSyntaxError, parse
from app.fhirpath.runtime import Ctx, FHIRPathError, Fn, to_boolean
from app.fhirpath.static import Static
from app.fhirpath.values import Node, Quantity, Temporal, as_collection, parse_temporal

UCUM = "http://unitsofmeasure.org"
FHIRPATH = "text/fhirpath"
ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"

# %-names every evaluation defines; an artifact may use these without declaring them
STANDARD_VARIABLES = frozenset(
    {"context", "resource", "rootResource", "ucum", "sct", "loinc", "today", "now"}
)

__all__ = [
    "FHIRPATH",
    "STANDARD_VARIABLES",
    "CompiledExpression",
    "Environment",
    "Evaluator",
    "FHIRPathError",
    "Scope",
    "check_expression",
    "compile_expression",
    "evaluate",
    "expressions_in",
    "make_environment",
    "singleton_boolean",
    "to_json",
]


# What a bad expression or unexpected data can raise while evaluating; reported as FHIRPathError.
EVALUATION_ERRORS = (ArithmeticError, TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError)


@dataclass(frozen=True)
class CompiledExpression:
    """A parsed, checked, compiled FHIRPath expression; `variables` are the %-names it reads."""

    text: str
    fn: Fn = field(repr=False, compare=False)
    variables: frozenset[str]
    tree: Expr = field(repr=False, compare=False)


# compiled expressions by (text, host functions): compiling is pure, so the result is kept
_cache: dict[tuple[str, Functions], CompiledExpression | str] = {}
_cache_lock = threading.Lock()
_CACHE_LIMIT = 20_000


def _compile(text: str, functions: Functions) -> CompiledExpression:
    tree = parse(text)
    annotate(tree, functions)
    # what can be wrong whatever the input: unknown functions and type names, non-Boolean criteria …
    errors = infer(tree, text, functions=functions, policy=False).errors
    if errors:
        raise FHIRPathError("; ".join(e.message for e in errors))
    return CompiledExpression(text=text, fn=compile_tree(tree, functions), variables=variables(tree), tree=tree)


def compile_expression(
    text: str, *, artifact: str = "", path: str = "", functions: Functions = DEFAULT_FUNCTIONS
) -> CompiledExpression:
    """Parse, check and compile once (cached); FHIRError('invalid') naming artifact, element path and text.

    The check here knows nothing of the input or the variables (see `check_expression` for that).
    """
    key = (text, functions)
    cached = _cache.get(key) if isinstance(text, str) else None
    if cached is None:
        try:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("empty expression")
            cached = _compile(text, functions)
        except Exception as exc:  # antlr, the tree builder and the compiler raise plain exceptions
            cached = str(exc) or type(exc).__name__
        if isinstance(text, str):
            with _cache_lock:
                if len(_cache) >= _CACHE_LIMIT:
                    _cache.clear()
                _cache[key] = cached
    if isinstance(cached, str):
        where = f"{artifact}: " if artifact else ""
        at = f" at {path}" if path else ""
        message = f"{where}the FHIRPath{at} does not compile ({cached}): {text}"
        raise FHIRError(
            "invalid",
            message,
            path or None,
            issues=[Issue("error", "invalid", message, [path] if path else [], diagnostics=str(text))],
        )
    return cached


def check_expression(
    text: str,
    *,
    focus: Static | str | None = None,
    variables: Mapping[str, Static] | None = None,
    criterion: str | None = None,
    functions: Functions = DEFAULT_FUNCTIONS,
    strict: bool = False,
    policy: bool = True,
    open_variables: bool = False,
) -> Analysis:
    """Parse and type an expression over a focus type with declared %-variables (see `analysis.infer`).

    A syntax error is one error diagnostic; nothing is compiled.
    """
    try:
        tree = parse(text)
    except FHIRPathSyntaxError as exc:
        from app.fhirpath.static import UNKNOWN  # noqa: PLC0415

        return Analysis(UNKNOWN, [Diagnostic("error", f"syntax: {exc}", "spec", text)])
    return infer(tree, text, focus=focus, variables=variables, criterion=criterion, functions=functions,
                 strict=strict, policy=policy, open_variables=open_variables)


def to_decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def weight_extension(element: Mapping[str, Any]) -> Decimal | None:
    """The itemWeight (or older ordinalValue) extension of an answerOption or Coding, as Decimal."""
    for ext in element.get("extension", []) or []:
        if ext.get("url") in (ITEM_WEIGHT, ORDINAL_VALUE) and "valueDecimal" in ext:
            return to_decimal(ext["valueDecimal"])
    return None


class Terminology(Protocol):
    """What memberOf() asks of the host: a membership test per ValueSet canonical.

    `matcher(url)` returns a callable taking a code, Coding or CodeableConcept (as FHIR JSON) and
    answering True/False, or None when membership cannot be decided; `has_valueset(url)` says
    whether the ValueSet is known at all (memberOf() of an unknown ValueSet is an error).
    """

    def has_valueset(self, canonical: str) -> bool: ...

    def matcher(self, canonical: str) -> Callable[[Any], bool | None]: ...


@dataclass(frozen=True)
class Environment:
    """What an evaluation reads besides its focus: the clock, terminology, weights, references."""

    today: date
    now: datetime
    terminology: Terminology | None = None
    # SDC weight(): the itemWeight of an answer Coding, by the identity of the Coding dict in the
    # response being scored, and by (system, code) where the Questionnaire is unambiguous
    weight_by_id: Mapping[int, Decimal] = field(default_factory=dict)
    weight_by_code: Mapping[tuple[str | None, str | None], Decimal | None] = field(default_factory=dict)
    references: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # anything else a host function needs (see `host`): read by the host's own functions only
    host: Mapping[str, Any] = field(default_factory=dict)
    today_value: Temporal = field(init=False, repr=False, compare=False)
    now_value: Temporal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "today_value", parse_temporal(self.today.isoformat(), "date"))
        now = self.now if self.now.tzinfo else self.now.astimezone()
        object.__setattr__(
            self, "now_value", parse_temporal(now.isoformat(timespec="milliseconds"), "dateTime")
        )

    def with_(self, **changes: Any) -> Environment:
        values: dict[str, Any] = {
            "today": self.today,
            "now": self.now,
            "terminology": self.terminology,
            "weight_by_id": self.weight_by_id,
            "weight_by_code": self.weight_by_code,
            "references": self.references,
            "host": self.host,
        }
        values.update(changes)
        return Environment(**values)

    def weight_of(self, coding: Mapping[str, Any]) -> Decimal | None:
        weight = self.weight_by_id.get(id(coding))
        if weight is None:
            weight = self.weight_by_code.get((coding.get("system"), coding.get("code")))
        if weight is None:
            weight = weight_extension(coding)
        return weight


def make_environment(
    today: date | datetime | None = None,
    *,
    terminology: Terminology | None = None,
    references: Mapping[str, dict[str, Any]] | None = None,
    host: Mapping[str, Any] | None = None,
) -> Environment:
    """`today` may be a date (now = that day at the current wall-clock time) or a datetime (= now)."""
    if isinstance(today, datetime):
        now = today
        day = today.date()
    else:
        wall = datetime.now().astimezone()
        day = today or wall.date()
        now = datetime.combine(day, wall.timetz())
    return Environment(today=day, now=now, terminology=terminology, references=references or {}, host=host or {})


class Scope(dict[str, Any]):
    """%-variables as collections ready for evaluation (name -> list of items).

    A scope also memoises what its variables determine (see `compiler._optimise`): give
    a variable its value once and do not change it afterwards.

    A variable the scope does not hold is asked of `missing(name)` before the standard variables:
    a child scope (`child`) answers from its parent, and a subclass may compute a variable there on
    its first read and store it (lazy variables: the case features). A variable that `missing`
    answers without storing, so that each read is seen, must call `observed()`: a memoised
    subexpression that read one is not stored in the memo, so every later evaluation reads it again.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.memo: dict[str, Any] = {}
        self.parent: Scope | None = None
        # how many reads were answered without storing, shared with children (see `observed`)
        self.observations: list[int] = [0]

    @classmethod
    def of(cls, values: Mapping[str, Any] | None) -> Scope:
        scope = cls()
        for name, value in (values or {}).items():
            scope[name] = value if isinstance(value, list) and _prepared(value) else as_collection(value)
        return scope

    def put(self, name: str, value: Any) -> None:
        self[name] = value if isinstance(value, list) and _prepared(value) else as_collection(value)

    def child(self, values: Mapping[str, Any] | None = None) -> Scope:
        """A scope with more variables that reads the rest from this one (with its own memo)."""
        scope = Scope()
        scope.parent = self
        scope.observations = self.observations
        for name, value in (values or {}).items():
            scope.put(name, value)
        return scope

    def missing(self, name: str) -> list[Any] | None:
        """The value of a variable this scope does not hold, or None when it is not defined here."""
        parent = self.parent
        if parent is None:
            return None
        value = parent.get(name)
        return value if value is not None else parent.missing(name)

    def observed(self) -> None:
        """Say that a read was answered without storing its value (see the class docstring)."""
        self.observations[0] += 1


def _prepared(values: list[Any]) -> bool:
    return all(not isinstance(v, (dict, float)) and v is not None for v in values)


class Evaluator:
    """Evaluates many expressions over one focus and scope (one Ctx for all: the case features)."""

    __slots__ = ("ctx", "root")

    def __init__(self, focus: Any, scope: Scope, env: Environment):
        self.root = focus if isinstance(focus, list) and _prepared(focus) else as_collection(focus)
        self.ctx = Ctx(scope, _standard(self.root, env), env, self.root, scope.memo)

    def __call__(self, compiled: CompiledExpression) -> list[Any]:
        ctx = self.ctx
        ctx.this = ctx.root
        ctx.index = []
        ctx.total = []
        try:
            return compiled.fn(ctx, ctx.root)
        except FHIRPathError:
            raise
        except EVALUATION_ERRORS as exc:
            raise FHIRPathError(f"{type(exc).__name__}: {exc}") from exc


def _standard(root: list[Any], env: Environment) -> dict[str, list[Any]]:
    return {
        "context": root,
        "resource": root,
        "rootResource": root,
        "ucum": [UCUM],
        "sct": ["http://snomed.info/sct"],
        "loinc": ["http://loinc.org"],
        "today": [env.today_value],
        "now": [env.now_value],
    }


def evaluate(
    compiled: CompiledExpression,
    focus: Any,
    variables: Mapping[str, Any] | None,
    env: Environment,
) -> list[Any]:
    """Evaluate over `focus` (a resource dict, a list, or items); raises FHIRPathError on errors.

    Returns the collection as engine items (see `to_json` for FHIR JSON).
    """
    root = focus if isinstance(focus, list) and _prepared(focus) else as_collection(focus)
    scope = variables if isinstance(variables, Scope) else Scope.of(variables)
    try:
        return compiled.fn(Ctx(scope, _standard(root, env), env, root, scope.memo), root)
    except FHIRPathError:
        raise
    except EVALUATION_ERRORS as exc:
        raise FHIRPathError(f"{type(exc).__name__}: {exc}") from exc


def _json_value(value: Any) -> Any:
    if type(value) is Node:
        return value.data
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Temporal):
        return value.text
    if isinstance(value, Quantity):
        return value.to_json()
    return value


def to_json(values: Sequence[Any]) -> list[Any]:
    """A collection as FHIR JSON values (elements as dicts, dates as strings, decimals as numbers)."""
    return [_json_value(v) for v in values]


def singleton_boolean(values: Sequence[Any]) -> bool | None:
    """A condition's value: True/False, None when empty; FHIRPathError when not one boolean."""
    if len(values) > 1:
        raise FHIRPathError(f"a condition must yield one boolean, got {len(values)} items")
    if values:
        value = values[0].data if type(values[0]) is Node else values[0]
        if not isinstance(value, bool):
            raise FHIRPathError(f"a condition must yield a boolean, got {_json_value(values[0])!r}")
    return to_boolean(list(values))


def expressions_in(element: Any, path: str) -> list[tuple[str, str, str | None]]:
    """Every FHIRPath Expression (language text/fhirpath) in a resource: (element path, text, name)."""
    found: list[tuple[str, str, str | None]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("language") == FHIRPATH and isinstance(node.get("expression"), str):
                found.append((f"{where}.expression", node["expression"], node.get("name")))
            for key, value in node.items():
                if key == "contained" or key.startswith("_"):
                    continue
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(element, path)
    return found


def references_index(
    resources: Sequence[Mapping[str, Any]], full_urls: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """`Type/id` (and fullUrl) -> resource, for resolve()."""
    index: dict[str, Any] = {}
    for resource in resources:
        if resource.get("resourceType") and resource.get("id"):
            index[f"{resource['resourceType']}/{resource['id']}"] = resource
        if full_urls and id(resource) in full_urls:
            index[full_urls[id(resource)]] = resource
    return index
