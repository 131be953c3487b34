"""Static analysis of the typed tree: dependencies for the compiler, and types and cardinality against the R4 model.

`annotate` marks each node with what it depends on (`free`) and whether it runs per item of an
iteration (`in_lambda`); the compiler folds and shares subexpressions by these. `infer` gives each
node a `Static` type from the R4 model (`model.r4()`), the declared types of the %-variables and
the typing rules of the operator table and the function registry, and reports:

errors — an unknown element on a known type; an unknown type name in `is`/`as`/`ofType`; a criterion
(`where`, `all`, `exists`, `iif`, a condition) or an operand of `and`/`or`/`xor`/`implies`/`not()` that is not
Boolean or may hold more than one item; comparison or arithmetic of incompatible types; an undefined
%-variable (when the variables are declared); an unknown function or a wrong number of arguments;

warnings — where it cannot decide: a criterion or operand of unknown type, an element of an abstract
type (`Resource`), a choice element named by its JSON name (`valueQuantity`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from app.fhirpath.functions import FUNCTIONS, FunctionSpec, Typing
from app.fhirpath.host import DEFAULT_FUNCTIONS, Functions, HostFunction
from app.fhirpath.model import R4Model, r4
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
from app.fhirpath.static import (
    BOOLEAN,
    EMPTY,
    INTEGER,
    STRING,
    UNKNOWN,
    Static,
    categories,
    is_boolean,
    more,
    system,
    union,
)

# -- dependencies (for the compiler) --------------------------------------------------------------------

LOCAL = frozenset({"focus", "this", "index", "total"})


def annotate(node: Expr, functions: Functions = DEFAULT_FUNCTIONS, *, in_lambda: bool = False) -> frozenset[str]:
    """Fill in `free` and `in_lambda` on every node under `node`; returns the node's `free`."""
    node.in_lambda = in_lambda
    free: frozenset[str]
    if isinstance(node, Literal | TypeSpec):
        free = frozenset()
    elif isinstance(node, Variable):
        free = frozenset({"%" + node.name})
    elif isinstance(node, Special):
        free = frozenset({node.name})
    elif isinstance(node, Member):
        free = annotate(node.source, functions, in_lambda=in_lambda) if node.source else frozenset({"focus"})
    elif isinstance(node, Call):
        free = _call_free(node, functions, in_lambda)
    elif isinstance(node, TypeOp):
        free = annotate(node.operand, functions, in_lambda=in_lambda)
    else:
        free = frozenset().union(*(annotate(c, functions, in_lambda=in_lambda) for c in node.children()))
    node.free = free
    return free


def _call_free(node: Call, functions: Functions, in_lambda: bool) -> frozenset[str]:
    spec = FUNCTIONS.get(node.name)
    host = functions.get(node.name) if spec is None else None
    mode = spec.mode if spec else "value"
    free: set[str] = {"env"} if (spec and spec.env) or host else set()
    if node.source is not None:
        free |= annotate(node.source, functions, in_lambda=in_lambda)
    elif not (spec and spec.input_free):
        free.add("focus")
    for i, arg in enumerate(node.args):
        if mode == "lambda":
            inner = annotate(arg, functions, in_lambda=True) - {"focus", "this", "index"}
        elif mode == "aggregate":
            inner = annotate(arg, functions, in_lambda=i == 0)
            inner = inner - LOCAL if i == 0 else frozenset("this" if v == "focus" else v for v in inner)
        elif mode == "iif":
            inner = annotate(arg, functions, in_lambda=True) - {"focus", "this"}
        elif mode == "type":
            annotate(arg, functions, in_lambda=in_lambda)
            inner = frozenset()
        else:  # a value argument is evaluated on $this
            inner = frozenset(
                "this" if v == "focus" else v for v in annotate(arg, functions, in_lambda=in_lambda)
            )
        free |= inner
    return frozenset(free)


# -- types ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnostic:
    """One finding of the analysis: where (artifact, element, column), what, and the expression."""

    severity: str  # "error" or "warning"
    message: str
    tier: str = "spec"  # "spec": FHIRPath says so; "policy": refused in artifacts; "strict": FHIRPath's strict mode
    expression: str = ""
    artifact: str = ""
    element: str = ""
    column: int | None = None

    def located(self, artifact: str, element: str) -> Diagnostic:
        return replace(self, artifact=artifact, element=element)

    def __str__(self) -> str:
        where = " ".join(p for p in (self.artifact, self.element) if p)
        at = f" (column {self.column})" if self.column is not None else ""
        return f"{self.severity}: {where}{': ' if where else ''}{self.message}{at} — {self.expression}"


