"""CDS Hooks 2.0 response rules as a test helper (https://cds-hooks.hl7.org/2.0/#cds-service-response).

Every test that receives cards or a discovery document passes it through here.
"""
from __future__ import annotations

import uuid
from typing import Any

INDICATORS = {"info", "warning", "critical"}
SELECTION = {"at-most-one", "any"}
ACTION_TYPES = {"create", "update", "delete"}
LINK_TYPES = {"absolute", "smart"}
RULES = "https://lbp-pathway.org/fhir/CodeSystem/lbp-rules"


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _coding(c: Any, where: str) -> None:
    assert isinstance(c, dict) and isinstance(c.get("code"), str), f"{where}: a Coding with code"
    assert "system" in c, f"{where}: Coding needs a system"


def validate_card(card: dict[str, Any], where: str = "card") -> None:
    assert isinstance(card, dict), where
    assert _is_uuid(card.get("uuid")), f"{where}.uuid must be a UUID"
    summary = card.get("summary")
    assert isinstance(summary, str) and summary.strip(), f"{where}.summary required"
    assert len(summary) <= 140, f"{where}.summary is {len(summary)} > 140 characters"
    assert card.get("indicator") in INDICATORS, f"{where}.indicator {card.get('indicator')!r}"
    if "detail" in card:
        assert isinstance(card["detail"], str), f"{where}.detail must be a string"
    source = card.get("source")
    assert isinstance(source, dict) and isinstance(source.get("label"), str) and source["label"], \
        f"{where}.source.label required"
    if "url" in source:
        assert str(source["url"]).startswith(("http://", "https://")), f"{where}.source.url absolute"
    if "topic" in source:
        _coding(source["topic"], f"{where}.source.topic")
    suggestions = card.get("suggestions") or []
    if suggestions:
        assert card.get("selectionBehavior") in SELECTION, \
            f"{where}: selectionBehavior required with suggestions"
    elif "selectionBehavior" in card:
        assert card["selectionBehavior"] in SELECTION
    seen = set()
    for i, s in enumerate(suggestions):
        w = f"{where}.suggestions[{i}]"
        assert isinstance(s.get("label"), str) and s["label"], f"{w}.label required"
        assert _is_uuid(s.get("uuid")), f"{w}.uuid should be a UUID (feedback names it)"
        assert s["uuid"] not in seen, f"{w}.uuid repeated"
        seen.add(s["uuid"])
        for j, a in enumerate(s.get("actions") or []):
            aw = f"{w}.actions[{j}]"
            assert a.get("type") in ACTION_TYPES, f"{aw}.type"
            assert isinstance(a.get("description"), str), f"{aw}.description required"
            if a["type"] == "delete":
                assert isinstance(a.get("resourceId"), str) and "/" in a["resourceId"], \
                    f"{aw}: delete needs resourceId"
            if a["type"] == "create":
                assert isinstance(a.get("resource"), dict) and a["resource"].get("resourceType"), \
                    f"{aw}: create needs a resource"
    for i, r in enumerate(card.get("overrideReasons") or []):
        _coding(r, f"{where}.overrideReasons[{i}]")
    for i, link in enumerate(card.get("links") or []):
        w = f"{where}.links[{i}]"
        assert isinstance(link.get("label"), str) and link["label"], f"{w}.label"
        assert str(link.get("url", "")).startswith(("http://", "https://")), f"{w}.url absolute"
        assert link.get("type") in LINK_TYPES, f"{w}.type"
        if "appContext" in link:
            assert link["type"] == "smart", f"{w}: appContext only on smart links"
            assert isinstance(link["appContext"], str), f"{w}.appContext is a string"
    extension = card.get("extension")
    if extension is not None:
        assert isinstance(extension, dict), f"{where}.extension is an object"
        for key in extension:
            assert "." in key, f"{where}.extension key {key} should be namespaced"


def validate_response(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert isinstance(body, dict) and isinstance(body.get("cards"), list), "response needs cards"
    uuids = set()
    for i, card in enumerate(body["cards"]):
        validate_card(card, f"cards[{i}]")
        assert card["uuid"] not in uuids, "card uuids are unique"
        uuids.add(card["uuid"])
    for i, action in enumerate(body.get("systemActions") or []):
        assert action.get("type") in ACTION_TYPES, f"systemActions[{i}]"
    return body["cards"]


def validate_discovery(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert isinstance(body.get("services"), list)
    ids = set()
    for s in body["services"]:
        for key in ("hook", "id", "description"):
            assert isinstance(s.get(key), str) and s[key], f"service needs {key}"
        assert s["id"] not in ids
        ids.add(s["id"])
        for key, template in (s.get("prefetch") or {}).items():
            assert isinstance(template, str) and "{{context.patientId}}" in template, key
    return body["services"]


def rules_of(cards: list[dict[str, Any]]) -> dict[str, str]:
    """topic rule id -> indicator (the most severe when several cards share a topic)."""
    rank = {"critical": 0, "warning": 1, "info": 2}
    out: dict[str, str] = {}
    for c in cards:
        code = ((c.get("source") or {}).get("topic") or {}).get("code")
        if code and (code not in out or rank[c["indicator"]] < rank[out[code]]):
            out[code] = c["indicator"]
    return out


def all_rules(card: dict[str, Any]) -> list[str]:
    topic = ((card.get("source") or {}).get("topic") or {}).get("code")
    more = [c["code"] for c in (card.get("extension") or {}).get("org.lbp-pathway.rules", [])]
    return [topic, *more] if topic else more
