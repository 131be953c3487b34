"""FHIRPath (N1, as FHIR R4 uses it): parse, check against the R4 model, compile to closures, evaluate.

The package depends on nothing else in the application: terminology (`memberOf()`), references
(`resolve()`), answer weights and any further host function reach it through the `Environment`
given at evaluation and the function registry given at compilation (see `docs/fhirpath.md`).
"""

from app.fhirpath.compiler import FHIRPathError, to_boolean
from app.fhirpath.engine import (
    EVALUATION_ERRORS,
    FHIRPATH,
    STANDARD_VARIABLES,
    CompiledExpression,
    Environment,
    Evaluator,
    Scope,
    Terminology,
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

__all__ = [
    "EVALUATION_ERRORS",
    "FHIRPATH",
    "STANDARD_VARIABLES",
    "CompiledExpression",
    "Environment",
    "Evaluator",
    "FHIRPathError",
    "Scope",
    "Terminology",
    "compile_expression",
    "evaluate",
    "expressions_in",
    "make_environment",
    "references_index",
    "singleton_boolean",
    "to_boolean",
    "to_decimal",
    "to_json",
    "weight_extension",
]
