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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from app.errors import FHIRError, Issue
from app.fhirpath import FHIRPATH, Scope, evaluate, singleton_boolean, to_json
from app.fhirpath.values import Node, parse_temporal
from app.reasoning.features import FeatureValues, PatientContext, evaluate_features, patient_context
from app.reasoning.knowledge import Artifact, KnowledgeBase

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


@dataclass
class _Verdict:
    plan: Artifact
    action: dict[str, Any]
    path: str
    applicable: bool | None  # None: a condition could not be decided
    depth: int
    features: FeatureValues | None
    blocked_by: list[str]
    children: list[_Verdict]
    producing: Artifact | None  # the ActivityDefinition / Questionnaire it would produce


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


class _Walk:
    def __init__(self, kb: KnowledgeBase, context: PatientContext):
        self.kb = kb
        self.context = context
        self.features: dict[str, FeatureValues] = {}
        self.issues: list[Issue] = []

    def features_for(self, library: Artifact | None) -> FeatureValues | None:
        if library is None:
            return None
        if library.label not in self.features:
            values = evaluate_features(self.kb, library, self.context)
            self.issues.extend(values.issues)
            self.features[library.label] = values
        return self.features[library.label]

    def plan(
        self, plan: Artifact, library: Artifact | None, depth: int, stack: tuple[str, ...]
    ) -> list[_Verdict]:
        if plan.label in stack or depth > 8:
            return []
        features = self.features_for(library)
        return [
            self.action(
                plan,
                action,
                f"PlanDefinition.action[{i}]",
                library,
                features,
                depth,
                stack + (plan.label,),
                True,
            )
            for i, action in enumerate(plan.resource.get("action", []) or [])
        ]

    def condition(
        self, plan: Artifact, action: Mapping[str, Any], path: str, features: FeatureValues | None
    ) -> tuple[bool | None, list[str]]:
        blocked: list[str] = []
        verdict: bool | None = True
        for j, condition in enumerate(action.get("condition", []) or []):
            if condition.get("kind", "applicability") != "applicability":
                continue
            where = f"{path}.condition[{j}].expression.expression"
            compiled = plan.expressions.get(where)
            if (
                compiled is None
                or features is None
                or (condition.get("expression") or {}).get("language") != FHIRPATH
            ):
                return None, blocked
            try:
                value = singleton_boolean(features.evaluate(compiled))
            except Exception as exc:
                self.issues.append(
                    Issue(
                        "error",
                        "processing",
                        f"{plan.label} {path}: condition failed ({exc})",
                        [where],
                        compiled.text,
                    )
                )
                return None, blocked
            if value is None:
                blocked.extend(
                    v
                    for v in sorted(compiled.variables)
                    if v in features.raw and not features.raw[v] and v not in blocked
                )
                verdict = None
            elif value is False:
                return False, []
        return verdict, blocked

    def action(
        self,
        plan: Artifact,
        action: dict[str, Any],
        path: str,
        library: Artifact | None,
        features: FeatureValues | None,
        depth: int,
        stack: tuple[str, ...],
        parent_applicable: bool,
    ) -> _Verdict:
        verdict, blocked = self.condition(plan, action, path, features)
        applicable: bool | None = verdict if parent_applicable else False
        children: list[_Verdict] = []
        producing = None
        canonical = action.get("definitionCanonical")
        target = self.kb.artifact(canonical) if canonical else None
        if target is not None and target.resource_type == "PlanDefinition":
            nested = self.kb.library_for(target.resource, fallback=library)
            nested_verdicts = self.plan(target, nested, depth + 1, stack)
            if applicable is not True:
                for v in nested_verdicts:
                    _mark_not_applicable(v)
            children.extend(nested_verdicts)
        elif target is not None:
            producing = target
        for k, child in enumerate(action.get("action", []) or []):
            verdict_child = self.action(
                plan, child, f"{path}.action[{k}]", library, features, depth + 1, stack, applicable is True
            )
            if applicable is not True:
                _mark_not_applicable(verdict_child)
            children.append(verdict_child)
        if not parent_applicable:
            blocked = []
        return _Verdict(plan, action, path, applicable, depth, features, blocked, children, producing)


def _mark_not_applicable(verdict: _Verdict) -> None:
    verdict.applicable = False
    verdict.blocked_by = []
    for child in verdict.children:
        _mark_not_applicable(child)


