"""The Midtjylland information page (P3): risk of chronic pain, the course across the sectors and training, from
the Danish source; a sentence that is the project's own says so."""
from __future__ import annotations

import html as html_lib
import re


def _paragraphs(page: str) -> list[str]:
    return [html_lib.unescape(re.sub(r"<[^>]+>", "", p)).strip() for p in re.findall(r"<p>(.*?)</p>", page, re.S)]


def test_danish_page_tells_the_risk_of_chronic_pain_the_cross_sector_course_and_training(web):
    page = web.get("/info/midtjylland?lang=da").get_data(as_text=True)
    for heading in ("Risiko for kroniske lænderygsmerter", "Forløbet på tværs af sektorer", "Træning"):
        assert f">{heading}</h2>" in page, heading
    text = "\n".join(_paragraphs(page))
    assert "særlig risiko for at udvikle kroniske lænderygsmerter" in text
    assert "henvise dig til kommunen" in text and "op til 12 uger" in text
    assert "råd og vejledning om selvtræning" in text


def test_only_the_projects_own_sentence_is_marked_as_such(web):
    paragraphs = _paragraphs(web.get("/info/midtjylland?lang=da").get_data(as_text=True))
    marked = [p for p in paragraphs if "projektets egen formulering" in p]
    assert len(marked) == 1 and marked[0].startswith("Træning og at holde sig i gang"), marked
    english = _paragraphs(web.get("/info/midtjylland?lang=en").get_data(as_text=True))
    assert any("the project's own wording" in p for p in english)


def test_swedish_pages_do_not_carry_the_danish_sections(web):
    for variant in ("se", "skane"):
        page = web.get(f"/info/{variant}?lang=sv").get_data(as_text=True)
        assert "Förloppet mellan vårdens sektorer" not in page and "projektets egen formulering" not in page
