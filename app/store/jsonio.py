"""FHIR JSON in and out without losing decimal precision: `1.50` stays `1.50` (FHIR decimals are exact).

The parser hands every number with a fraction or an exponent over as its text; one whose text a float would
change becomes a `FHIRDecimal`: a float for every computation (validation, search indexing, FHIRPath) that
remembers its exact text, which `dumps` writes back verbatim.
"""
from __future__ import annotations

from typing import Any

import msgspec
import orjson


class FHIRDecimal(float):
    """A JSON number whose exact text a float would not reproduce."""

    text: str

    def __new__(cls, text: str) -> FHIRDecimal:
        value = super().__new__(cls, text)
        value.text = text
        return value


_INF = float("inf")


def _float_literal(text: str) -> float:
    """A JSON number with a fraction or an exponent, as the parser met it: a float, or a FHIRDecimal when the
    float would write it back differently."""
    value = float(text)
    if value in (_INF, -_INF):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value if repr(value) == text else FHIRDecimal(text)

# msgspec builds the Python objects straight from the bytes (its peak memory is the tree itself; orjson first
# builds a document of its own: 69 MB at the peak for the 14 MB tree of a 4.6 MB Synthea bundle, a high-water
# mark a worker keeps) and hands every number with a fraction or exponent to the hook as its text. It is as
# strict as orjson: UTF-8, no NaN, no trailing data.
_decoder = msgspec.json.Decoder(float_hook=_float_literal)


def loads(raw: bytes) -> Any:
    """Parse a request body; raises orjson.JSONDecodeError (a ValueError) on malformed JSON."""
    try:
        return _decoder.decode(raw)
    except ValueError as exc:  # msgspec.DecodeError, or a number out of range
        raise orjson.JSONDecodeError(str(exc), "", 0) from None
    except RecursionError:
        raise orjson.JSONDecodeError("JSON nested too deeply", "", 0) from None


def _default(value: Any) -> Any:
    if isinstance(value, FHIRDecimal):
        return orjson.Fragment(value.text.encode())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_default)
    except TypeError:  # an integer beyond 64 bits: JSON allows it and the parser keeps it exact
        return orjson.dumps(_wide_ints_as_text(value), default=_default)


def _wide_ints_as_text(value: Any) -> Any:
    if type(value) is int and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value).encode())
    if isinstance(value, dict):
        return {k: _wide_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wide_ints_as_text(v) for v in value]
    return value


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
