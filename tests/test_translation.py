"""Artifact texts in the reader's language: the CDS cards and the web pages use one lookup, with language fallback."""
from __future__ import annotations

import pytest

from app.cds.cards import text as card_text
from app.translation import TRANSLATION, translated
from app.web.i18n import translated as page_text


def _translation(lang: str, content: str) -> dict:
    return {"url": TRANSLATION, "extension": [{"url": "lang", "valueCode": lang},
                                              {"url": "content", "valueString": content}]}


ACTION = {"title": "Ländryggssmärta", "_title": {"extension": [_translation("da", "Lænderygsmerter"),
                                                                _translation("en-GB", "Low back pain")]}}


@pytest.mark.parametrize("lang,expected", [
    ("sv", "Ländryggssmärta"),  # the primary language
    ("sv-SE", "Ländryggssmärta"),
    ("da", "Lænderygsmerter"),
    ("da-DK", "Lænderygsmerter"),  # a regional tag finds the language's translation
    ("en", "Low back pain"),  # and a language finds a regional translation
    ("en-GB", "Low back pain"),
    ("fi", "Ländryggssmärta"),  # no translation: the primary text
])
def test_cards_and_pages_find_the_same_text(lang, expected):
    assert translated(ACTION, "title", lang, "sv") == expected
    assert card_text(ACTION, "title", lang, "sv") == expected
    assert page_text(ACTION, "title", lang, "sv") == expected


def test_an_exact_tag_wins_over_the_language_fallback():
    element = {"title": "x", "_title": {"extension": [_translation("da", "generic"), _translation("da-DK", "dansk")]}}
    assert translated(element, "title", "da-DK", "sv") == "dansk"
    assert translated(element, "title", "da", "sv") == "generic"


def test_a_missing_text_stays_missing_on_cards():
    assert card_text({}, "title", "da", "sv") is None
    assert translated(None, "title", "da", "sv") is None
