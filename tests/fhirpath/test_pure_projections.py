"""select() over strings and integers whose projection reads only the item is worked out once per input and
shared; a projection that reads anything else (a variable, the environment, $index) is evaluated each time."""
from __future__ import annotations

import pytest

from app.fhirpath import FHIRPathError, compile_expression, evaluate, functions, make_environment

DAY_NUMBER = ("select(substring(8, 2).toInteger() + (153 * (substring(5, 2).toInteger() + 12 * ((14 - "
              "substring(5, 2).toInteger()) div 12) - 3) + 2) div 5 + 365 * (substring(0, 4).toInteger() + 4800 - "
              "((14 - substring(5, 2).toInteger()) div 12)))")


def _run(text, focus, variables=None):
    return evaluate(compile_expression(text), focus, variables, make_environment())


def test_a_pure_projection_gives_the_same_values_and_is_kept_once():
    functions._PURE_RESULTS.clear()
    first = _run(DAY_NUMBER, ["2026-03-01", "2026-03-02", "2026-03-01"])
    assert first[0] == first[2] and first[1] == first[0] + 1
    kept = len(functions._PURE_RESULTS)
    assert kept == 2  # two distinct inputs
    assert _run(DAY_NUMBER, ["2026-03-02", "2026-03-01"]) == [first[1], first[0]]
    assert len(functions._PURE_RESULTS) == kept


def test_a_projection_reading_a_variable_is_not_shared():
    functions._PURE_RESULTS.clear()
    text = "select($this + %offset)"
    assert _run(text, [1, 2], {"offset": [10]}) == [11, 12]
    assert _run(text, [1, 2], {"offset": [20]}) == [21, 22]
    assert functions._PURE_RESULTS == {}


def test_a_projection_reading_index_is_not_shared():
    functions._PURE_RESULTS.clear()
    assert _run("select($this + $index)", [5, 5]) == [5, 6]
    assert functions._PURE_RESULTS == {}


def test_resources_are_not_shared_and_an_error_is_not_kept():
    functions._PURE_RESULTS.clear()
    assert len(_run("select(id)", [{"resourceType": "Patient", "id": "a"}])) == 1
    assert functions._PURE_RESULTS == {}
    with pytest.raises(FHIRPathError):
        _run("select(substring(0, 2).toInteger() / 0 + 1 | (1 | 2).single())", ["20"])
    assert functions._PURE_RESULTS == {}
