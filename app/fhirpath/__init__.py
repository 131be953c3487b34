"""FHIRPath (N1, as FHIR R4 uses it): parse, check against the R4 model, compile to closures, evaluate.

The package depends on nothing else in the application: terminology (`memberOf()`), references
(`resolve()`), answer weights and any further host function reach it through the `Environment`
given at evaluation and the function registry given at compilation (see `docs/fhirpath.md`).
"""

from app.fhirpath.analysis import Analysis, Diagnostic, static_of
from app.fhirpath.engine import (
    EVALUATION_ERRORS,
    FHIRPATH,
    STANDARD_VARIABLES,
    CompiledExpression,
    Environment,
    Evaluator,
    Scope,
    Terminology,
    check_expression,
    compile_expression,
    evaluate,
    expressions_in,
    make_environment,
    references_index,
    singleton_boolean,
    to_decimal,
    to_json,
    weight_extension,
)
from app.fhirpath.host import DEFAULT_FUNCTIONS, Functions, HostFunction
from app.fhirpath.runtime import FHIRPathError, to_boolean
from app.fhirpath.static import Static

__all__ = [
    "DEFAULT_FUNCTIONS",
    "EVALUATION_ERRORS",
    "FHIRPATH",
    "STANDARD_VARIABLES",
    "Analysis",
    "CompiledExpression",
    "Diagnostic",
    "Environment",
    "Evaluator",
    "FHIRPathError",
    "Functions",
    "HostFunction",
    "Scope",
    "Static",
    "Terminology",
    "check_expression",
    "compile_expression",
    "evaluate",
    "expressions_in",
    "make_environment",
    "references_index",
    "singleton_boolean",
    "static_of",
    "to_boolean",
    "to_decimal",
    "to_json",
    "weight_extension",
]
