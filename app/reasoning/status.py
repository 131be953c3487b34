"""Where a patient is on a pathway: step, flags with their evidence, screening risk, NRS, deadlines, what is missing.

Everything is derived from the artifacts, never from rule ids in code:

- Actions of the pathway PlanDefinition (and the eca-rule PlanDefinitions it names) are evaluated
  over the case features; an action is *applicable* when its conditions and its ancestors' hold.
- Step: the codes of the pathway-step CodeSystem on applicable actions; the current step is the
  step of the most urgent applicable action (ties: the later step in the CodeSystem's order).
- Flags: a rule is a flag of a type when the rules CodeSystem gives it a `flag-type` property, or
  else when the flag-type CodeSystem's concept definition names it ("… (RF1–RF9)"). It is found
  when the case feature named after it (a name ending in the rule id, e.g. `redFlagRf4`) is true,
  or when an applicable action is coded with it. Its evidence are the record entries without which
  the feature (or the action's condition) would not hold: the features it depends on are
  re-evaluated with each entry left out.
- Screening risk: the last-declared feature whose value is a code of the risk-category CodeSystem.
- NRS: Observations coded like the pain questionnaire's rating item (first and latest by date).
- Deadlines: actions with `timing[x]` (a Duration) or `relatedAction.offsetDuration`; an applicable
  recommendation counts from today, a pathway-level milestone from the start of the pathway (the
  record's CarePlan instantiating it, else the first questionnaire of the episode, else today).
- Missing: features that an action's condition needs but that are empty (the condition could not
  be decided), and the questionnaires applicable actions offer to collect.
- Not evaluated: actions whose conditions read a case feature that failed at run time, with the
  features behind them (docs/fail-safe.md).

The actions are walked by the one PlanDefinition walk $apply uses too (`app.reasoning.walk`), without
a trigger; the result is a `PathwayStatus` (app.reasoning.status_result), readable as its JSON shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from app.errors import FHIRError, Issue
from app.fhirpath import Scope, evaluate, to_json
from app.fhirpath.values import Node, parse_temporal
from app.reasoning.features import FeatureValues, PatientContext, needed_features, patient_context
from app.reasoning.knowledge import Artifact, KnowledgeBase
from app.reasoning.status_result import (
    Collect,
    CurrentStep,
    Deadline,
    Flag,
    MissingFact,
    NotEvaluated,
    PainRatings,
    PathwayRef,
    PathwayStatus,
    Screening,
    StepAction,
    StepGroup,
)
from app.reasoning.walk import Outcome, PlanWalk, Step

BASE = "https://lbp-pathway.org/fhir"
PRIORITY_RANK = {"stat": 4, "asap": 3, "urgent": 2, "routine": 1}
_DAY_UNITS = {
    "d": 1,
    "day": 1,
    "days": 1,
    "wk": 7,
    "week": 7,
    "weeks": 7,
    "mo": 30,
    "month": 30,
    "months": 30,
    "a": 365,
    "year": 365,
    "years": 365,
}


@dataclass(frozen=True)
class StatusConventions:
    """The project CodeSystems and questionnaire the status reads (docs/artifact-conventions.md)."""

    step_system: str = f"{BASE}/CodeSystem/lbp-pathway-step"
    rules_system: str = f"{BASE}/CodeSystem/lbp-rules"
    flag_type_system: str = f"{BASE}/CodeSystem/lbp-flag-type"
    risk_system: str = f"{BASE}/CodeSystem/lbp-risk-category"
    pain_questionnaire: str = f"{BASE}/Questionnaire/nrs-pain"
    pain_item: str = "nrs"
    max_evidence_candidates: int = 400


CONVENTIONS = StatusConventions()


def _codes(action: Mapping[str, Any], system: str) -> list[str]:
    return [
        c["code"]
        for cc in action.get("code", []) or []
        for c in cc.get("coding", [])
        if c.get("system") == system and c.get("code")
    ]


def _all_codes(action: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    return [
        (c.get("system"), c["code"])
        for cc in action.get("code", []) or []
        for c in cc.get("coding", [])
        if c.get("code")
    ]


def _applicable(step: Step) -> bool:
    return step.verdict.applies


def _condition_variables(step: Step) -> set[str]:
    names: set[str] = set()
    for j, _ in enumerate(step.action.get("condition", []) or []):
        compiled = step.plan.expressions.get(f"{step.path}.condition[{j}].expression.expression")
        if compiled is not None:
            names |= set(compiled.variables)
    return names


def _flatten(steps: list[Step]) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        out.extend(step.flatten())
    return out


def _producing(step: Step) -> Artifact | None:
    """The ActivityDefinition / Questionnaire an applicable action would produce."""
    return step.target if step.target is not None and not step.nests_plan else None


def _concept_order(kb: KnowledgeBase, system: str) -> dict[str, tuple[int, str | None]]:
    codesystem = kb.resolve(system, "CodeSystem") or {}
    order: dict[str, tuple[int, str | None]] = {}

    def walk(concepts: list[dict[str, Any]]) -> None:
        for concept in concepts or []:
            order[concept["code"]] = (len(order), concept.get("display"))
            walk(concept.get("concept", []))

    walk(codesystem.get("concept", []))
    return order


def _expand_ids(text: str) -> list[str]:
    """Rule ids named in a text: 'RF1–RF9' -> RF1 … RF9, 'BF1' -> BF1."""
    ids: list[str] = []
    for m in re.finditer(r"\b([A-Z]{1,3})(\d+)(?:\s*[–-]\s*(?:\1)?(\d+))?\b", text):
        prefix, start, end = m.group(1), int(m.group(2)), m.group(3)
        for n in range(start, (int(end) if end else start) + 1):
            ids.append(f"{prefix}{n}")
    return ids


def flag_types(kb: KnowledgeBase, conventions: StatusConventions = CONVENTIONS) -> dict[str, str]:
    """rule id -> flag type, from the rules CodeSystem (property flag-type) or the flag-type CodeSystem."""
    out: dict[str, str] = {}
    rules = kb.resolve(conventions.rules_system, "CodeSystem") or {}
    for concept in rules.get("concept", []) or []:
        for prop in concept.get("property", []) or []:
            if prop.get("code") == "flag-type":
                value = prop.get("valueCode") or (prop.get("valueCoding") or {}).get("code")
                if value:
                    out[concept["code"]] = value
    if out:
        return out
    types = kb.resolve(conventions.flag_type_system, "CodeSystem") or {}
    known = {c["code"] for c in rules.get("concept", []) or []}
    for concept in types.get("concept", []) or []:
        for rule in _expand_ids(concept.get("definition", "")):
            if not known or rule in known:
                out.setdefault(rule, concept["code"])
    return out


def _feature_for_rule(features: FeatureValues, rule: str) -> str | None:
    wanted = rule.lower()
    candidates = [
        f.name for f in features.library.features if re.sub(r"[^a-z0-9]", "", f.name.lower()).endswith(wanted)
    ]
    if not candidates:
        return None
    return min(candidates, key=len)


def _is_resource_valued(values: list[Any]) -> bool:
    return bool(values) and all(
        type(v) is Node and isinstance(v.data, dict) and "resourceType" in v.data for v in values
    )


def _display_of(resource: Mapping[str, Any]) -> str | None:
    for key in ("code", "medicationCodeableConcept", "valueCodeableConcept"):
        concept = resource.get(key)
        if isinstance(concept, dict):
            if concept.get("text"):
                return str(concept["text"])
            for coding in concept.get("coding", []) or []:
                if coding.get("display"):
                    return str(coding["display"])
                if coding.get("code"):
                    return str(coding["code"])
    if resource.get("resourceType") == "QuestionnaireResponse":
        return resource.get("questionnaire")
    if resource.get("resourceType") == "Patient":
        return resource.get("birthDate")
    return None


def _reference(resource: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": f"{resource.get('resourceType')}/{resource.get('id')}"}
    display = _display_of(resource)
    if display:
        out["display"] = display
    return out


def evidence(
    kb: KnowledgeBase,
    features: FeatureValues,
    names: list[str],
    conventions: StatusConventions = CONVENTIONS,
) -> dict[str, list[dict[str, Any]]]:
    """For each feature: the record entries without which its value (or a value it depends on) changes.

    Resource-valued features (e.g. "all conditions") are not compared, since every entry of their
    type changes them; what counts is a value derived from them.
    """
    library = features.library
    closures: dict[str, list[str]] = {}
    for name in names:
        seen = needed_features(library, (name,))
        closures[name] = [f.name for f in library.features if f.name in seen]
    needed = [f for f in library.features if any(f.name in c for c in closures.values())]
    if not needed:
        return {n: [] for n in names}
    compared = {f.name for f in needed if not _is_resource_valued(features.raw.get(f.name, []))}
    baseline = {f.name: to_json(features.raw.get(f.name, [])) for f in needed}
    texts = " ".join(f.expression.text for f in needed)
    types_read = set(re.findall(r"ofType\((\w+)\)", texts))
    unfiltered = re.search(r"entry\.resource(?!\.ofType\()", texts) is not None
    reads_patient = any(v in ("patient", "subject") for f in needed for v in f.expression.variables)
    context = features.context
    candidates = [
        r
        for r in context.resources
        if r.get("id")
        and (
            unfiltered
            or r.get("resourceType") in types_read
            or (r.get("resourceType") == "Patient" and reads_patient)
        )
    ][: conventions.max_evidence_candidates]
    found: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for candidate in candidates:
        others = [r for r in context.resources if r is not candidate]
        patient = None if candidate is context.patient else context.patient
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in others]}
        reduced = PatientContext(
            resources=others,
            bundle=bundle,
            patient=patient,
            subject=context.subject,
            draft_orders=context.draft_orders,
            selections=context.selections,
            env=context.env,
            extra=context.extra,
        )
        scope = Scope.of(reduced.variables())
        changed: set[str] = set()
        for feature in needed:
            try:
                value = evaluate(feature.expression, reduced.focus, scope, reduced.env)
            except Exception:
                value = []
            scope[feature.name] = value
            if feature.name in compared and to_json(value) != baseline[feature.name]:
                changed.add(feature.name)
        for name in names:
            if changed & set(closures[name]):
                found[name].append(_reference(candidate))
    return found


def _date_of(value: Any) -> date | None:
    if isinstance(value, str):
        parsed = parse_temporal(value[:10], "date")
        if parsed is not None:
            return date(*parsed.parts[:3]) if parsed.precision >= 3 else None
    return None


def _duration_days(duration: Mapping[str, Any]) -> int | None:
    unit = duration.get("code") or duration.get("unit")
    if unit not in _DAY_UNITS or duration.get("value") is None:
        return None
    return int(round(float(duration["value"]) * _DAY_UNITS[unit]))


def _pain_ratings(
    kb: KnowledgeBase, context: PatientContext, conventions: StatusConventions
) -> tuple[PainRatings | None, list[Issue]]:
    questionnaire = kb.resolve(conventions.pain_questionnaire, "Questionnaire")
    if questionnaire is None:
        return None, [
            Issue(
                "warning",
                "not-found",
                f"Questionnaire {conventions.pain_questionnaire} is not loaded; NRS not shown",
                ["Questionnaire"],
            )
        ]
    codes: set[tuple[str | None, str]] = set()

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items or []:
            if item.get("linkId") == conventions.pain_item:
                codes.update((c.get("system"), c.get("code")) for c in item.get("code", []) or [])
            walk(item.get("item", []))

    walk(questionnaire.get("item", []))
    ratings = []
    for resource in context.resources:
        if resource.get("resourceType") != "Observation" or resource.get("status") not in (
            "final",
            "amended",
            "corrected",
        ):
            continue
        coded = {(c.get("system"), c.get("code")) for c in (resource.get("code") or {}).get("coding", [])}
        if not coded & codes:
            continue
        value = resource.get(
            "valueInteger", resource.get("valueDecimal", (resource.get("valueQuantity") or {}).get("value"))
        )
        when = (
            resource.get("effectiveDateTime")
            or (resource.get("effectivePeriod") or {}).get("start")
            or resource.get("issued")
        )
        if value is None or not when:
            continue
        ratings.append({"value": value, "date": when, "reference": f"Observation/{resource.get('id')}"})
    ratings.sort(key=lambda r: r["date"])
    code = sorted(codes)[0] if codes else None
    return PainRatings(
        {"system": code[0], "code": code[1]} if code else None,
        ratings[0] if ratings else None,
        ratings[-1] if ratings else None,
        len(ratings),
    ), []


def _pathway_start(plan: Artifact, context: PatientContext) -> tuple[date, str]:
    url = plan.url or ""
    starts = []
    for resource in context.resources:
        if resource.get("resourceType") == "CarePlan" and any(
            c.split("|")[0] == url for c in resource.get("instantiatesCanonical", []) or []
        ):
            when = _date_of((resource.get("period") or {}).get("start") or resource.get("created") or "")
            if when:
                starts.append((when, f"CarePlan/{resource.get('id')}"))
    if starts:
        return min(starts)
    answered = [
        (d, f"QuestionnaireResponse/{r.get('id')}")
        for r in context.resources
        if r.get("resourceType") == "QuestionnaireResponse" and (d := _date_of(r.get("authored") or ""))
    ]
    if answered:
        return min(answered)
    return context.env.today, "today"


def _current_step(applicable: list[Step], steps_order: Mapping[str, tuple[int, str | None]],
                  conventions: StatusConventions) -> CurrentStep | None:
    """The step of the most urgent applicable recommendation (ties: the later step)."""
    recommendations = [
        s for s in applicable if s.action.get("priority") and _codes(s.action, conventions.step_system)
    ]
    if not recommendations:
        return None
    best = max(
        recommendations,
        key=lambda s: (
            PRIORITY_RANK.get(str(s.action.get("priority")), 0),
            max(steps_order.get(c, (-1, None))[0] for c in _codes(s.action, conventions.step_system)),
        ),
    )
    step_code = max(
        _codes(best.action, conventions.step_system), key=lambda c: steps_order.get(c, (-1, None))[0]
    )
    return CurrentStep(conventions.step_system, step_code, steps_order.get(step_code, (0, None))[1], best.id)


def _steps(applicable: list[Step], steps_order: Mapping[str, tuple[int, str | None]],
           conventions: StatusConventions) -> list[StepGroup]:
    by_step: dict[str, list[Step]] = {}
    for s in applicable:
        for code in _codes(s.action, conventions.step_system):
            by_step.setdefault(code, []).append(s)
    return [
        StepGroup(
            code,
            steps_order.get(code, (0, None))[1],
            [
                StepAction(s.id, s.action.get("title"), s.action.get("priority"),
                           _codes(s.action, conventions.rules_system))
                for s in items
            ],
        )
        for code, items in sorted(by_step.items(), key=lambda kv: steps_order.get(kv[0], (999, None))[0])
    ]


def _flags(kb: KnowledgeBase, features: FeatureValues, applicable: list[Step], gates: set[str],
           conventions: StatusConventions) -> list[Flag]:
    """Flags found (by the feature named after the rule, else an applicable action coded with it), with evidence."""
    types = flag_types(kb, conventions)
    rules_cs = kb.resolve(conventions.rules_system, "CodeSystem") or {}
    rule_display = {c["code"]: c.get("display") for c in rules_cs.get("concept", []) or []}
    found: list[tuple[str, str, str | None, list[str]]] = []  # (rule, type, feature, features for evidence)
    for rule, flag_type in types.items():
        feature = _feature_for_rule(features, rule)
        if feature is not None and to_json(features.raw.get(feature, [])) == [True]:
            found.append((rule, flag_type, feature, [feature]))
            continue
        coded = [
            s for s in applicable if rule in _codes(s.action, conventions.rules_system) and s.action.get("priority")
        ]
        if coded and feature is None:
            names = sorted({n for s in coded for n in _condition_variables(s) if n in features.raw} - gates)
            found.append((rule, flag_type, None, names))
    wanted = sorted({n for _, _, _, names in found for n in names})
    sources = evidence(kb, features, wanted, conventions) if wanted else {}
    flags = []
    for rule, flag_type, feature, names in found:
        entries: list[dict[str, Any]] = []
        for name in names:
            for entry in sources.get(name, []):
                if entry not in entries:
                    entries.append(entry)
        flags.append(Flag(rule, flag_type, rule_display.get(rule), feature, names, entries))
    return flags


def _screening(kb: KnowledgeBase, features: FeatureValues, conventions: StatusConventions) -> Screening | None:
    """The last-declared feature whose value is a code of the risk-category CodeSystem."""
    risk_codes = {code: display for code, (_, display) in _concept_order(kb, conventions.risk_system).items()}
    for feature in reversed(features.library.features):
        values = to_json(features.raw.get(feature.name, []))
        if len(values) != 1:
            continue
        value = values[0]
        code = None
        if isinstance(value, str) and value in risk_codes:
            code = value
        elif isinstance(value, dict):
            for coding in value.get("coding", [value]):
                if coding.get("system") == conventions.risk_system:
                    code = coding.get("code")
        if code:
            return Screening(
                {"system": conventions.risk_system, "code": code, "display": risk_codes.get(code)},
                feature.name,
                evidence(kb, features, [feature.name], conventions).get(feature.name, []),
            )
    return None


DEADLINE_FROM = "https://lbp-pathway.org/fhir/StructureDefinition/deadline-from"
DEADLINE_MET_BY = "https://lbp-pathway.org/fhir/StructureDefinition/deadline-met-by"


def _feature_date(features: FeatureValues | None, name: str | None) -> date | None:
    if features is None or not name:
        return None
    values = features.value(name)
    return _date_of(values[0]) if values else None


def _named(action: Mapping[str, Any], url: str) -> str | None:
    return next((e.get("valueString") for e in action.get("extension", []) or [] if e.get("url") == url), None)


def _deadlines(steps: list[Step], start: date, start_source: str, today: date,
               conventions: StatusConventions, features: FeatureValues | None = None) -> list[Deadline]:
    """Durations on actions. An action naming its anchor (deadline-from: a case feature giving the event the
    source counts from) counts from that record event, and a deadline-met-by feature's date on or after the
    anchor meets it; otherwise an applicable recommendation counts from today, a milestone from the start."""
    deadlines = []
    for s in steps:
        durations = []
        if isinstance(s.action.get("timingDuration"), dict):
            durations.append(s.action["timingDuration"])
        for related in s.action.get("relatedAction", []) or []:
            if isinstance(related.get("offsetDuration"), dict):
                durations.append(related["offsetDuration"])
        for duration in durations:
            days = _duration_days(duration)
            if days is None:
                continue
            milestone = not s.action.get("condition") and s.depth == 0
            if not milestone and not _applicable(s):
                continue
            anchor_feature = _named(s.action, DEADLINE_FROM)
            if anchor_feature:
                anchored = _feature_date(features, anchor_feature)
                if anchored is None:  # the event it counts from is not in the record (yet): no date to show
                    continue
                anchor, anchor_source = anchored, f"%{anchor_feature}"
            else:
                anchor, anchor_source = (start, start_source) if milestone else (today, "today")
            due = anchor + timedelta(days=days)
            met = _feature_date(features, _named(s.action, DEADLINE_MET_BY))
            met_on = met.isoformat() if met is not None and met >= anchor else None
            deadlines.append(
                Deadline(s.id, s.action.get("title"), _codes(s.action, conventions.rules_system), duration,
                         anchor.isoformat(), anchor_source, due.isoformat(), due < today and met_on is None, met_on)
            )
    return deadlines


def _missing(steps: list[Step], features: FeatureValues | None, conventions: StatusConventions) -> list[MissingFact]:
    """Empty features that an undecided condition needs, with the actions they block."""
    missing: dict[str, MissingFact] = {}
    descriptions = {f.name: f.description for f in (features.library.features if features else ())}
    for s in steps:
        if s.verdict.outcome is not Outcome.UNKNOWN or not s.verdict.blocked_by:
            continue
        for name in s.verdict.blocked_by:
            entry = missing.setdefault(name, MissingFact(name, descriptions.get(name)))
            block = {"action": s.id, "rules": _codes(s.action, conventions.rules_system)}
            if block not in entry.blocks:
                entry.blocks.append(block)
    return list(missing.values())


def _collect(kb: KnowledgeBase, steps: list[Step], applicable: list[Step]) -> list[Collect]:
    """The questionnaires applicable actions offer to collect, and the actions (their parents) that offer them."""
    collect: dict[str, Collect] = {}
    for s in applicable:
        target = _producing(s)
        if target is None:
            continue
        canonical = None
        if target.resource_type == "Questionnaire":
            canonical = target.url
        else:
            for ext in target.resource.get("extension", []) or []:
                if ext.get("valueCanonical") and "/Questionnaire/" in ext["valueCanonical"]:
                    canonical = ext["valueCanonical"]
            for related in target.resource.get("relatedArtifact", []) or []:
                if related.get("resource") and "/Questionnaire/" in related["resource"]:
                    canonical = canonical or related["resource"]
        if canonical:
            questionnaire = kb.resolve(canonical, "Questionnaire") or {}
            entry = collect.setdefault(canonical, Collect(canonical, questionnaire.get("title")))
            parent = next((p for p in steps if any(c is s for c in p.children)), None)
            because = (parent or s).id
            if because not in entry.because:
                entry.because.append(because)
    return list(collect.values())


def _not_evaluated(steps: list[Step], conventions: StatusConventions) -> list[NotEvaluated]:
    out = []
    for s in steps:
        if s.verdict.outcome is not Outcome.NOT_EVALUATED:
            continue
        failures = s.features.failures_behind(s.verdict.failed) if s.features is not None else []
        out.append(NotEvaluated(s.id, s.plan.label, _codes(s.action, conventions.rules_system),
                                [f.feature for f in failures], s.verdict.problem))
    return out


def pathway_status(
    kb: KnowledgeBase,
    pathway_plan_definition: Mapping[str, Any] | str | Artifact,
    record: Any,
    *,
    today: date | datetime | None = None,
    subject: Any = None,
    draft_orders: Any = (),
    conventions: StatusConventions = CONVENTIONS,
    fail_features: Iterable[str] = (),
) -> PathwayStatus:
    """The patient's place on the pathway (see the module docstring for how each part is found).

    The result is typed (`PathwayStatus`); `to_dict()` (or reading it as a mapping) gives its JSON
    shape. `fail_features` (fault injection) forces case features to fail, as in $apply.
    """
    plan = (
        pathway_plan_definition
        if isinstance(pathway_plan_definition, Artifact)
        else kb.artifact(pathway_plan_definition, "PlanDefinition")
    )
    if plan is None:
        raise FHIRError(
            "not-found", f"PlanDefinition {pathway_plan_definition} is not loaded", "planDefinition"
        )
    context = patient_context(
        record, subject=subject, today=today, draft_orders=draft_orders, terminology=kb.terminology,
        fail_features=fail_features,
    )
    walk = PlanWalk(kb, context)
    library = kb.library_for(plan.resource)
    steps = _flatten(walk.plan(plan, library))
    features = walk.features_for(library)
    issues = list(walk.issues)
    applicable = [s for s in steps if _applicable(s)]
    # features every pathway step is gated on (e.g. "in scope") say nothing about a particular flag
    gates = {n for s in steps if s.depth == 0 for n in _condition_variables(s)}
    steps_order = _concept_order(kb, conventions.step_system)
    today_date = context.env.today
    nrs, nrs_issues = _pain_ratings(kb, context, conventions)
    issues.extend(nrs_issues)
    start, start_source = _pathway_start(plan, context)
    failures = [f.to_dict() for f in features.failures.values()] if features is not None else []
    return PathwayStatus(
        pathway=PathwayRef(plan.url, plan.version, plan.resource.get("title")),
        date=today_date.isoformat(),
        subject=context.subject,
        step=_current_step(applicable, steps_order, conventions),
        steps=_steps(applicable, steps_order, conventions),
        flags=_flags(kb, features, applicable, gates, conventions) if features is not None else [],
        screening=_screening(kb, features, conventions) if features is not None else None,
        nrs=nrs,
        deadlines=_deadlines(steps, start, start_source, today_date, conventions, features),
        missing=_missing(steps, features, conventions),
        collect=_collect(kb, steps, applicable),
        issues=[i.to_fhir() for i in issues],
        not_evaluated=_not_evaluated(steps, conventions),
        failed_features=failures,
        features=features,
    )
