"""The applied pathway (a RequestGroup) as CDS Hooks cards (https://cds-hooks.hl7.org/2.0/#cds-service-response).

A card is a top-level action of an eca-rule PlanDefinition (in the RequestGroup: an action with a
`priority`, or a leaf below the pathway's grouping actions). Its child actions are the suggestions:
a `create` child becomes a create action with the request the engine made from the ActivityDefinition;
a `remove` child (the engine filled `resource` with the draft it names) becomes a delete with
`resourceId`; a child with sub-actions (selectionBehavior `all`, e.g. remove then create) becomes one
suggestion with every sub-action. Texts come in the variant's language (the translation extension);
the rule ids come from the action's `code` in the rule CodeSystem, in the order the engine left them
(a dynamicValue may put the rule that fired first); the topic is the first.

A rule that could not be evaluated (the action carries the evaluation-outcome extension, see
docs/fail-safe.md) becomes a card like any other — its texts and priority were written by the
engine from the knowledge — and the card, like every card whose evidence is incomplete, says so in
the `org.lbp-pathway.evaluation` extension: `{"status": "not-evaluated" | "incomplete",
"failedRules": [...], "failedFeatures": [...]}`.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.translation import citation_language, translated

log = logging.getLogger("lbp.cds")

RULES = "https://lbp-pathway.org/fhir/CodeSystem/lbp-rules"
CITATION_EN = "https://lbp-pathway.org/fhir/StructureDefinition/citation-en"
# the card's own words (link labels, the note under quotations in another language), in the card's language
CARD_TEXT = "https://lbp-pathway.org/fhir/CodeSystem/lbp-card-text"
OVERRIDE_REASON = "https://lbp-pathway.org/fhir/StructureDefinition/override-reason"
RULES_EXTENSION = "org.lbp-pathway.rules"  # further contributing rule ids (Codings), see docs/cds-hooks.md
STEP_EXTENSION = "org.lbp-pathway.pathway-step"
# an action whose advice is part of another action's decision: one card for both when both apply
SAME_DECISION = "https://lbp-pathway.org/fhir/StructureDefinition/same-decision-as"
# the rule ids that fired, set by a dynamicValue; the card names them in its language (lbp-rules designations)
FIRED_RULES = "https://lbp-pathway.org/fhir/StructureDefinition/fired-rules"
EVALUATION_EXTENSION = "org.lbp-pathway.evaluation"  # a card (or response) whose evaluation is incomplete
EVALUATION_OUTCOME = "https://lbp-pathway.org/fhir/StructureDefinition/evaluation-outcome"
FAILED_FEATURE = "https://lbp-pathway.org/fhir/StructureDefinition/failed-feature"
SDC_QUESTIONNAIRE = "questionnaire"
INDICATOR = {"routine": "info", "urgent": "warning", "asap": "critical", "stat": "critical"}
SELECTION = {"at-most-one": "at-most-one", "exactly-one": "at-most-one"}  # everything else -> "any"
SUMMARY_MAX = 140


@dataclass
class CardContext:
    """What the conversion needs besides the RequestGroup."""

    language: str
    source_label: str
    patient_id: str
    rule_display: Mapping[str, str]  # rule id -> display in the variant's language
    rule_link: Any  # rule id -> absolute URL of its catalogue entry
    questionnaire_link: Any  # questionnaire canonical -> absolute URL (or None)
    pathway_link: str | None
    smart_link: dict[str, Any] | None
    contained: Mapping[str, dict[str, Any]]  # '#id' -> resource made by $apply
    plan_language: Mapping[str, str] = field(default_factory=dict)  # card action id -> artifact language
    # questionnaire canonical -> the items the record cannot fill (None: the questionnaire pre-fills nothing)
    missing_fields: Any = None
    # questionnaire canonical -> its title in the card's language (link labels name the form, not its id)
    questionnaire_title: Any = None
    # (system, code) of a concept -> its display in the card's language: override reasons, and the card's own
    # words (CodeSystem lbp-card-text)
    override_display: Any = None
    # questionnaire canonical -> True when a clinician fills it (referral template, rehabilitation plan …)
    clinician_form: Any = None
    clinician_link: Any = None  # questionnaire canonical -> URL of the clinician context for it (or None)


def text(element: Mapping[str, Any], key: str, language: str, primary: str | None) -> str | None:
    return translated(element, key, language, primary) if element.get(key) is not None else None


def rule_codes(action: Mapping[str, Any]) -> list[str]:
    """The rule ids on an action, in order, each once."""
    return list(dict.fromkeys(c["code"] for cc in action.get("code", []) or [] for c in cc.get("coding", []) or []
                              if c.get("system") == RULES and c.get("code")))


def other_codes(action: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for cc in action.get("code", []) or [] for c in cc.get("coding", []) or []
            if c.get("system") != RULES and c.get("code")]


def card_actions(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The RequestGroup actions that are cards: below grouping actions, those with a priority or no children."""
    out: list[dict[str, Any]] = []
    for action in actions:
        if "priority" in action or not action.get("action"):
            out.append(action)
        else:
            out.extend(card_actions(action["action"]))
    return out


