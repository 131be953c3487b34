"""Every code of every ValueSet the rules read, in every documented system form and every place of a record: the
feature that reads it, the rule actions it decides in each variant, and (for a subset) the CDS cards.

What is generated from what (docs/proof-tests.md):
- the ValueSets and the places come from the Library: each `memberOf()` names a ValueSet, the `%collection`
  whose `where()` encloses it (activeConditions, conditions, observations …) and the element it tests;
- the codes from each ValueSet's expansion, the system forms from docs/terminology.md (`records.forms`);
- whether a place counts from the data contract (`records.SOURCE_PLACES`: resolved and entered-in-error
  Conditions, stopped medications … do not count where the rule reads active ones);
- the rule actions a code must fire: those of the variant's PlanDefinitions that answer the hook, carry a
  rule id the ValueSet names in its `useContext`, and whose own condition asks `%X = true` of a feature X
  that reads the code's feature and asks no `.empty()` (the reference patient lacks no fact); less the few
  in `NOT_DECIDED_BY_THE_CODE`, which need more facts than the code (each with the reason).
"""

from __future__ import annotations

import re

import pytest

from app.reasoning import compile_expression, evaluate_features, patient_context, to_json
from tests.cds.patients import TODAY
from tests.proof import figures
from tests.proof.model import Model, RuleAction, knowledge, model, variants
from tests.proof.records import (
    HOOK_OF_SOURCE,
    SOURCE_PLACES,
    applied_ids,
    apply,
    base_record,
    build,
    card_rules,
    categories,
    forms,
    hook_body,
)

# (feature that reads the code, rule action id) -> why the code alone does not decide the action on the
# reference patient 'clean' (4 weeks of pain, no treatment, every flag answered no, NRS 5)
NOT_DECIDED_BY_THE_CODE = {
    ("redFlagRf4Record", "referral-indication-rn3"): "RN3 from previous cancer also needs rest pain or weight loss",
    ("basicTreatmentProcedures", "consider-specialist-referral"): "needs 6 weeks of treatment without improvement",
    ("basicTreatmentProcedures", "mri-indicated-i2"): "needs 6 weeks of treatment without improvement",
    ("basicTreatmentProcedures", "kva-gb021-missing"): "fires for physiotherapy codes other than KVÅ GB021 only",
    ("sciaticaRecord", "referral-indication-rn1"): "needs > 6 weeks of severe pain not subsiding",
    ("spinalStenosis", "referral-indication-rn4"): "needs > 12 weeks and dominant leg pain",
    ("spinalStenosis", "referral-indication-rn7"): "needs radicular pain without improvement",
    ("discHerniation", "referral-indication-rn7"): "needs radicular pain without improvement",
    ("draftedLumbarMri", "mri-contraindicated"): "needs a contraindication to MRI",
    ("draftedLumbarXray", "imaging-without-indication-skane"): "Skåne answers a plain X-ray with I4 instead",
    ("draftedLumbarXray", "xray-fracture-question-ct"): "needs trauma (RF3)",
    ("draftedOrthopaedicReferrals", "acute-signs-not-assessed"): "needs unknown acute signs; 'clean' answers them",
    ("draftedSpecialistReferralNonAcute", "referral-before-adequate-period"): "needs basic treatment recorded",
    ("draftedSpecialistReferralNonAcute", "referral-improvement-unknown"): "needs basic treatment recorded",
    ("draftedSpecialistReferralNonAcute", "eight-weeks-primary-sector"): "needs basic treatment under 8 weeks",
    ("draftedR0Referral", "referral-before-adequate-period"): "needs basic treatment recorded",
    ("draftedR0Referral", "referral-improvement-unknown"): "needs basic treatment recorded",
    ("draftedR0Referral", "basic-treatment-continues-while-waiting"): "needs 6 weeks of treatment without improvement",
    ("basicTreatmentProcedures", "long-term-pain-pathway"): "needs complex long-lasting pain without improvement",
    ("basicTreatmentProcedures", "backupp-mri-after-4-weeks"): "needs 4 weeks of treatment without improvement",
    ("tobaccoUse", "lifestyle-support-long-lasting-pain"): "needs complex long-lasting pain",
    ("basicTreatmentProcedures", "no-improvement-municipality-or-hospital"): "needs eight weeks in the primary sector "
                                                                              "without clear improvement",
    ("activeAddOnMedication", "add-on-without-effect-review"): "needs no clear improvement with persisting pain",
    ("acuteSignRa4Record", "suspected-spondylitis-assess-today"): "fires on the patient's answer alone; a coded "
                                                                   "spondylitis turns it into the acute referral",
    ("draftedMuscleRelaxant", "muscle-relaxant-not-acute"): "needs pain of 6 weeks or more",
    ("draftedTca", "antidepressant-radicular"): "needs radicular pain known",
    ("draftedTca", "antidepressant-without-radicular-pain"): "needs radicular pain known",
    ("draftedSnri", "antidepressant-radicular"): "needs radicular pain known",
    ("draftedSnri", "antidepressant-without-radicular-pain"): "needs radicular pain known",
}
# the LBP codes decide scope (S1), which the reference patient has already: no action turns on them alone
SCOPE_FEATURES = {"lbpConditions"}