@dataclass
class Analysis:
    """The result type of an expression and what the analysis found."""

    type: Static
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


# %-names every evaluation defines, with their types (%context and the like take the focus type)
STANDARD_VARIABLE_TYPES: dict[str, Static] = {
    "ucum": STRING,
    "sct": STRING,
    "loinc": STRING,
    "today": system("Date"),
    "now": system("DateTime"),
}
_FOCUS_VARIABLES = frozenset({"context", "resource", "rootResource"})
_ABSTRACT = frozenset({"Resource", "DomainResource", "Element", "BackboneElement"})
_ORDERED_FUNCTIONS = frozenset({"first", "last", "tail", "skip", "take"})


def static_of(type_name: str | None, many: bool | None = False, model: R4Model | None = None) -> Static:
    """A Static for a declared type name (FHIR `Patient`, `boolean`, or System `Boolean`/`System.Boolean`)."""
    if not type_name:
        return Static(None, many)
    model = model or r4()
    if type_name.startswith("System."):
        return Static(frozenset({type_name}), many)
    if model.is_type(type_name):
        return Static(frozenset({type_name}), many)
    resolved = model.resolve_type(None, type_name)
    return Static(frozenset({resolved}) if resolved else None, many)


class _Infer:
    def __init__(
        self,
        text: str,
        model: R4Model,
        variables: Mapping[str, Static] | None,
        functions: Functions,
        strict: bool,
        policy: bool,
        focus: Static,
        open_variables: bool = False,
    ):
        self.text = text
        self.model = model
        self.variables = variables
        self.functions = functions
        self.strict = strict
        self.policy = policy
        self.open_variables = open_variables
        self.focus = focus
        self.diagnostics: list[Diagnostic] = []

    def report(self, severity: str, message: str, node: Expr, tier: str = "spec") -> None:
        if severity == "error" and (tier == "policy" and not self.policy or tier == "strict" and not self.strict):
            severity = "warning"
        diagnostic = Diagnostic(severity, message, tier, self.text, column=node.start + 1)
        if diagnostic not in self.diagnostics:
            self.diagnostics.append(diagnostic)

    def require_boolean(self, static: Static, what: str, node: Expr, tier: str = "policy") -> None:
        verdict = is_boolean(self.model, static)
        if static.types is None:
            self.report("warning", f"cannot tell whether {what} is one Boolean ({static.describe()})", node)
        elif verdict is False:
            self.report("error", f"{what} is {static.describe()}, not Boolean", node, tier)
        elif static.many:
            self.report("error", f"{what} may hold more than one item", node, "policy")
        elif static.many is None:
            self.report("warning", f"cannot tell whether {what} holds one item", node)
        elif verdict is None:
            self.report("warning", f"cannot tell whether {what} is Boolean ({static.describe()})", node)

    # the input of a term is $this (the expression's focus at the top, the item inside an iteration)
    def infer(self, node: Expr, this: Static, total: Static = UNKNOWN) -> Static:
        if isinstance(node, Literal):
            return EMPTY if node.kind == "null" else system(node.kind)
        if isinstance(node, Variable):
            return self.variable(node)
        if isinstance(node, Special):
            return {"this": this, "index": INTEGER}.get(node.name, total)
        if isinstance(node, Member):
            source = self.infer(node.source, this, total) if node.source else this
            return self.member(source, node, at_start=node.source is None)
        if isinstance(node, Call):
            return self.call(node, this, total)
        if isinstance(node, Indexer):
            source = self.infer(node.source, this, total)
            if source.unordered:
                self.report("error", "[] needs an ordered input; children() and descendants() are not", node,
                            "strict")
            index = self.infer(node.index, this, total)
            if categories(self.model, index) not in (None, frozenset({"Number"})):
                self.report("error", f"an index must be an Integer, not {index.describe()}", node.index)
            return source.one()
        if isinstance(node, Unary):
            operand = self.infer(node.operand, this, total)
            cats = categories(self.model, operand)
            if cats and not cats <= {"Number", "Quantity"}:
                self.report("error", f"unary '{node.op}' needs a number or quantity, not {operand.describe()}", node)
            return operand.one()
        if isinstance(node, Binary):
            return self.binary(node, this, total)
        if isinstance(node, TypeOp):
            operand = self.infer(node.operand, this, total)
            target = self.type_name(node.type)
            if operand.many:
                self.report("warning", f"the operand of '{node.op}' may hold more than one item", node)
            if node.op == "is":
                return BOOLEAN
            return Static(frozenset({target}) if target else None, False)
        return UNKNOWN

    def variable(self, node: Variable) -> Static:
        name = node.name
        if self.variables is not None and name in self.variables:
            return self.variables[name]
        if name in _FOCUS_VARIABLES:
            if name == "context" or self.focus.types is None:
                return self.focus
            # %resource is the resource the focus is in: the focus itself when it is a resource
            if all(self.model.is_resource(t) for t in self.focus.types):
                return self.focus
            return Static(frozenset({"Resource"}), False)
        if name in STANDARD_VARIABLE_TYPES:
            return STANDARD_VARIABLE_TYPES[name]
        if name.startswith(("vs-", "ext-")):
            return STRING
        if self.variables is not None:
            if self.open_variables:
                self.report("warning", f"cannot check %{name}: nothing loaded declares it", node)
            else:
                self.report("error", f"%{name} is not defined", node)
        return UNKNOWN

    def type_name(self, spec: TypeSpec) -> str | None:
        resolved = self.model.resolve_type(spec.namespace, spec.name)
        if resolved is None:
            # `System.Patient` is a name nothing has (false, not an error, in the suite); a misspelt name is wrong
            self.report("error", f"unknown type {spec.text}", spec, "policy" if spec.namespace == "System" else "spec")
        return resolved

    def member(self, source: Static, node: Member, *, at_start: bool) -> Static:
        name = node.name
        if source.types is None:
            return UNKNOWN
        if at_start and name[:1].isupper() and self.model.is_type(name):
            # `Patient.name`: a type name at the start selects the focus when it is of that type
            if any(name in self.model.ancestors(t) or t in self.model.ancestors(name) for t in source.types):
                return Static(frozenset({name}), source.many)
            if not any(self.model.element(t, name) for t in source.types):
                self.report("error", f"the input is {source.describe()}, never a {name}", node)
                return EMPTY
        found: list[str] = []
        many = source.many
        unknown_on: list[str] = []
        for owner in source.types:
            element = self.model.element(owner, name)
            if element is None:
                unknown_on.append(owner)
                continue
            found.extend(element.types)
            many = more(many, element.many)
            if self.choice_json_name(owner, name):
                message = f"{name} is the JSON name of a choice element; FHIRPath names it by the element"
                self.report("error", message, node, "strict")
        if unknown_on and not found:
            abstract = [t for t in unknown_on if t in _ABSTRACT]
            if abstract and len(abstract) == len(unknown_on):
                self.report(
                    "warning", f"cannot check '{name}' on {source.describe()}: any subtype may be there", node
                )
                return UNKNOWN
            owner_text = source.one().describe()
            self.report("error", f"{owner_text} has no element '{name}'", node)
            return EMPTY
        return Static(frozenset(found), many)

    def choice_json_name(self, owner: str, name: str) -> bool:
        for i in range(len(name) - 1, 0, -1):
            if name[i].isupper():
                for base in self.model.ancestors(owner):
                    entry = self.model.elements.get(f"{base}.{name[:i]}")
                    if entry is not None and len(entry) > 2 and entry[2] == "choice":
                        return True
        return False

    def call(self, node: Call, this: Static, total: Static) -> Static:
        source = self.infer(node.source, this, total) if node.source else this
        spec = FUNCTIONS.get(node.name)
        host = self.functions.get(node.name) if spec is None else None
        if spec is None and host is None:
            self.report("error", f"unknown function {node.name}()", node)
            for arg in node.args:
                self.infer(arg, this, total)
            return UNKNOWN
        low, high = (spec.low, spec.high) if spec else (host.min_args, host.max_args)  # type: ignore[union-attr]
        if not low <= len(node.args) <= high:
            expected = str(low) if low == high else f"{low} to {high}"
            self.report("error", f"{node.name}() takes {expected} argument(s), not {len(node.args)}", node)
            return UNKNOWN
        if host is not None:
            for arg in node.args:
                self.infer(arg, this, total)
            return self.host_result(host, source)
        assert spec is not None
        if spec.name in _ORDERED_FUNCTIONS and source.unordered:
            self.report("error", f"{spec.name}() needs an ordered input; children() and descendants() are not", node,
                        "strict")
        args = self.arguments(spec, node, source, this, total)
        if node.name == "not":
            self.require_boolean(source, "the input of not()", node, "policy")
        return spec.result(Typing(self.model, source, args, node))

    def host_result(self, host: HostFunction, source: Static) -> Static:
        many = source.many if host.many is None else host.many
        return static_of(host.result, many, self.model) if host.result else Static(None, many)

    def arguments(self, spec: FunctionSpec, node: Call, source: Static, this: Static, total: Static) -> list[Static]:
        args: list[Static] = []
        if spec.mode == "aggregate":
            # $total starts as the init value (or empty) and then holds what the aggregator gave: typed by
            # one more pass with the union of both
            init = self.infer(node.args[1], this, total) if len(node.args) > 1 else EMPTY
            first = self.infer(node.args[0], source.one(), init)
            again = self.infer(node.args[0], source.one(), union(init, first))
            return [again, init]
        for i, arg in enumerate(node.args):
            if spec.mode == "type":
                if isinstance(arg, TypeSpec):
                    self.type_name(arg)
                args.append(UNKNOWN)
                continue
            if spec.mode == "lambda":
                if spec.name == "sort" and isinstance(arg, Unary) and arg.op == "-":
                    arg = arg.operand  # `sort(-key)`: descending by key, not a negation
                static = self.infer(arg, source.one(), total)
            elif spec.mode == "iif":
                static = self.infer(arg, source, total)
            else:
                static = self.infer(arg, this, total)
            if spec.criterion and i == 0:
                self.require_boolean(static, f"the criterion of {spec.name}()", arg,
                                     "spec" if spec.mode == "iif" else "policy")
            args.append(static)
        if spec.mode == "iif" and source.many:
            self.report("error", "the input of iif() may hold more than one item", node, "policy")
        return args

    def binary(self, node: Binary, this: Static, total: Static) -> Static:
        left = self.infer(node.left, this, total)
        right = self.infer(node.right, this, total)
        operator = OPERATORS[node.op]
        result, findings = operator.typing(self.model, left, right)
        for tier, message in findings:
            self.report("error", message, node, tier)
        if node.op in ("and", "or", "xor", "implies"):
            for side, static, operand in (("left", left, node.left), ("right", right, node.right)):
                if static.many is not True and (is_boolean(self.model, static) is None or static.many is None):
                    self.report(
                        "warning",
                        f"cannot tell whether the {side} operand of '{node.op}' is one Boolean ({static.describe()})",
                        operand,
                    )
        return result


def infer(
    tree: Expr,
    text: str,
    *,
    focus: Static | str | None = None,
    variables: Mapping[str, Static] | None = None,
    functions: Functions = DEFAULT_FUNCTIONS,
    strict: bool = False,
    policy: bool = True,
    criterion: str | None = None,
    model: R4Model | None = None,
    open_variables: bool = False,
) -> Analysis:
    """Type an expression over a focus of the given type, with the %-variables declared in `variables`.

    With `variables=None` any %-name is accepted (as unknown); with a mapping, a name neither in it
    nor standard is an error (with `open_variables`, a warning: what declares it is not at hand).
    `criterion` names the place when the result must be one Boolean ("the condition"). `strict` makes the
    lenient readings of the suite's strict mode errors; without `policy`, the project's own rules for
    artifacts (a criterion that may hold several items, a non-Boolean operand of `and`, `=` between
    incompatible types …) are warnings.
    """
    model = model or r4()
    focus_static = focus if isinstance(focus, Static) else static_of(focus, False, model)
    run = _Infer(text, model, variables, functions, strict, policy, focus_static, open_variables)
    result = run.infer(tree, focus_static)
    if criterion:
        run.require_boolean(result, criterion, tree)
    return Analysis(result, run.diagnostics)
