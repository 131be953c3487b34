"""Texts of FHIR artifacts in the reader's language: the translation extension, with language fallback.

http://hl7.org/fhir/R4/extension-translation.html — `element._key.extension[translation]` carries
`lang` and `content`. A text is looked up by language tag and, failing that, by its primary language
subtag, either way round: a reader asking for `da-DK` gets a `da` translation, one asking for `da` a
`da-DK` one. The one implementation for the CDS cards and the web pages.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
# the language a RelatedArtifact.citation is quoted in (docs/artifact-conventions.md)
CITATION_LANGUAGE = "https://lbp-pathway.org/fhir/StructureDefinition/citation-language"


def _base(tag: str | None) -> str:
    return (tag or "").split("-", 1)[0].lower()


def translated(element: Mapping[str, Any] | None, key: str, lang: str, primary: str | None) -> str | None:
    """`element[key]` in `lang`: the primary text when written in `lang`, else its translation, else the primary.

    `primary` is the language the artifact is written in (its `language`); an artifact that does not say
    is taken to be written in English.
    """
    if not element:
        return None
    value = element.get(key)
    if _base(lang) == _base(primary or "en"):
        return value
    exact = fallback = None
    for ext in (element.get(f"_{key}") or {}).get("extension", []) or []:
        if ext.get("url") != TRANSLATION:
            continue
        parts = {e.get("url"): e for e in ext.get("extension", []) or []}
        code = (parts.get("lang") or {}).get("valueCode") or ""
        content = (parts.get("content") or {}).get("valueString")
        if not content:
            continue
        if code.lower() == lang.lower():
            exact = exact or content
        elif _base(code) == _base(lang):
            fallback = fallback or content
    return exact or fallback or value


def citation_language(doc: Mapping[str, Any], primary: str | None) -> str | None:
    """The language a citation is quoted in: its citation-language extension, else its resource's language."""
    tagged = next((e.get("valueCode") for e in (doc.get("_citation") or {}).get("extension", []) or []
                   if e.get("url") == CITATION_LANGUAGE and e.get("valueCode")), None)
    return tagged or primary