def expected_actions(m: Model, variant: str, feature: str, valueset: str, hook: str) -> list[RuleAction]:
    """The rule actions of `variant` a code of `valueset` read by `feature` must fire for the reference patient."""
    if feature in SCOPE_FEATURES:
        return []
    rules = m.valueset_rules(valueset)
    readers = m.dependants(feature) - {"inScope"}
    out = []
    for action in m.actions_reading(variant, feature, hook):
        if not set(action.rules) & rules or (feature, action.id) in NOT_DECIDED_BY_THE_CODE:
            continue
        own = action.conditions[-1]
        if ".empty()" in own:  # asks for facts the record lacks; the reference patient has them
            continue
        if any(re.search(rf"%{name} = true\b", own) for name in readers):
            out.append(action)
    return out


def positive(value: list) -> bool:
    return bool(value) and value != [False]


def _evaluate(kb, record, drafts, hook, only=None):
    """The case features (`only` those and what they read) for a record, as the service evaluates them."""
    patient = next(r for r in record if r["resourceType"] == "Patient")
    context = patient_context(record, subject=patient, today=TODAY, draft_orders=drafts,
                              selections=drafts if hook == "order-sign" else [], terminology=kb.terminology)
    return evaluate_features(kb, model().library, context, only=only)


# ValueSets a rule reads to exclude a resource (a value saying the finding is absent): a code of theirs makes the
# reading feature not positive; test_an_absent_finding_is_never_the_red_flag proves each of their codes
EXCLUDING_VALUESETS = {"https://lbp-pathway.org/fhir/ValueSet/finding-absent"}
VALUESETS = [v for v in model().valuesets_read() if v not in EXCLUDING_VALUESETS]


# the data contract's "where it is read from", per ValueSet: the resource types and draft orders the Library must
# read the ValueSet's codes from (recorded orders and sick-leave certificates: docs/recording-for-indicators.md)
CONTRACT_PLACES = {
    "lbp-conditions": {"Condition"},
    "previous-cancer": {"Condition"},
    "inflammatory-infectious": {"Condition"},
    "infectious-spondylitis": {"Condition"},
    "systemic-steroids": {"MedicationStatement", "MedicationRequest"},
    "drug-abuse": {"Condition"},
    "weight-loss-reduced-condition": {"Condition", "Observation"},
    "structural-deformity": {"Condition"},
    "back-trauma-fracture": {"Condition"},
    "cauda-equina": {"Condition"},
    "physiotherapy-procedures": {"Procedure"},
    "lumbar-mri": {"DiagnosticReport", "ImagingStudy", "Procedure", "draft ServiceRequest", "ServiceRequest"},
    "lumbar-imaging": {"ServiceRequest"},
    "lumbar-ct": {"draft ServiceRequest"},
    "lumbar-xray": {"draft ServiceRequest"},
    "orthopaedic-referral": {"draft ServiceRequest", "draft ServiceRequest performerType", "ServiceRequest"},
    "sick-leave-diagnoses": {"Observation", "Condition"},
    "opioids": {"draft MedicationRequest"},
    "paracetamol": {"draft MedicationRequest"},
    "gabapentinoids": {"draft MedicationRequest"},
    "nsaids": {"draft MedicationRequest"},
    "muscle-relaxants": {"draft MedicationRequest"},
    "tca": {"draft MedicationRequest"},
    "snri": {"draft MedicationRequest"},
}


