"""Safety rules are monotone: adding a red-flag or acute-sign code to a reference record never takes a warning or
critical card away, at patient-view and at order-sign, in every variant.

Generated from: the ValueSets that name a red flag or an acute sign in their `useContext` (lbp-rules codes with
flag-type red or acute) and that the Library reads from the record; every code of each; the reference patients
(`records.reference_records`). A warning or critical rule action may only go away when the new sign makes it
wrong and another warning or critical card takes its place: those few are listed in `SUPERSEDED`, each with the
reason and the rule whose card must then be there.
"""

from __future__ import annotations

import pytest

from tests.cds.orders import ORDERS
from tests.proof import figures
from tests.proof.model import INDICATOR, knowledge, model, variants
from tests.proof.records import (
    SOURCE_PLACES,
    applied_actions,
    apply,
    build,
    card_rules,
    categories,
    forms,
    hook_body,
    reference_records,
)

RANK = {"info": 0, "warning": 1, "critical": 2}
SAFE_HOOKS = ("patient-view", "order-sign")

# rule action -> (why a red flag or acute sign rightly removes it, rule ids one of which must then be on a
# warning or critical card)
ACUTE = {"RA1", "RA2", "RA3", "RA4"}
SUPERSEDED: dict[str, tuple[str, set[str]]] = {
    "imaging-without-indication": ("a red flag or acute sign is itself the indication for imaging (I0 (1))", set()),
    "xray-replaced-by-mri": ("scoliosis (RF9) is investigated with a plain X-ray first, a fracture question (RF3) "
                             "with low-dose CT (I4)", set()),
    "referral-without-basic-treatment": ("an acute sign is referred at once, without basic treatment first", ACUTE),
    "non-acute-referral-needs-recent-mri": ("an acute referral is made without MRÖ first", ACUTE),
    "mri-indicated-i1": ("an acute sign is referred at once instead of an MRÖ", ACUTE),
    "eight-weeks-primary-sector": ("an acute sign does not wait eight weeks in the primary sector", ACUTE),
}


def safety_reads():
    """(valueset, read) for the ValueSets of red flags and acute signs that the Library reads from the record."""
    m = model()
    safety = m.safety_rules()
    out = []
    for read in m.reads:
        if read.source == "selections" or not (m.valueset_rules(read.valueset) & safety):
            continue
        if not any(p.counts for p in SOURCE_PLACES[read.source]):
            continue
        out.append(read)
    # one read per (valueset, source, element): two features reading the same place add nothing
    seen, unique = set(), []
    for r in out:
        key = (r.valueset, r.source, r.element)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def severe(care_plan: dict) -> dict[str, tuple[str, set[str]]]:
    """Applied rule actions with a warning or critical indicator: id -> (indicator, rule ids)."""
    m = model()
    rules_of = {a.id: set(a.rules) for acts in m.actions.values() for a in acts}
    return {a["id"]: (INDICATOR[a["priority"]], rules_of.get(a["id"], set()))
            for a in applied_actions(care_plan)
            if a.get("id") and a.get("priority") in ("urgent", "asap", "stat")}


def drafts_for(record: list[dict], hook: str) -> list[dict]:
    """order-sign advises on an order set that draws warnings on a patient without flags: imaging, a referral,
    an opioid (tests/cds/orders.py)."""
    if hook != "order-sign":
        return []
    pid = next(r["id"] for r in record if r["resourceType"] == "Patient")
    return [ORDERS[name](pid) for name in ("mri", "xray", "referral", "opioid")]


def added_codes():
    """(read, place, system, code) for every code of every red-flag / acute-sign ValueSet, in its first counting
    place, the system form rotating over the codes."""
    m = model()
    out = []
    for read in safety_reads():
        place = next(p for p in SOURCE_PLACES[read.source] if p.counts)
        for i, (system, code) in enumerate(categories(m.valueset(read.valueset))):
            all_forms = forms(system, code)
            _, form_system, form_code = all_forms[i % len(all_forms)]
            out.append((read, place, form_system, form_code))
    return out