def _condition_variables(verdict: _Verdict) -> set[str]:
    names: set[str] = set()
    for j, _ in enumerate(verdict.action.get("condition", []) or []):
        compiled = verdict.plan.expressions.get(f"{verdict.path}.condition[{j}].expression.expression")
        if compiled is not None:
            names |= set(compiled.variables)
    return names


def _flatten(verdicts: list[_Verdict]) -> list[_Verdict]:
    out: list[_Verdict] = []
    for v in verdicts:
        out.append(v)
        out.extend(_flatten(v.children))
    return out


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
                return concept["text"]
            for coding in concept.get("coding", []) or []:
                if coding.get("display"):
                    return coding["display"]
                if coding.get("code"):
                    return coding["code"]
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
    by_name = {f.name: f for f in library.features}
    closures: dict[str, list[str]] = {}
    for name in names:
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if current in seen or current not in by_name:
                continue
            seen.add(current)
            stack.extend(by_name[current].depends_on)
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
) -> tuple[dict[str, Any] | None, list[Issue]]:
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
    return {
        "code": {"system": code[0], "code": code[1]} if code else None,
        "first": ratings[0] if ratings else None,
        "latest": ratings[-1] if ratings else None,
        "count": len(ratings),
    }, []


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


def pathway_status(
    kb: KnowledgeBase,
    pathway_plan_definition: Mapping[str, Any] | str | Artifact,
    record: Any,
    *,
    today: date | datetime | None = None,
    subject: Any = None,
    draft_orders: Any = (),
    conventions: StatusConventions = CONVENTIONS,
) -> dict[str, Any]:
    """The patient's place on the pathway (see the module docstring for how each part is found)."""
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
        record, subject=subject, today=today, draft_orders=draft_orders, terminology=kb.terminology
    )
    walk = _Walk(kb, context)
    library = kb.library_for(plan.resource)
    verdicts = _flatten(walk.plan(plan, library, 0, ()))
    features = walk.features_for(library)
    issues = list(walk.issues)
    applicable = [v for v in verdicts if v.applicable is True]
    # features every pathway step is gated on (e.g. "in scope") say nothing about a particular flag
    gates = {n for v in verdicts if v.depth == 0 for n in _condition_variables(v)}
    steps_order = _concept_order(kb, conventions.step_system)
    today_date = context.env.today

    # -- steps -----------------------------------------------------------------------------
    by_step: dict[str, list[_Verdict]] = {}
    for v in applicable:
        for step in _codes(v.action, conventions.step_system):
            by_step.setdefault(step, []).append(v)
    recommendations = [
        v for v in applicable if v.action.get("priority") and _codes(v.action, conventions.step_system)
    ]
    current = None
    if recommendations:
        best = max(
            recommendations,
            key=lambda v: (
                PRIORITY_RANK.get(v.action.get("priority"), 0),
                max(steps_order.get(s, (-1, None))[0] for s in _codes(v.action, conventions.step_system)),
            ),
        )
        step_code = max(
            _codes(best.action, conventions.step_system), key=lambda s: steps_order.get(s, (-1, None))[0]
        )
        current = {
            "system": conventions.step_system,
            "code": step_code,
            "display": steps_order.get(step_code, (0, None))[1],
            "because": best.action.get("id"),
        }
    steps = [
        {
            "code": code,
            "display": steps_order.get(code, (0, None))[1],
            "actions": [
                {
                    "id": v.action.get("id"),
                    "title": v.action.get("title"),
                    "priority": v.action.get("priority"),
                    "rules": _codes(v.action, conventions.rules_system),
                }
                for v in items
            ],
        }
        for code, items in sorted(by_step.items(), key=lambda kv: steps_order.get(kv[0], (999, None))[0])
    ]

    # -- flags -----------------------------------------------------------------------------
    flags: list[dict[str, Any]] = []
    if features is not None:
        types = flag_types(kb, conventions)
        rules_cs = kb.resolve(conventions.rules_system, "CodeSystem") or {}
        rule_display = {c["code"]: c.get("display") for c in rules_cs.get("concept", []) or []}
        found: list[
            tuple[str, str, str | None, list[str]]
        ] = []  # (rule, type, feature, features for evidence)
        for rule, flag_type in types.items():
            feature = _feature_for_rule(features, rule)
            if feature is not None and to_json(features.raw.get(feature, [])) == [True]:
                found.append((rule, flag_type, feature, [feature]))
                continue
            coded = [
                v
                for v in applicable
                if rule in _codes(v.action, conventions.rules_system) and v.action.get("priority")
            ]
            if coded and feature is None:
                names = sorted(
                    {n for v in coded for n in _condition_variables(v) if n in features.raw} - gates
                )
                found.append((rule, flag_type, None, names))
        wanted = sorted({n for _, _, _, names in found for n in names})
        sources = evidence(kb, features, wanted, conventions) if wanted else {}
        for rule, flag_type, feature, names in found:
            entries: list[dict[str, Any]] = []
            for name in names:
                for entry in sources.get(name, []):
                    if entry not in entries:
                        entries.append(entry)
            flags.append(
                {
                    "rule": rule,
                    "type": flag_type,
                    "display": rule_display.get(rule),
                    "feature": feature,
                    "features": names,
                    "evidence": entries,
                }
            )

    # -- screening risk --------------------------------------------------------------------
    screening = None
    if features is not None:
        risk_codes = {
            code: display for code, (_, display) in _concept_order(kb, conventions.risk_system).items()
        }
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
                screening = {
                    "risk": {
                        "system": conventions.risk_system,
                        "code": code,
                        "display": risk_codes.get(code),
                    },
                    "feature": feature.name,
                    "evidence": evidence(kb, features, [feature.name], conventions).get(feature.name, []),
                }
                break

    # -- NRS ---------------------------------------------------------------------------------
    nrs, nrs_issues = _pain_ratings(kb, context, conventions)
    issues.extend(nrs_issues)

    # -- deadlines ---------------------------------------------------------------------------
    start, start_source = _pathway_start(plan, context)
    deadlines = []
    for v in verdicts:
        durations = []
        if isinstance(v.action.get("timingDuration"), dict):
            durations.append(v.action["timingDuration"])
        for related in v.action.get("relatedAction", []) or []:
            if isinstance(related.get("offsetDuration"), dict):
                durations.append(related["offsetDuration"])
        for duration in durations:
            days = _duration_days(duration)
            if days is None:
                continue
            milestone = not v.action.get("condition") and v.depth == 0
            if not milestone and v.applicable is not True:
                continue
            anchor, anchor_source = (start, start_source) if milestone else (today_date, "today")
            due = anchor + timedelta(days=days)
            deadlines.append(
                {
                    "action": v.action.get("id"),
                    "title": v.action.get("title"),
                    "rules": _codes(v.action, conventions.rules_system),
                    "duration": duration,
                    "from": anchor.isoformat(),
                    "fromSource": anchor_source,
                    "due": due.isoformat(),
                    "overdue": due < today_date,
                }
            )

    # -- missing ------------------------------------------------------------------------------
    missing: dict[str, dict[str, Any]] = {}
    descriptions = {f.name: f.description for f in (features.library.features if features else ())}
    for v in verdicts:
        if v.applicable is None and v.blocked_by:
            for name in v.blocked_by:
                entry = missing.setdefault(
                    name, {"feature": name, "description": descriptions.get(name), "blocks": []}
                )
                block = {"action": v.action.get("id"), "rules": _codes(v.action, conventions.rules_system)}
                if block not in entry["blocks"]:
                    entry["blocks"].append(block)
    collect: dict[str, dict[str, Any]] = {}
    for v in applicable:
        target = v.producing
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
            entry = collect.setdefault(
                canonical, {"questionnaire": canonical, "title": questionnaire.get("title"), "because": []}
            )
            parent = next((p for p in verdicts if v in p.children), None)
            because = (parent or v).action.get("id")
            if because not in entry["because"]:
                entry["because"].append(because)

    return {
        "pathway": {"url": plan.url, "version": plan.version, "title": plan.resource.get("title")},
        "date": today_date.isoformat(),
        "subject": context.subject,
        "step": current,
        "steps": steps,
        "flags": flags,
        "screening": screening,
        "nrs": nrs,
        "deadlines": deadlines,
        "missing": list(missing.values()),
        "collect": list(collect.values()),
        "issues": [i.to_fhir() for i in issues],
    }
