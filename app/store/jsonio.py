"""FHIR JSON in and out without losing decimal precision: `1.50` stays `1.50` (FHIR decimals are exact).

Most bodies hold no decimal whose text a float would change; they take orjson's fast path. A body that
does is parsed again with the standard library, and each such number becomes a `FHIRDecimal`: a float
for every computation (validation, search indexing, FHIRPath) that remembers its exact text, which
`dumps` writes back verbatim.
"""
from __future__ import annotations

import json
import re
from typing import Any

import orjson

_NUMBER = re.compile(rb"-?\d+\.\d+(?:[eE][+-]?\d+)?|-?\d+[eE][+-]?\d+")


class FHIRDecimal(float):
    """A JSON number whose exact text a float would not reproduce."""

    text: str

    def __new__(cls, text: str) -> FHIRDecimal:
        value = super().__new__(cls, text)
        value.text = text
        return value


def _number(text: str) -> float:
    value = float(text)
    return value if repr(value) == text else FHIRDecimal(text)


def _needs_exact(raw: bytes) -> bool:
    for m in _NUMBER.finditer(raw):
        token = m.group().decode()
        try:
            if repr(float(token)) != token:
                return True
        except ValueError:
            continue
    return False


def loads(raw: bytes) -> Any:
    """Parse a request body; raises orjson.JSONDecodeError (a ValueError) on malformed JSON."""
    value = orjson.loads(raw)  # validates the JSON (strict UTF-8, no NaN) once, fast
    if not _needs_exact(raw):
        return value
    try:
        return json.loads(raw, parse_float=_number)
    except RecursionError:  # nested beyond any valid resource: the depth check refuses it
        return value


def _default(value: Any) -> Any:
    if isinstance(value, FHIRDecimal):
        return orjson.Fragment(value.text.encode())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def plain(value: Any) -> Any:
    """`value` with every FHIRDecimal as a plain float (for checks that want exact JSON types); the same object
    when it holds none."""
    if isinstance(value, FHIRDecimal):
        return float(value)
    if isinstance(value, dict):
        out = None
        for k, v in value.items():
            p = plain(v)
            if p is not v:
                if out is None:
                    out = dict(value)
                out[k] = p
        return value if out is None else out
    if isinstance(value, list):
        items = [plain(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