def evaluation_of(action: Mapping[str, Any]) -> dict[str, Any] | None:
    """The evaluation extension of a card made from `action`, when it or a suggestion of it is incomplete."""
    status: str | None = None
    features: list[str] = []
    rules: list[str] = []
    stack = [action]
    while stack:
        current = stack.pop()
        for ext in current.get("extension", []) or []:
            if ext.get("url") == EVALUATION_OUTCOME and ext.get("valueCode"):
                # the card itself not evaluated, else incomplete (one of its parts was not)
                if current is action:
                    status = ext["valueCode"]
                elif status is None:
                    status = "incomplete"
                rules.extend(r for r in rule_codes(current) if r not in rules)
            elif ext.get("url") == FAILED_FEATURE and ext.get("valueString") not in features:
                features.append(ext["valueString"])
        stack.extend(current.get("action", []) or [])
    if status is None:
        return None
    return {"status": status, "failedRules": rules or rule_codes(action), "failedFeatures": features}


def words(ctx: CardContext, code: str) -> str | None:
    """One of the card's own words (CodeSystem lbp-card-text) in the card's language; None when not loaded."""
    return ctx.override_display(CARD_TEXT, code) if ctx.override_display else None


def _summary(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= SUMMARY_MAX else value[: SUMMARY_MAX - 1].rstrip() + "…"


def _fired(action: Mapping[str, Any], ctx: CardContext) -> str:
    """'Red flags that fired: …' in the card's language, when a dynamicValue named them."""
    fired = next((e.get("valueString") for e in action.get("extension", []) or []
                  if e.get("url") == FIRED_RULES and e.get("valueString")), None)
    if not fired:
        return ""
    # the slot's placeholder (or anything that is not a rule id) names nothing
    names = [ctx.rule_display[r.strip()] for r in fired.split(",") if r.strip() in ctx.rule_display]
    if not names:
        return ""
    label = words(ctx, "fired-by")
    return (f"**{label}** " if label else "") + "; ".join(names)


def _quote_note(action: Mapping[str, Any], ctx: CardContext, primary: str | None) -> str:
    """Quotes keep their original language and say so; a card resting on a rule from sources in another language
    says that too (concept rests-on-rule-in-<language>, where the knowledge has words for it)."""
    languages = {lang for d in action.get("documentation", []) or []
                 if d.get("type") in ("citation", "documentation") and d.get("citation")
                 and (lang := citation_language(d, primary)) is not None}
    foreign = sorted(lang for lang in languages if lang.split("-")[0] != ctx.language)
    notes = []
    for lang in foreign:
        note = words(ctx, "quoted-in")
        if note:
            notes.append(note.replace("{language}", words(ctx, f"language-{lang}") or lang))
    for lang in foreign:
        rests = words(ctx, f"rests-on-rule-in-{lang}")
        if rests:
            notes.append(rests)
    if not notes:
        return ""
    return "\n\n" + "\n\n".join(f"*{n}*" for n in notes)


def _detail(action: Mapping[str, Any], ctx: CardContext, primary: str | None) -> str:
    detail = text(action, "description", ctx.language, primary) or ""
    fired = _fired(action, ctx)
    if fired:
        detail = f"{fired}\n\n{detail}"
    for doc in action.get("documentation", []) or []:
        if doc.get("type") not in ("citation", "documentation"):
            continue
        citation = doc.get("citation")
        if not citation:
            continue
        if ctx.language == "en":
            citation = next((e.get("valueString") for e in (doc.get("_citation") or {}).get("extension", []) or []
                             if e.get("url") == CITATION_EN), citation)
        if citation.strip()[:60] in detail:
            continue
        quote = "\n>\n".join("> " + line for line in citation.splitlines() if line.strip())
        detail += f"\n\n{quote}\n>\n> — {doc.get('display', '')}"
    if ">" in detail:
        detail += _quote_note(action, ctx, primary)
    return detail.strip()


def _local_references(resource: Any, ctx: CardContext) -> list[dict[str, Any]]:
    """The resources made by $apply that `resource` references as '#id' (e.g. a team conference's CareTeam)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            reference = node.get("reference")
            if isinstance(reference, str) and reference.startswith("#") and reference in ctx.contained:
                target = ctx.contained[reference]
                if target not in found:
                    found.append(target)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(resource)
    return found


def _leaf_actions(child: Mapping[str, Any], ctx: CardContext, primary: str | None) -> list[dict[str, Any]]:
    """The CDS actions of one suggestion: this child's own request or target, then its sub-actions'."""
    out: list[dict[str, Any]] = []
    kind = next((c.get("code") for c in ((child.get("type") or {}).get("coding") or []) if c.get("code")), None)
    reference = (child.get("resource") or {}).get("reference")
    description = text(child, "title", ctx.language, primary) or text(child, "description", ctx.language, primary)
    if reference:
        if reference.startswith("#"):
            resource = ctx.contained.get(reference)
            if resource is not None:
                created = {k: v for k, v in resource.items() if k != "id"}
                carried = _local_references(created, ctx)
                if carried:
                    # the card's resource stands alone: it takes the contained resources it references along
                    created["contained"] = carried
                if created.get("intent") == "option":
                    # "option" only means something inside a RequestGroup; accepted, it is a proposal
                    created["intent"] = "proposal"
                out.append({"type": "create", "description": description or "", "resource": created})
        elif kind == "remove":
            out.append({"type": "delete", "description": description or "", "resourceId": reference})
        elif kind == "update":
            out.append({"type": "update", "description": description or "", "resourceId": reference})
    for sub in child.get("action", []) or []:
        out.extend(_leaf_actions(sub, ctx, primary))
    return out


def _questionnaires(actions: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for a in actions:
        resource = a.get("resource") or {}
        if resource.get("resourceType") != "Task":
            continue
        for i in resource.get("input", []) or []:
            if any(c.get("code") == SDC_QUESTIONNAIRE for c in (i.get("type") or {}).get("coding", []) or []):
                if i.get("valueCanonical") and i["valueCanonical"] not in found:
                    found.append(i["valueCanonical"])
    return found


def to_card(action: Mapping[str, Any], ctx: CardContext) -> dict[str, Any] | None:
    primary = ctx.plan_language.get(action.get("id", ""))
    rules = rule_codes(action)
    title = text(action, "title", ctx.language, primary) or text(action, "description", ctx.language, primary)
    if not title:
        return None
    indicator = INDICATOR.get(action.get("priority", "routine"), "info")
    source: dict[str, Any] = {"label": ctx.source_label}
    if rules:
        source["url"] = ctx.rule_link(rules[0])
        topic = {"system": RULES, "code": rules[0]}
        if rules[0] in ctx.rule_display:
            topic["display"] = ctx.rule_display[rules[0]]
        source["topic"] = topic
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(title),
        "detail": _detail(action, ctx, primary),
        "indicator": indicator,
        "source": source,
    }
    suggestions = []
    offered_actions: list[dict[str, Any]] = []
    for child in action.get("action", []) or []:
        actions = _leaf_actions(child, ctx, primary)
        if not actions:
            continue
        label = text(child, "title", ctx.language, primary) or actions[0].get("description") or card["summary"]
        suggestions.append({"label": _summary(label), "uuid": str(uuid.uuid4()), "actions": actions})
        offered_actions.extend(actions)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = SELECTION.get(action.get("selectionBehavior", ""), "any")
    reasons = [e["valueCoding"] for e in action.get("extension", []) or []
               if e.get("url") == OVERRIDE_REASON and isinstance(e.get("valueCoding"), Mapping)]
    if reasons:
        card["overrideReasons"] = []
        for r in reasons:
            reason = {k: v for k, v in r.items() if k in ("system", "code", "display")}
            display = ctx.override_display(r.get("system"), r.get("code")) if ctx.override_display else None
            if display:
                reason["display"] = display
            card["overrideReasons"].append(reason)
    links: list[dict[str, Any]] = []
    for canonical in _questionnaires(offered_actions):
        missing = ctx.missing_fields(canonical) if ctx.missing_fields else None
        if missing:
            label = words(ctx, "missing-fields")
            card["detail"] += ("\n\n" + (f"**{label}**\n" if label else "")
                               + "\n".join(f"- {m}" for m in missing))
        name = (ctx.questionnaire_title(canonical) if ctx.questionnaire_title else None) \
            or canonical.rsplit("/", 1)[-1].split("|")[0]
        if ctx.clinician_form and ctx.clinician_form(canonical):
            # the clinician's own form (referral template …): its fill-in page, named by the form's title
            url = ctx.clinician_link(canonical) if ctx.clinician_link else None
            label = name
        else:
            url = ctx.questionnaire_link(canonical)
            prefix = words(ctx, "link-patient-questionnaire")
            label = f"{prefix}: {name}" if prefix else name
        if url:
            links.append({"label": label, "url": url, "type": "absolute"})
    if ctx.pathway_link:
        links.append({"label": words(ctx, "link-pathway") or ctx.source_label, "url": ctx.pathway_link,
                      "type": "absolute"})
    if ctx.smart_link:
        links.append(dict(ctx.smart_link))
    if links:
        card["links"] = links
    extension: dict[str, Any] = {}
    if len(rules) > 1:
        extension[RULES_EXTENSION] = [
            {"system": RULES, "code": r, **({"display": ctx.rule_display[r]} if r in ctx.rule_display else {})}
            for r in rules[1:]
        ]
    steps = other_codes(action)
    if steps:
        extension[STEP_EXTENSION] = steps
    evaluation = evaluation_of(action)
    if evaluation is not None:
        extension[EVALUATION_EXTENSION] = evaluation
    if extension:
        card["extension"] = extension
    return card


def missing_items(questionnaire: Mapping[str, Any], response: Mapping[str, Any], language: str) -> list[str]:
    """Texts of the answerable items a pre-filled response leaves empty (required ones, if any are marked)."""
    answered: set[str] = set()
    stack = list(response.get("item") or [])
    while stack:
        item = stack.pop()
        if item.get("answer"):
            answered.add(item.get("linkId", ""))
        stack.extend(item.get("item") or [])
        for answer in item.get("answer") or []:
            stack.extend(answer.get("item") or [])
    items: list[Mapping[str, Any]] = []
    stack = list(reversed(questionnaire.get("item") or []))
    while stack:
        item = stack.pop()
        if item.get("type") not in ("group", "display") and not item.get("readOnly"):
            items.append(item)
        stack.extend(reversed(item.get("item") or []))
    if any(i.get("required") for i in items):
        items = [i for i in items if i.get("required")]
    primary = questionnaire.get("language")
    return [text(i, "text", language, primary) or i.get("linkId", "") for i in items
            if i.get("linkId") not in answered]


def cards_from(request_group: Mapping[str, Any], ctx: CardContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cards, their rule summary rows). One action that cannot be turned into a card is logged and left out."""
    cards: list[dict[str, Any]] = []
    built: dict[str, dict[str, Any]] = {}
    merged: list[tuple[str, Mapping[str, Any], dict[str, Any]]] = []
    actions = card_actions(list(request_group.get("action", []) or []))
    present = {a.get("id") for a in actions}
    for action in actions:
        try:
            card = to_card(action, ctx)
        except Exception as exc:  # one malformed action must not cost the other cards
            log.error("card for action %s could not be built: %s", action.get("id", "?"), type(exc).__name__)
            continue
        if card is None:
            continue
        target = same_decision_as(action)
        if target and target in present and target != action.get("id"):
            merged.append((target, action, card))
            continue
        if action.get("id"):
            built[action["id"]] = card
        cards.append(card)
    for target, joining, card in merged:
        host = built.get(target)
        host_status = ((host or {}).get("extension") or {}).get(EVALUATION_EXTENSION, {}).get("status")
        if host is None or host_status == "not-evaluated":
            # the card it belongs to is not there, or only says it could not be evaluated: it stands alone
            cards.append(card)
        else:
            merge_into(host, card, rule_codes(joining), ctx)
    order = {"critical": 0, "warning": 1, "info": 2}
    cards.sort(key=lambda c: order[c["indicator"]])
    return cards, []


def same_decision_as(action: Mapping[str, Any]) -> str | None:
    """The id of the action whose card carries this one's decision (extension same-decision-as), if any."""
    return next((e.get("valueString") for e in action.get("extension", []) or []
                 if e.get("url") == SAME_DECISION and e.get("valueString")), None)


def _offered(suggestion: Mapping[str, Any]) -> set[str]:
    keys = set()
    for a in suggestion.get("actions", []) or []:
        resource = a.get("resource") or {}
        for canonical in resource.get("instantiatesCanonical", []) or []:
            keys.add(canonical)
        if a.get("resourceId"):
            keys.add(a["resourceId"])
    return keys


def merge_into(host: dict[str, Any], card: Mapping[str, Any], rules: list[str], ctx: CardContext) -> None:
    """One card per decision: another rule's advice on the same decision joins the host card as suggestions
    (those it does not already offer) and as a rule of the card; its indicator raises the host's if higher."""
    offered = set().union(*[_offered(s) for s in host.get("suggestions", [])] or [set()])
    for suggestion in card.get("suggestions", []) or []:
        keys = _offered(suggestion)
        if keys and keys <= offered:
            continue
        host.setdefault("suggestions", []).append(suggestion)
        host.setdefault("selectionBehavior", card.get("selectionBehavior", "any"))
        offered |= keys
    order = {"critical": 0, "warning": 1, "info": 2}
    if order[card["indicator"]] < order[host["indicator"]]:
        host["indicator"] = card["indicator"]
    summary_line = card.get("summary", "")
    if summary_line and summary_line not in host.get("detail", ""):
        host["detail"] = (host.get("detail", "") + f"\n\n**{summary_line}**").strip()
    host_rules = {host.get("source", {}).get("topic", {}).get("code")}
    extension = host.setdefault("extension", {})
    listed = extension.setdefault(RULES_EXTENSION, [])
    host_rules |= {r.get("code") for r in listed}
    for rule in rules:
        if rule not in host_rules:
            listed.append({"system": RULES, "code": rule,
                           **({"display": ctx.rule_display[rule]} if rule in ctx.rule_display else {})})
            host_rules.add(rule)
    if not listed:
        extension.pop(RULES_EXTENSION)
    joined = (card.get("extension") or {}).get(EVALUATION_EXTENSION)
    if joined:  # the merged advice's incomplete evidence stays visible on the card that now carries it
        own = extension.get(EVALUATION_EXTENSION) or {"status": "incomplete", "failedRules": [], "failedFeatures": []}
        extension[EVALUATION_EXTENSION] = {
            "status": own["status"] if own["status"] == "not-evaluated" else "incomplete",
            "failedRules": list(dict.fromkeys([*own["failedRules"], *joined["failedRules"]])),
            "failedFeatures": list(dict.fromkeys([*own["failedFeatures"], *joined["failedFeatures"]])),
        }
    if not extension:
        host.pop("extension")


def response_evaluation(cards: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The response-level evaluation extension: every rule and feature of the cards that are incomplete."""
    marked = [c["extension"][EVALUATION_EXTENSION] for c in cards if EVALUATION_EXTENSION in (c.get("extension") or {})]
    if not marked:
        return None
    rules = list(dict.fromkeys(r for m in marked for r in m["failedRules"]))
    features = list(dict.fromkeys(f for m in marked for f in m["failedFeatures"]))
    return {"status": "incomplete", "failedRules": rules, "failedFeatures": features}
