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

import msgspec
import orjson

# A JSON number with a fraction or an exponent, where JSON puts a value: after `:`, `[` or `,`, and before
# `,`, `}` or `]`. The delimiters keep out digits inside strings (ids such as `…-31e4-…`), so bodies of ids
# and dates alone take the fast path; a string that still looks like this is caught by the count below.
_NUMBER = re.compile(rb"[:\[,]\s*(-?\d+\.\d+(?:[eE][+-]?\d+)?|-?\d+[eE][+-]?\d+)(?=\s*[,}\]])")


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


def _exact_texts(raw: bytes) -> tuple[dict[float, str], dict[float, int]]:
    """(float -> its one exact text, for numbers whose text a float would change; float -> how many tokens)."""
    texts: dict[float, set[str]] = {}
    counts: dict[float, int] = {}
    inexact: set[float] = set()
    for m in _NUMBER.finditer(raw):
        token = m.group(1).decode()
        try:
            number = float(token)
        except ValueError:
            continue
        texts.setdefault(number, set()).add(token)
        counts[number] = counts.get(number, 0) + 1
        if repr(number) != token:
            inexact.add(number)
    return {n: next(iter(texts[n])) if len(texts[n]) == 1 else "" for n in inexact}, counts


def _with_decimals(value: Any, exact: dict[float, str], counts: dict[float, int]) -> bool:
    """Every float of `value` with an entry in `exact` replaced in place by its FHIRDecimal; False when a float
    cannot be told from another (one value written two ways, or a count that differs from the tokens')."""
    if any(text == "" for text in exact.values()):
        return False
    seen: dict[float, int] = dict.fromkeys(exact, 0)
    stack: list[Any] = [value]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, item in items:
            kind = type(item)
            if kind is dict or kind is list:
                push(item)
            elif kind is float and item in seen:
                seen[item] += 1
                node[key] = FHIRDecimal(exact[item])
    return all(seen[n] == counts[n] for n in seen)


# msgspec builds the Python objects straight from the bytes: its peak memory is the tree itself. orjson first
# builds a document of its own (a 4.6 MB Synthea bundle: 69 MB at the peak for a 14 MB tree), and a worker
# keeps that high-water mark. Both are strict (UTF-8, no NaN, no trailing data).
_decoder = msgspec.json.Decoder()


def _parse(raw: bytes) -> Any:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise orjson.JSONDecodeError(str(exc), "", 0) from None
    except RecursionError:
        raise orjson.JSONDecodeError("JSON nested too deeply", "", 0) from None


def loads(raw: bytes) -> Any:
    """Parse a request body; raises orjson.JSONDecodeError (a ValueError) on malformed JSON."""
    value = _parse(raw)
    exact, counts = _exact_texts(raw)
    if not exact:
        return value
    if isinstance(value, (dict, list)) and _with_decimals(value, exact, counts):
        return value
    del value
    try:  # ambiguous: the standard library's parser sees every number's own text
        return json.loads(raw, parse_float=_number)
    except RecursionError:  # nested beyond any valid resource: the depth check refuses it
        return _parse(raw)


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
