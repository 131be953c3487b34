"""The one place where validation touches the FHIRPath engine: compile, navigate, evaluate an invariant.

Every other validation module works through these functions, so pointing validation at another engine
(or another release of this one) changes this file only. An invariant is evaluated with its element as
the focus and `%context`, `%resource` the resource that holds the element and `%rootResource` the
resource that holds a contained one (https://hl7.org/fhir/R4/fhirpath.html#variables); the engine's
public `evaluate()` sets all three to the focus, so the evaluation context is built here.

Host functions: `htmlChecks()` (txt-1, txt-2) is registered with the engine's extension API
(`app.fhirpath.host`) as `VALIDATION_FUNCTIONS`, implemented by `narrative.html_checks`; every
invariant is compiled with that registry.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import FHIRError
from app.fhirpath import (
    DEFAULT_FUNCTIONS,
    EVALUATION_ERRORS,
    FHIRPathError,
    HostFunction,
    Scope,
    compile_expression,
    make_environment,
    to_boolean,
)
from app.fhirpath.parser import parse
from app.fhirpath.runtime import Ctx
from app.fhirpath.values import Node, navigate, resource_node

from .narrative import html_checks

__all__ = [
    "VALIDATION_FUNCTIONS",
    "EngineError",
    "Invariant",
    "Node",
    "child_nodes",
    "compile_invariant",
    "environment",
    "evaluate",
    "root_node",
]

UCUM = ["http://unitsofmeasure.org"]



def _html_checks(env: Any, focus: list[Any]) -> list[Any]:
    """FHIR R4 htmlChecks(): True when every narrative div in the input passes the narrative rules."""
    if not focus:
        return []
    return [all(html_checks(item.data if type(item) is Node else item) for item in focus)]


VALIDATION_FUNCTIONS = DEFAULT_FUNCTIONS.with_(
    HostFunction("htmlChecks", _html_checks, 0, 0, "Boolean", False,
                 "FHIR R4 narrative rules (txt-1, txt-2): allowed XHTML, no scripts, some content"),
)


class EngineError(Exception):
    """The engine could not evaluate an invariant on this input (a type or cardinality error)."""


@dataclass(frozen=True)
class Invariant:
    """A compiled constraint of a StructureDefinition."""

    key: str
    severity: str
    human: str
    expression: str
    fn: Callable[[Ctx, list], list]
    narrative: bool = False  # the expression is the narrative check htmlChecks()


def compile_invariant(key: str, severity: str, human: str, expression: str) -> Invariant:
    """Compile once; FHIRError('invalid') when the engine cannot compile the expression."""
    compiled = compile_expression(expression, artifact=f"constraint {key}", functions=VALIDATION_FUNCTIONS)
    return Invariant(key, severity, human, expression, compiled.fn, "htmlChecks" in expression)


def environment() -> Any:
    """What one validation's evaluations share (the clock for today()/now())."""
    return make_environment()


def root_node(resource: dict[str, Any]) -> Node:
    return resource_node(resource)


def child_nodes(node: Node, name: str) -> list[Any]:
    """The children of `node` named `name` (a choice element by its name without the type)."""
    return navigate([node], name)


def evaluate(invariant: Invariant, focus: Node, resource: Node, root_resource: Node, env: Any) -> bool | None:
    """True or False; None when the result is empty (no verdict, which passes). EngineError on errors."""
    focus_list = [focus]
    std: dict[str, list[Any]] = {
        "context": focus_list,
        "resource": [resource],
        "rootResource": [root_resource],
        "ucum": UCUM,
        "sct": ["http://snomed.info/sct"],
        "loinc": ["http://loinc.org"],
        "today": [env.today_value],
        "now": [env.now_value],
    }
    # no memo: a memoised subexpression over %context would be shared between different elements
    ctx = Ctx(Scope(), std, env, focus_list, None)
    try:
        result = invariant.fn(ctx, focus_list)
        return to_boolean(result)
    except FHIRPathError as exc:
        raise EngineError(str(exc)) from exc
    except EVALUATION_ERRORS as exc:
        raise EngineError(f"{type(exc).__name__}: {exc}") from exc


def compile_error_text(error: FHIRError) -> str:
    return error.issues[0].text if error.issues else str(error)


def extension_holder(element: dict[str, Any]) -> Node:
    """A node for the `_x` object of a primitive (its id and extensions), to walk its extensions."""
    return Node(element, "Element", "Element")


def syntax_error(text: str) -> str | None:
    """The FHIRPath syntax error of `text`, or None when it parses."""
    try:
        parse(text)
    except ValueError as exc:  # the parser's FHIRPathSyntaxError
        return str(exc)
    except Exception as exc:  # the AST builder raises plain exceptions on odd input
        return f"{type(exc).__name__}: {exc}"
    return None


def compile_problem(text: str) -> str | None:
    """Why the engine cannot compile `text` (an unsupported function, say), or None."""
    try:
        compile_expression(text, functions=VALIDATION_FUNCTIONS)
    except FHIRError as err:
        return compile_error_text(err)
    return None