def violations(before: dict, after: dict) -> list[str]:
    out = []
    kept_rules = {r for indicator, rules in after.values() for r in rules}
    top_before = max((RANK[i] for i, _ in before.values()), default=-1)
    top_after = max((RANK[i] for i, _ in after.values()), default=-1)
    if top_after < top_before:
        out.append(f"the highest indicator dropped from {top_before} to {top_after}")
    for action, (indicator, _rules) in sorted(before.items()):
        if action in after:
            continue
        if action in SUPERSEDED:
            _why, successors = SUPERSEDED[action]
            if not successors or successors & kept_rules:
                continue
        out.append(f"the {indicator} rule action {action} went away")
    return out


RECORDS = reference_records()


@pytest.mark.parametrize("hook", SAFE_HOOKS)
@pytest.mark.parametrize("variant", list(variants()))
def test_adding_a_safety_code_never_removes_a_warning_or_critical_card(variant, hook):
    """Every red-flag / acute-sign code, each added to a reference record (all records for the first code of
    each ValueSet, one record per code in rotation for the others), in process."""
    kb, pathway = knowledge(), variants()[variant]["pathway"]
    names = sorted(RECORDS)
    failures = []
    baseline = {}
    for name in names:
        record = RECORDS[name]
        care_plan, issues = apply(kb, pathway, record, hook, drafts_for(record, hook))
        baseline[name] = severe(care_plan)
    first_of = {}
    for k, (read, place, system, code) in enumerate(added_codes()):
        first = first_of.setdefault(read.valueset, k) == k
        for name in names if first else [names[k % len(names)]]:
            record = RECORDS[name]
            resource = build(place, read.element, system, code, k)
            resource["subject"] = {"reference": f"Patient/{record[0]['id']}"}
            care_plan, issues = apply(kb, pathway, record + [resource], hook, drafts_for(record, hook))
            figures.count("monotonicity: safety code added to a reference record ($apply)")
            errors = [i.text for i in issues if i.severity in ("error", "fatal")]
            lost = violations(baseline[name], severe(care_plan))
            if errors or lost:
                failures.append(f"{name} + {system}|{code} ({read.feature}, {place.name}): "
                                + "; ".join(lost + [f"error: {e[:200]}" for e in errors]))
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("variant", list(variants()))
def test_monotone_through_the_cds_service(cds, variant):
    """The first code of each red-flag / acute-sign ValueSet added to every reference record, through the CDS
    service at patient-view and order-sign: no warning or critical card of a safety rule goes away."""
    m = model()
    safety = m.safety_rules()
    failures = []
    done = set()
    before_cards: dict[tuple[str, str], list[dict]] = {}
    for k, (read, place, system, code) in enumerate(added_codes()):
        if read.valueset in done:
            continue
        done.add(read.valueset)
        for name, record in sorted(RECORDS.items()):
            resource = build(place, read.element, system, code, k)
            resource["subject"] = {"reference": f"Patient/{record[0]['id']}"}
            for hook in SAFE_HOOKS:
                drafts = drafts_for(record, hook)
                path = f"/cds-services/lbp-{hook}-{variant}"
                if (name, hook) not in before_cards:
                    before = cds.post(path, hook_body(hook, record, drafts))
                    figures.count("monotonicity: CDS service calls")
                    assert before.status_code == 200, before.get_json()
                    before_cards[(name, hook)] = before.get_json()["cards"]
                after = cds.post(path, hook_body(hook, record + [resource], drafts))
                figures.count("monotonicity: CDS service calls")
                if after.status_code != 200:
                    failures.append(f"{name} + {code} {hook}: status {after.status_code}")
                    continue
                kept = {(frozenset(card_rules(c)), c["indicator"]) for c in after.get_json()["cards"]}
                for c in before_cards[(name, hook)]:
                    rules = card_rules(c)
                    if c["indicator"] in ("warning", "critical") and rules & safety:
                        if (frozenset(rules), c["indicator"]) not in kept:
                            failures.append(f"{name} + {system}|{code} {hook}: the {c['indicator']} card "
                                            f"{sorted(rules)} went away")
    assert not failures, "\n".join(failures[:40])
