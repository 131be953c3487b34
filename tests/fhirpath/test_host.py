"""The extension API: a host registers a function, the compiler and the analysis know it, the evaluation calls it."""

from __future__ import annotations

import pytest

from app.errors import FHIRError
from app.fhirpath import (
    DEFAULT_FUNCTIONS,
    HostFunction,
    check_expression,
    compile_expression,
    evaluate,
    make_environment,
)

PATIENT = {"resourceType": "Patient", "id": "p", "text": {"status": "generated", "div": "<div>ok</div>"}}


def html_checks(env, focus):
    return [all(env.host["safe"](item.data) for item in focus)]


FUNCTIONS = DEFAULT_FUNCTIONS.with_(
    HostFunction("htmlChecks", html_checks, min_args=0, max_args=0, result="Boolean", many=False)
)


def test_a_registered_host_function_is_compiled_typed_and_called_with_the_environment():
    compiled = compile_expression("text.`div`.htmlChecks()", functions=FUNCTIONS)
    safe = make_environment(host={"safe": lambda xhtml: "<script" not in xhtml})
    assert evaluate(compiled, PATIENT, None, safe) == [True]
    unsafe = {**PATIENT, "text": {"status": "generated", "div": "<div><script/></div>"}}
    assert evaluate(compiled, unsafe, None, safe) == [False]
    analysis = check_expression("iif(text.`div`.htmlChecks(), 1, 2)", focus="Patient", functions=FUNCTIONS)
    assert analysis.diagnostics == []


def test_an_unregistered_function_is_refused_and_the_registry_is_not_changed():
    with pytest.raises(FHIRError, match=r"unknown function htmlChecks\(\)"):
        compile_expression("text.`div`.htmlChecks()")
    assert "htmlChecks" not in DEFAULT_FUNCTIONS and "htmlChecks" in FUNCTIONS


def test_host_function_arity_and_result_types_are_checked():
    with pytest.raises(FHIRError, match="takes 0 argument"):
        compile_expression("htmlChecks(1)", functions=FUNCTIONS)
    analysis = check_expression("text.`div`.htmlChecks() + 1", focus="Patient", functions=FUNCTIONS)
    assert [d.message for d in analysis.errors] == ["'+' cannot combine Boolean and Integer"]
