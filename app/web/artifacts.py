"""What the web pages read from the loaded artifacts rather than from Python: series, scales, fields, calendars.

- Plotted series: Questionnaire items tagged `clinician-plot` (valueString: the label); the series is the
  Observations coded like the item, its scale runs to the item's `maxValue`.
- Fields of the clinician page: case features tagged `clinician-field` (on the feature's valueExpression,
  valueCode: the field), so a region's Library may name its features as it likes.
- Patient questionnaires: the Questionnaires of `collect-*` ActivityDefinitions whose participant is the patient.
- Calendars: an action's `calendar-duration` (valueDuration), e.g. T5's eight weeks in the primary sector.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.conventions import BASE

PLOT = f"{BASE}/StructureDefinition/clinician-plot"
FIELD = f"{BASE}/StructureDefinition/clinician-field"
CALENDAR = f"{BASE}/StructureDefinition/calendar-duration"
FEATURE = f"{BASE}/StructureDefinition/case-feature"
COLLECT_WITH = "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-collectWith"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
_DAYS = {"d": 1, "wk": 7}


@dataclass(frozen=True)
class PlottedSeries:
    label: str
    system: str
    code: str
    maximum: float


def _extensions(element: Mapping[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in element.get("extension", []) or [] if e.get("url") == url]


def _items(items: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for item in items or []:
        yield item
        yield from _items(item.get("item"))


def plotted_series(kb: Any) -> list[PlottedSeries]:
    """The series the clinician's chart plots, in the order of their Questionnaires' canonicals."""
    out = []
    for questionnaire in sorted(kb.resources("Questionnaire"), key=lambda q: q.get("url", "")):
        for item in _items(questionnaire.get("item")):
            tags = _extensions(item, PLOT)
            maxima = _extensions(item, MAX_VALUE)
            codes = item.get("code") or []
            if not tags or not codes or not maxima:
                continue
            maximum = next((v for k, v in maxima[0].items() if k.startswith("value")), None)
            if isinstance(maximum, (int, float)) and codes[0].get("system") and codes[0].get("code"):
                out.append(PlottedSeries(str(tags[0].get("valueString") or codes[0]["code"]), codes[0]["system"],
                                         codes[0]["code"], float(maximum)))
    return out


def clinician_fields(library: Mapping[str, Any] | None) -> dict[str, str]:
    """Field of the clinician page -> the name of the case feature that fills it."""
    out: dict[str, str] = {}
    for feature in _extensions(library or {}, FEATURE):
        expression = feature.get("valueExpression") or {}
        for tag in _extensions(expression, FIELD):
            if tag.get("valueCode") and expression.get("name"):
                out[tag["valueCode"]] = expression["name"]
    return out


def patient_questionnaires(kb: Any) -> list[str]:
    """Ids of the Questionnaires the patient answers (the others are clinicians' forms)."""
    out: list[str] = []
    for definition in sorted(kb.resources("ActivityDefinition"), key=lambda a: a.get("id", "")):
        if not any(p.get("type") == "patient" for p in definition.get("participant", []) or []):
            continue
        for collect in _extensions(definition, COLLECT_WITH):
            qid = str(collect.get("valueCanonical", "")).split("|", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            if qid and qid not in out:
                out.append(qid)
    return out


def calendar_weeks(kb: Any, pathway: str) -> int | None:
    """Weeks of the calendar an action of the pathway (or of a PlanDefinition it includes) asks for, if any."""
    seen: set[str] = set()
    stack = [kb.resolve(pathway, "PlanDefinition")]
    while stack:
        plan = stack.pop()
        if plan is None or plan.get("url") in seen:
            continue
        seen.add(plan.get("url"))
        actions = list(plan.get("action", []) or [])
        while actions:
            action = actions.pop()
            for tag in _extensions(action, CALENDAR):
                duration = tag.get("valueDuration") or {}
                days = _DAYS.get(duration.get("code", ""))
                if days is not None and isinstance(duration.get("value"), (int, float)):
                    return int(duration["value"] * days // 7)
            if action.get("definitionCanonical"):
                stack.append(kb.resolve(action["definitionCanonical"], "PlanDefinition"))
            actions.extend(action.get("action", []) or [])
    return None
