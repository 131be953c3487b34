"""Every action title of the PlanDefinitions carries an English translation: a page is shown in the reader's
language only when all its texts have it, so one untranslated title turns the whole pathway page back to the
variant's language."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
PLANS = sorted((ROOT / "plandefinitions").glob("PlanDefinition-*.json"))


def _untranslated(actions, lang: str, out: list[str]) -> list[str]:
    for action in actions or []:
        tags = {next((e.get("valueCode") for e in t.get("extension", []) if e.get("url") == "lang"), None)
                for t in (action.get("_title") or {}).get("extension", []) if t.get("url") == TRANSLATION}
        if action.get("title") and lang not in tags:
            out.append(f"{action.get('id')}: {action['title']}")
        _untranslated(action.get("action"), lang, out)
    return out


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_every_action_title_has_an_english_translation(path):
    plan = json.loads(path.read_text(encoding="utf-8"))
    if plan.get("language", "en") == "en":
        return
    assert _untranslated(plan.get("action"), "en", []) == []