def places_read(valueset_id: str) -> set[str]:
    """The resource types (and draft orders) the Library reads a ValueSet's codes from."""
    out: set[str] = set()
    for read in model().reads:
        if read.valueset.rsplit("/", 1)[-1] != valueset_id:
            continue
        if read.source == "selections":
            kind = "MedicationRequest" if read.element.startswith("medication") else "ServiceRequest"
            out.add(f"draft {kind}" + (" performerType" if read.element == "performerType" else ""))
        else:
            out.update(p.resource_type for p in SOURCE_PLACES[read.source])
    return out


@pytest.mark.parametrize("valueset_id", sorted(CONTRACT_PLACES))
def test_the_library_reads_every_place_the_contract_names(valueset_id):
    missing = CONTRACT_PLACES[valueset_id] - places_read(valueset_id)
    assert not missing, f"the data contract reads {valueset_id} from {sorted(missing)} too; the Library does not"


def test_the_library_reads_valuesets_from_places_the_contract_names():
    m = model()
    assert VALUESETS, "the Library reads no ValueSet"
    unknown = sorted({r.source for r in m.reads} - set(SOURCE_PLACES))
    assert unknown == [], f"the Library reads codes from collections the contract table does not cover: {unknown}"


@pytest.mark.parametrize("valueset", VALUESETS, ids=[v.rsplit("/", 1)[-1] for v in VALUESETS])
def test_every_code_in_every_form_and_place(valueset):
    """Features and rule actions in process, for every code × form × place × variant."""
    m, kb = model(), knowledge()
    reads = [r for r in m.reads if r.valueset == valueset]
    codes = categories(m.valueset(valueset))
    assert codes, f"{valueset} lists no code"
    base = base_record()
    failures: list[str] = []
    base_values: dict[str, dict] = {}
    base_selected: dict[tuple[str, str], int] = {}
    base_applied: dict[tuple[str, str], set[str]] = {}
    for read in reads:
        hook = HOOK_OF_SOURCE[read.source]
        selection = compile_expression(read.selection, artifact="test", path=read.feature)
        decided_by_sources = m.depends[read.feature] <= set(SOURCE_PLACES)
        if hook not in base_values:
            base_values[hook] = _evaluate(kb, base, [], hook).values()
        only = [read.feature, read.source]
        base_selected[(hook, read.selection)] = len(to_json(_evaluate(kb, base, [], hook, only).evaluate(selection)))
        expected = {v: expected_actions(m, v, read.feature, valueset, hook) for v in variants()}
        for i, (system, code) in enumerate(codes):
            all_forms = forms(system, code)
            counting = [p for p in SOURCE_PLACES[read.source] if p.counts]
            not_counting = [p for p in SOURCE_PLACES[read.source] if not p.counts]
            for place in SOURCE_PLACES[read.source]:
                for n, (form, form_system, form_code) in enumerate(all_forms):
                    resource = build(place, read.element, form_system, form_code, n, read.feature)
                    record, drafts = (base, [resource]) if read.source == "selections" else (base + [resource], [])
                    where = f"{read.feature} {form_system}|{form_code} ({form}) in {place.name}"
                    values = _evaluate(kb, record, drafts, hook, only)  # FeatureValues
                    figures.count("codes: feature evaluations (code x form x place)")
                    errors = [i.text for i in values.issues if i.severity in ("error", "fatal")]
                    if errors:
                        failures.append(f"{where}: evaluation error {errors[0][:300]}")
                        continue
                    # the where() of the memberOf() selects one item more than on the reference patient
                    chosen = len(to_json(values.evaluate(selection))) > base_selected[(hook, read.selection)]
                    if chosen != place.counts:
                        failures.append(f"{where}: {read.source}.where(...) selects it: {chosen}, "
                                        f"the contract says {place.counts}")
                    if decided_by_sources:
                        value = values.value(read.feature)
                        if place.counts and not positive(value):
                            failures.append(f"{where}: %{read.feature} = {value}, expected a positive value")
                        if not place.counts and value != base_values[hook][read.feature]:
                            failures.append(f"{where}: %{read.feature} = {value} changed by a place that "
                                            "does not count")
                    # the rule actions in every variant: for the first code every form (in the first place
                    # that counts) and every place (in the first form); for the others one form and two places,
                    # one that counts and one that does not, both rotating over the codes
                    if i == 0:
                        if n > 0 and place is not counting[0]:
                            continue
                    elif n != i % len(all_forms) or place not in (counting[i % len(counting)],
                                                                  not_counting[i % len(not_counting)]
                                                                  if not_counting else None):
                        continue
                    for variant, spec in variants().items():
                        care_plan, issues = apply(kb, spec["pathway"], record, hook, drafts)
                        figures.count("codes: $apply per variant")
                        errors = [i.text for i in issues if i.severity in ("error", "fatal")]
                        if errors:
                            failures.append(f"{where}, {variant}: $apply error {errors[0][:300]}")
                            continue
                        ids = applied_ids(care_plan)
                        if (variant, hook) not in base_applied:
                            base_applied[(variant, hook)] = applied_ids(apply(kb, spec["pathway"], base, hook)[0])
                        for action in expected[variant]:
                            if place.counts and action.id not in ids:
                                failures.append(f"{where}, {variant}: rule action {action.id} "
                                                f"({', '.join(action.rules)}) did not fire")
                            if not place.counts and action.id in ids and action.id not in base_applied[
                                    (variant, hook)]:
                                failures.append(f"{where}, {variant}: rule action {action.id} fired for a place "
                                                "the contract does not count")
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:40])


