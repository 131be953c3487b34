"""Fault injection: each case feature in turn forced to fail; no rule that reads it, directly or not, disappears
without a "could not be evaluated" outcome, and the failure never gives fewer outcomes than the same feature
simply unknown.

Generated from: every case feature of the Library (in declaration order); the features each reads (the Library's
`%name` references, transitively) and the rule actions whose conditions read them (the variant's PlanDefinitions,
nested ones included, with the conditions of the enclosing actions); reference patients at patient-view and at
order-sign, in every variant. The failure is forced through the engine's fault-injection API
(`apply_plan_definition(fail_features=...)`, config `REASONING_FAIL_FEATURES` for the CDS service); "simply
unknown" is the same Library with that feature's expression replaced by `{}`.
"""

from __future__ import annotations

import re

import pytest

from app.reasoning import KnowledgeBase
from tests.proof import figures
from tests.proof.model import LIBRARY, artifacts, knowledge, model, variants
from tests.proof.records import applied_actions, apply, card_rules, hook_body, reference_records
from tests.proof.test_monotonicity import SAFE_HOOKS, drafts_for
from tests.proof.unevaluated import (
    ERRORS,
    failed_features_of,
    not_evaluated,
    outcome_of,
    reads_when_failing,
    rules_of,
    unknown_library,
)

RECORDS = {name: r for name, r in reference_records().items()
           if name in ("cds/clean", "cds/cancer", "cds/treated")}


def outcomes(care_plan: dict) -> dict[str, tuple[str | None, set[str]]]:
    """Applied rule actions (those with a priority): id -> (evaluation outcome, rule ids)."""
    return {a["id"]: (outcome_of(a), rules_of(a)) for a in applied_actions(care_plan)
            if a.get("id") and a.get("priority")}


def missing(expected: dict, failed_run: dict, reporting: list[dict]) -> list[str]:
    """Rule actions of `expected` that the failed run neither applies nor reports as not evaluated."""
    out = []
    for action_id, (_outcome, rules) in expected.items():
        if action_id in failed_run:
            continue
        if any(a.get("id") == action_id or (rules and rules <= rules_of(a)) for a in reporting):
            continue
        out.append(action_id)
    return out


def test_the_dependency_derivation_covers_every_feature_a_rule_reads():
    """Every %name a rule condition reads is an engine variable or a case feature, and the closure traces the
    record's red-flag features to the red-flag rule."""
    m = model()
    engine = {"patient", "today", "now", "draftOrders", "selections", "subject", "encounter", "practitioner",
              "context", "resource", "rootResource", "ucum", "sct", "loinc"}
    for variant, actions in m.actions.items():
        assert actions, f"variant {variant} reaches no rule action"
        for action in actions:
            names = {n for text in action.conditions for n in re.findall(r"%(\w+)", text)}
            unknown = names - set(m.features) - engine
            assert not unknown, f"{variant} {action.id} reads undeclared {unknown}"
    # the red-flag rule reads every red-flag feature of the record, through %redFlagAny
    red_flags = next(a for a in m.actions["se"] if a.id == "red-flags-present")
    assert {r.feature for r in m.reads if r.feature.startswith("redFlag")} <= red_flags.reads


@pytest.mark.parametrize("variant", list(variants()))
def test_a_failing_feature_never_removes_a_rule_silently(variant):
    m = model()
    kb = knowledge()
    unknown_kb = KnowledgeBase(artifacts())
    pathway = variants()[variant]["pathway"]
    baseline = {}
    for name, record in RECORDS.items():
        for hook in SAFE_HOOKS:
            care_plan, _ = apply(kb, pathway, record, hook, drafts_for(record, hook))
            baseline[(name, hook)] = outcomes(care_plan)
    failures = []
    for feature in m.order:
        readers = {hook: m.actions_reading(variant, feature, hook) for hook in SAFE_HOOKS}
        if not any(readers.values()):
            continue  # no rule of this variant reads it: nothing can disappear
        unknown_kb.add(unknown_library(feature))
        for name, record in RECORDS.items():
            for hook in SAFE_HOOKS:
                if not readers[hook]:
                    continue
                drafts = drafts_for(record, hook)
                failed_plan, issues = apply(kb, pathway, record, hook, drafts, fail_features={feature})
                unknown_plan, _ = apply(unknown_kb, pathway, record, hook, drafts)
                figures.count("fault injection: feature x record x hook forced to fail ($apply pairs)")
                where = f"{feature} failing, {name} {hook}"
                failed_run = outcomes(failed_plan)
                reporting = not_evaluated(failed_plan)
                for action_id in missing(baseline[(name, hook)], failed_run, reporting):
                    failures.append(f"{where}: {action_id} disappeared (it applies when nothing fails)")
                for action_id in missing(outcomes(unknown_plan), failed_run, reporting):
                    failures.append(f"{where}: {action_id} disappeared (it applies with the feature unknown)")
                failures.extend(f"{where}: error not from the forced feature: {i.text[:200]}" for i in issues
                                if i.severity in ERRORS and f"feature {feature} could not" not in i.text)
                named = {f for a in applied_actions(failed_plan) for f in failed_features_of(a)}
                shown = set(baseline[(name, hook)]) | set(outcomes(unknown_plan))
                # an action whose conditions decide without reading the feature (`true or %x`) need not name it:
                # checked here without the engine, by evaluating them with the feature raising when read
                affected = {a.id for a in readers[hook] if a.id in shown and reads_when_failing(
                    kb, record, hook, drafts, feature, a.conditions)}
                if affected and feature not in named:
                    failures.append(f"{where}: {sorted(affected)} read it and no outcome names it as failed")
                figures.count("fault injection: rule actions that read a failing feature as evaluated "
                              "(must name it)", len(affected))
    unknown_kb.add(knowledge().resolve(LIBRARY, "Library"))
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("variant", list(variants()))
def test_a_failing_feature_gives_cards_through_the_cds_service(cds_app, cds, variant):
    """Each case feature a rule reads forced to fail in the CDS service (REASONING_FAIL_FEATURES), patient
    'cancer' at patient-view: 200, and every rule action the engine reports as not evaluated is a card with the
    rule ids it stands for, `warning` when one of them is a safety rule (lbp-rules role)."""
    m = model()
    kb = knowledge()
    pathway = variants()[variant]["pathway"]
    record = RECORDS["cds/cancer"]
    failures = []
    try:
        for feature in m.order:
            if not m.actions_reading(variant, feature, "patient-view"):
                continue
            cds_app.config["REASONING_FAIL_FEATURES"] = (feature,)
            r = cds.post(f"/cds-services/lbp-patient-view-{variant}", hook_body("patient-view", record))
            figures.count("fault injection: CDS service calls")
            if r.status_code != 200:
                failures.append(f"{feature}: status {r.status_code}")
                continue
            cards = r.get_json()["cards"]
            care_plan, _ = apply(kb, pathway, record, "patient-view", fail_features={feature})
            for action in not_evaluated(care_plan):
                wanted = rules_of(action)
                if not wanted:
                    continue  # a suggestion inside a card, not a rule of its own
                indicator = {"urgent": "warning", "routine": "info"}[action["priority"]]
                if not any(card_rules(c) == wanted and c["indicator"] == indicator for c in cards):
                    shown = [(sorted(card_rules(c)), c["indicator"]) for c in cards]
                    failures.append(f"{feature}: no {indicator} card for the unevaluated {action.get('id')} "
                                    f"({sorted(wanted)}); cards: {shown}")
    finally:
        cds_app.config["REASONING_FAIL_FEATURES"] = ()
    assert not failures, "\n".join(failures[:30])
