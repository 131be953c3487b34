"""Languages of the web pages: choosing one and the page texts (JSON data files); artifact texts: app.translation."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from flask import request

from app.conventions import LANGUAGES, variants
from app.translation import TRANSLATION, translated

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


def requested_language(*preferred: str | None) -> str | None:
    """The reader's language: the first supported explicit choice, else the browser's Accept-Language; None if
    neither names one (the page then speaks the variant's language)."""
    for lang in preferred:
        if lang in LANGUAGES:
            return lang
    try:
        return request.accept_languages.best_match(LANGUAGES)
    except RuntimeError:
        return None


def page_language(wanted: str | None, variant_language: str, speaks: Callable[[str], bool],
                  fallback: str | None = None) -> str:
    """One language per page: the reader's when the artifacts shown carry it for every text, else the variant's
    (else `fallback`, the artifacts' own language, when they do not carry the variant's either)."""
    if wanted in LANGUAGES and speaks(wanted):
        return wanted
    if speaks(variant_language) or fallback not in LANGUAGES:
        return variant_language
    return str(fallback)


def speaks(element: Mapping[str, Any] | None, key: str, lang: str, primary: str | None) -> bool:
    """`element[key]` is written in `lang` or carries a translation into it (an absent text needs none)."""
    if not element or element.get(key) in (None, ""):
        return True
    if _base(lang) == _base(primary or "en"):
        return True
    for ext in (element.get(f"_{key}") or {}).get("extension", []) or []:
        if ext.get("url") != TRANSLATION:
            continue
        parts = {e.get("url"): e for e in ext.get("extension", []) or []}
        if _base((parts.get("lang") or {}).get("valueCode")) == _base(lang) and (parts.get("content") or {}).get(
                "valueString"):
            return True
    return False


def questionnaire_speaks(questionnaire: Mapping[str, Any], lang: str) -> bool:
    """Every text a form shows (title, items, prefixes, options) is in `lang` or translated into it."""
    primary = questionnaire.get("language")
    if not speaks(questionnaire, "title", lang, primary):
        return False
    stack = list(questionnaire.get("item") or [])
    while stack:
        item = stack.pop()
        stack.extend(item.get("item") or [])
        if not (speaks(item, "text", lang, primary) and speaks(item, "prefix", lang, primary)):
            return False
        for option in item.get("answerOption") or []:
            if not (speaks(option.get("valueCoding"), "display", lang, primary)
                    and speaks(option, "valueString", lang, primary)):
                return False
    return True


def _base(tag: str | None) -> str:
    return (tag or "").split("-", 1)[0].lower()


__all__ = ["choose_language", "page_language", "questionnaire_speaks", "requested_language", "speaks", "texts",
           "translated"]