def cds_cases() -> list[tuple[str, str, str, str]]:
    """(valueset, feature, variant, place name): per memberOf(), the first code in a counting place, each variant."""
    out = []
    for read in model().reads:
        if read.valueset in EXCLUDING_VALUESETS:
            continue
        for variant in variants():
            out.append((read.valueset, read.feature, read.source, read.element, variant))
    return sorted(set(out))


CDS_CASES = cds_cases()


@pytest.mark.parametrize(("valueset", "feature", "source", "element", "variant"), CDS_CASES,
                         ids=[f"{c[1]}-{c[0].rsplit('/', 1)[-1]}-{c[3] or 'item'}-{c[4]}" for c in CDS_CASES])
def test_cards_through_the_cds_service(cds, valueset, feature, source, element, variant):
    """The first code of the ValueSet through the CDS service, in every documented form (in the first place that
    counts) and in every place (in the first form): status 200 and a card with the rule's indicator for every
    expected rule action; no new card for it from a place that does not count."""
    m = model()
    hook = HOOK_OF_SOURCE[source]
    system, code = categories(m.valueset(valueset))[0]
    expected = expected_actions(m, variant, feature, valueset, hook)
    base = base_record()
    r = cds.post(f"/cds-services/lbp-{hook}-{variant}", hook_body(hook, base))
    assert r.status_code == 200, r.get_json()
    before = {(frozenset(card_rules(c)), c["indicator"]) for c in r.get_json()["cards"]}
    failures = []
    first_counting = next(p for p in SOURCE_PLACES[source] if p.counts)
    for n, (form, form_system, form_code) in enumerate(forms(system, code)):
        for place in SOURCE_PLACES[source]:
            if n > 0 and place is not first_counting:
                continue  # every form in the first place that counts; every place in the first form
            resource = build(place, element, form_system, form_code, n, feature)
            record, drafts = (base, [resource]) if source == "selections" else (base + [resource], [])
            r = cds.post(f"/cds-services/lbp-{hook}-{variant}", hook_body(hook, record, drafts))
            figures.count("codes: CDS service calls")
            where = f"{form_system}|{form_code} ({form}) in {place.name}"
            if r.status_code != 200:
                failures.append(f"{where}: status {r.status_code} {r.get_data(as_text=True)[:200]}")
                continue
            cards = {(frozenset(card_rules(c)), c["indicator"]) for c in r.get_json()["cards"]}
            for action in expected:
                card = (frozenset(action.rules), action.indicator)
                if place.counts and card not in cards:
                    failures.append(f"{where}: no {action.indicator} card for {action.id} ({', '.join(action.rules)})")
                if not place.counts and card in cards and card not in before:
                    failures.append(f"{where}: a {action.indicator} card for {action.id} from a place that "
                                    "does not count")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("valueset", VALUESETS, ids=[v.rsplit("/", 1)[-1] for v in VALUESETS])
