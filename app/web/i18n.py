"""Languages of the web pages: choosing one, the page texts (JSON data files) and FHIR translation extensions."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from flask import request

from app.conventions import LANGUAGES, variants

CONTENT = Path(__file__).resolve().parent / "content"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"


@functools.cache
def texts(kind: str, lang: str) -> dict[str, Any]:
    """The page texts of one kind (`ui`, `info`) in one language, from content/<kind>.<lang>.json."""
    return orjson.loads((CONTENT / f"{kind}.{lang}.json").read_bytes())


def choose_language(*preferred: str | None, variant: str | None = None) -> str:
    """The first supported of: explicit choices (query, link), the browser's Accept-Language, the variant's."""
    for lang in preferred:
        if lang in LANGUAGES:
            return lang  # type: ignore[return-value]
    try:
        best = request.accept_languages.best_match(LANGUAGES)
    except RuntimeError:
        best = None
    if best:
        return best
    known = variants().get(variant or "")
    return known.language if known is not None else "en"


def translated(element: Mapping[str, Any] | None, key: str, lang: str, primary: str | None) -> str | None:
    """`element[key]` in `lang`: the primary text, or its translation extension (`_key`), else the primary."""
    if not element:
        return None
    value = element.get(key)
    if lang == primary or not primary and lang == "en":
        return value
    for ext in (element.get(f"_{key}") or {}).get("extension", []) or []:
        if ext.get("url") != TRANSLATION:
            continue
        parts = {e.get("url"): e for e in ext.get("extension", []) or []}
        code = (parts.get("lang") or {}).get("valueCode", "")
        if code == lang or code.split("-")[0] == lang:
            content = (parts.get("content") or {}).get("valueString")
            if content:
                return content
    return value
