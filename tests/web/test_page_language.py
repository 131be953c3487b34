"""One language per page: the clinician's pages speak the reader's language when the variant's artifacts carry it
for every text shown, else the variant's; the chrome never mixes in another language. Patient pages never show
rule ids or the word "digest"."""
from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import pytest

from .conftest import PATIENT_QUESTIONNAIRES, make_link, seed_patient

CONTENT = Path(__file__).resolve().parents[2] / "app" / "web" / "content"
NAMES = {"lang_name", "language_names"}  # language names are shown in their own language (the language menu)


def _strings(value, key=""):
    if key in NAMES:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, str):
        yield value


def chrome(lang: str) -> set[str]:
    """The fixed phrases of the pages in one language: each text of two words or more; of a text with placeholders,
    the parts between them of three words or more (shorter ones, like a single word, occur in any text)."""
    out = set()
    for kind in ("ui", "clinician"):
        for text in _strings(json.loads((CONTENT / f"{kind}.{lang}.json").read_text("utf-8"))):
            parts = [p.strip() for p in re.split(r"\{[^}]*\}", text)]
            least = 2 if len(parts) == 1 else 3
            out.update(p for p in parts if len(p.split()) >= least and len(p) >= 8)
    return out


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"<option\b[^>]*\blang=\"[a-z]+\"[^>]*>.*?</option>", " ", page, flags=re.S)  # labelled names
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", page))


def foreign_chrome(page: str, lang: str) -> list[str]:
    """Phrases of another language's chrome that are not also this language's, found in the page's text."""
    text = " ".join(visible_text(page).split())
    own = chrome(lang)
    return sorted(p for other in {"sv", "da", "en"} - {lang} for p in chrome(other) - own
                  if re.search(r"(?<!\w)" + re.escape(" ".join(p.split())) + r"(?!\w)", text))


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _lang_of(page: str) -> str:
    return re.search(r'<html lang="([a-z]+)"', page).group(1)


@pytest.mark.parametrize(("variant", "asked", "accept", "speaks"), [
    ("se", None, None, "sv"),           # nobody asked: the variant's language
    ("se", "da", None, "sv"),           # the Swedish artifacts do not carry Danish for every text
    ("se", None, "da-DK,da;q=0.9", "sv"),
    ("skane", "en", None, "en"),        # they do carry English
    ("midtjylland", None, None, "da"),
    ("midtjylland", "da", None, "da"),
    ("midtjylland", None, "en-GB", "en"),
])
def test_the_pathway_page_speaks_one_language(web, tokens, patient_id, variant, asked, accept, speaks):
    query = f"?variant={variant}" + (f"&lang={asked}" if asked else "")
    headers = _bearer(tokens["clinician"]) | ({"Accept-Language": accept} if accept else {})
    r = web.get(f"/patients/{patient_id}/pathway{query}", headers=headers)
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and _lang_of(page) == speaks
    assert foreign_chrome(page, speaks) == []


def test_a_danish_page_shows_danish_rule_texts_and_a_swedish_one_swedish(web_app, web, tokens):
    pid = seed_patient(web_app, tokens["writer"], birth="1950-01-01")  # onset after 55: RF1 fires
    danish = web.get(f"/patients/{pid}/pathway?variant=midtjylland", headers=_bearer(tokens["clinician"]))
    flags = re.search(r'id="flags">(.*?)</section>', danish.get_data(as_text=True), re.S).group(1)
    assert "Rødt flag: debut før 18 eller efter 55 års alderen" in flags
    swedish = web.get(f"/patients/{pid}/pathway?variant=se&lang=da", headers=_bearer(tokens["clinician"]))
    page = swedish.get_data(as_text=True)
    assert _lang_of(page) == "sv"
    assert "Röd flagga: debut före 18 eller efter 55 års ålder" in page and "Rødt flag" not in page
    english = web.get(f"/patients/{pid}/pathway?variant=se&lang=en", headers=_bearer(tokens["clinician"]))
    page = english.get_data(as_text=True)
    assert "Red flag: onset before 18 or after 55 years" in page and "Röd flagga: debut" not in page


def test_the_refusal_page_speaks_the_readers_language(web, patient_id):
    r = web.get(f"/patients/{patient_id}/pathway?lang=sv")
    page = r.get_data(as_text=True)
    assert r.status_code == 401 and "Sidan kräver inloggning med en åtkomsttoken." in page
    assert foreign_chrome(page, "sv") == [] and "access token is required" not in page


@pytest.mark.parametrize("variant", ["se", "midtjylland"])
def test_the_clinician_form_page_speaks_one_language(web, tokens, patient_id, variant):
    page = web.get(f"/patients/{patient_id}/forms/orthopaedic-referral?variant={variant}",
                   headers=_bearer(tokens["writer"])).get_data(as_text=True)
    lang = {"se": "sv", "midtjylland": "da"}[variant]
    assert _lang_of(page) == lang and foreign_chrome(page, lang) == []


# -- patient pages: no rule ids, no "digest" ------------------------------------------------------------------
RULE_ID = re.compile(r"\b(?:RF|RA|RN|RR|RC|RD|YF|BF|BU|SK|DK|SE|Q|S|T|B|P|A|I|M|R|C)\d{1,2}\b")


def _patient_pages(web_app, patient_id):
    for variant, lang in (("se", "sv"), ("skane", "sv"), ("midtjylland", "da")):
        for shown in (lang, "en"):
            yield f"/info/{variant}?lang={shown}"
            link = make_link(web_app, patient_id, PATIENT_QUESTIONNAIRES, lang=shown, variant=variant)
            yield link
            yield f"{link}/info"
            for qid in PATIENT_QUESTIONNAIRES:
                yield f"{link}/{qid}"
            yield f"{link}/{PATIENT_QUESTIONNAIRES[0]}/done"


def test_patient_pages_never_show_rule_ids_or_the_digest(web_app, web, patient_id):
    seen = 0
    for path in _patient_pages(web_app, patient_id):
        r = web.get(path)
        assert r.status_code == 200, path
        text = visible_text(r.get_data(as_text=True))
        assert "digest" not in text.lower(), path
        found = RULE_ID.findall(text)
        assert not found, f"{path}: {found}"
        seen += 1
    assert seen == 3 * 2 * (3 + len(PATIENT_QUESTIONNAIRES) + 1)


def test_quotations_in_another_language_are_marked_once(web_app, web, tokens):
    pid = seed_patient(web_app, tokens["writer"], birth="1950-01-01")  # RF1: the next step quotes Skåne's sentences
    page = web.get(f"/patients/{pid}/pathway?variant=midtjylland", headers=_bearer(tokens["clinician"])
                   ).get_data(as_text=True)
    assert page.count("Citaterne gengives på originalsproget (svensk).") == 1
    assert '<p lang="sv">Debut före 18 eller efter 55 års ålder</p>' in page.replace("1. ", "")
    swedish = web.get(f"/patients/{pid}/pathway?variant=se", headers=_bearer(tokens["clinician"])).get_data(
        as_text=True)
    assert "originalspråket" not in swedish
