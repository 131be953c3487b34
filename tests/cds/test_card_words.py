"""A card's own words come from the CodeSystem lbp-card-text, and the language of a quotation from the citation
(extension citation-language), never from Python constants or a source's name."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.cds.cards import CARD_TEXT, CardContext, to_card
from app.translation import CITATION_LANGUAGE

ROOT = Path(__file__).resolve().parents[2]
WORDS = json.loads((ROOT / "valuesets" / "CodeSystem-lbp-card-text.json").read_text("utf-8"))


def _display(system, code, language, codesystem=WORDS):
    assert system == CARD_TEXT
    concept = next((c for c in codesystem["concept"] if c["code"] == code), None)
    if concept is None:
        return None
    return next((d["value"] for d in concept.get("designation", []) if d["language"] == language), concept["display"])


def _ctx(language, plan_language, codesystem=WORDS):
    return CardContext(
        language=language, source_label="Guideline", patient_id="p1", rule_display={}, rule_link=lambda r: f"#{r}",
        questionnaire_link=lambda c: "https://x.test/q/token", pathway_link="https://x.test/patients/p1/pathway",
        smart_link=None, contained={}, plan_language={"a1": plan_language},
        override_display=lambda system, code: _display(system, code, language, codesystem),
        questionnaire_title=lambda c: "Formulär")


def _action(citation_language=None, display="Region Skåne vårdprogram ländryggssmärta"):
    doc = {"type": "citation", "label": "X1", "display": display, "citation": "En mening ur källan."}
    if citation_language:
        doc["_citation"] = {"extension": [{"url": CITATION_LANGUAGE, "valueCode": citation_language}]}
    return {"id": "a1", "title": "Titel", "priority": "routine", "documentation": [doc]}


def test_the_quotation_language_is_read_from_the_citation_not_from_the_source_name():
    # the source's name says Skåne; the citation says Danish: the note follows the citation
    card = to_card(_action("da"), _ctx("sv", "sv"))
    assert "*Citaten återges på originalspråket (danska).*" in card["detail"]


def test_an_untagged_citation_is_in_its_resource_language():
    assert "originalspr" not in to_card(_action(), _ctx("sv", "sv"))["detail"]
    danish_plan = to_card(_action(display="Region Midtjylland"), _ctx("sv", "da"))["detail"]
    assert "*Citaten återges på originalspråket (danska).*" in danish_plan


def test_a_danish_card_quoting_a_swedish_rule_says_so_in_danish():
    detail = to_card(_action("sv"), _ctx("da", "sv"))["detail"]
    assert "*Citaterne gengives på originalsproget (svensk).*" in detail
    assert "svenske kilder" in detail
    assert "Kortet bygger på en regel från" not in detail  # never the Swedish sentence on a Danish card


def test_the_words_change_with_the_codesystem():
    changed = json.loads(json.dumps(WORDS))
    quoted = next(c for c in changed["concept"] if c["code"] == "quoted-in")
    quoted["designation"][0]["value"] = "Citat på {language}."
    link = next(c for c in changed["concept"] if c["code"] == "link-pathway")
    link["designation"][0]["value"] = "Förloppet"
    card = to_card(_action("da"), _ctx("sv", "sv", changed))
    assert "*Citat på danska.*" in card["detail"]
    assert {"label": "Förloppet", "url": "https://x.test/patients/p1/pathway", "type": "absolute"} in card["links"]


@pytest.mark.parametrize("module", sorted((ROOT / "app" / "cds").glob("*.py")), ids=lambda p: p.name)
def test_no_swedish_or_danish_wording_in_the_cds_python(module):
    assert not re.search(r"[åäöæøÅÄÖÆØ]", module.read_text("utf-8")), module.name


def test_every_pathway_citation_names_its_language():
    for path in sorted((ROOT / "plandefinitions").glob("PlanDefinition-*.json")):
        plan = json.loads(path.read_text("utf-8"))
        docs = list(plan.get("relatedArtifact", []))
        stack = list(plan.get("action", []))
        while stack:
            action = stack.pop()
            docs.extend(action.get("documentation", []) or [])
            stack.extend(action.get("action", []) or [])
        for doc in docs:
            if doc.get("type") == "citation" and doc.get("citation"):
                tags = [e["valueCode"] for e in (doc.get("_citation") or {}).get("extension", [])
                        if e["url"] == CITATION_LANGUAGE]
                assert tags and tags[0] in ("sv", "da", "en"), f"{path.name}: {doc.get('label')} {doc.get('display')}"
