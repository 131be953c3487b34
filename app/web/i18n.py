"""Languages of the web pages: choosing one and the page texts (JSON data files); artifact texts: app.translation."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson
from flask import request

from app.conventions import LANGUAGES, variants
from app.translation import translated

CONTENT = Path(__file__).resolve().parent / "content"


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


__all__ = ["choose_language", "texts", "translated"]