def test_every_code_of_a_valueset_at_once(valueset):
    """A record holding every code of the ValueSet together, twice (the WHO and the SKS form or two codings),
    in every place that counts: no expression may assume one such resource (a singleton criterion, a
    comparison of collections), and the feature is positive."""
    m, kb = model(), knowledge()
    failures = []
    for read in [r for r in m.reads if r.valueset == valueset]:
        hook = HOOK_OF_SOURCE[read.source]
        added = []
        for system, code in categories(m.valueset(valueset)):
            all_forms = forms(system, code)
            for form in {all_forms[0], all_forms[-1]}:
                for place in SOURCE_PLACES[read.source]:
                    if place.counts:
                        added.append(build(place, read.element, form[1], form[2], len(added), read.feature))
        base = base_record()
        record, drafts = (base, added) if read.source == "selections" else (base + added, [])
        values = _evaluate(kb, record, drafts, hook)
        figures.count("codes: every code of a ValueSet in one record")
        errors = [i.text for i in values.issues if i.severity in ("error", "fatal")]
        if errors:
            failures.append(f"{read.feature} with {len(added)} resources: {errors[0][:300]}")
        elif m.depends[read.feature] <= set(SOURCE_PLACES) and not positive(values.value(read.feature)):
            failures.append(f"{read.feature} with {len(added)} resources: not positive")
        for variant, spec in variants().items():
            care_plan, issues = apply(kb, spec["pathway"], record, hook, drafts)
            errors = [i.text for i in issues if i.severity in ("error", "fatal")]
            if errors:
                failures.append(f"{read.feature} with {len(added)} resources, {variant}: {errors[0][:300]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("valueset", sorted(EXCLUDING_VALUESETS), ids=lambda v: v.rsplit("/", 1)[-1])
def test_an_absent_finding_is_never_the_red_flag(valueset):
    """An Observation coded for weight loss (RF8) whose value or interpretation says absent is not RF8; the same
    Observation with a present value is (the contrast proves the exclusion, not a missing read)."""
    m, kb = model(), knowledge()
    rf8 = m.valueset("https://lbp-pathway.org/fhir/ValueSet/weight-loss-reduced-condition")
    flag_system, flag_code = categories(rf8)[0]
    base = base_record()
    place = next(p for p in SOURCE_PLACES["observations"] if p.counts)
    present = build(place, "code", flag_system, flag_code)
    assert positive(_evaluate(kb, base + [present], [], "patient-view").value("redFlagRf8Record"))
    for n, (system, code) in enumerate(categories(m.valueset(valueset))):
        for element in ("valueCodeableConcept", "interpretation"):
            absent = build(place, "code", flag_system, flag_code, n)
            concept = {"coding": [{"system": system, "code": code}]}
            absent[element] = [concept] if element == "interpretation" else concept
            value = _evaluate(kb, base + [absent], [], "patient-view").value("redFlagRf8Record")
            assert not positive(value), f"{system}|{code} as {element}: RF8 = {value}"
    boolean_no = build(place, "code", flag_system, flag_code)
    boolean_no["valueBoolean"] = False
    assert not positive(_evaluate(kb, base + [boolean_no], [], "patient-view").value("redFlagRf8Record"))
