"""Primitive rules the JSON schema does not state: base64Binary content and string lengths.

https://hl7.org/fhir/R4/datatypes.html#primitive: a `base64Binary` is base64 content (RFC 4648,
whitespace allowed between groups); a `string` SHALL NOT exceed 1 MB (1024 * 1024 characters), and
`markdown` with it; `code`, `id`, `uri` patterns and integer ranges are the schema's and the models'.
"""
from __future__ import annotations

import binascii
import re
from typing import Any

from app.errors import Issue

MAX_STRING = 1024 * 1024
_WHITESPACE = re.compile(r"[ \t\r\n]+")
_LONG_TYPES = frozenset({"string", "markdown"})


def primitive_issues(type_name: str | None, value: Any, location: str) -> list[Issue]:
    if type(value) is not str:
        return []
    if type_name == "base64Binary":
        problem = base64_problem(value)
        if problem:
            return [Issue("error", "value", problem, [location])]
    elif type_name in _LONG_TYPES and len(value) > MAX_STRING:
        return [Issue("error", "too-long", f"A {type_name} may have at most {MAX_STRING} characters, this one "
                      f"has {len(value)}", [location])]
    return []


def base64_problem(value: str) -> str | None:
    """Why `value` is no base64 content, or None."""
    compact = _WHITESPACE.sub("", value)
    if len(compact) % 4:
        return f"Invalid base64Binary: {len(compact)} characters without whitespace is not a multiple of 4"
    try:
        binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error as exc:
        return f"Invalid base64Binary content ({exc})"
    return None
