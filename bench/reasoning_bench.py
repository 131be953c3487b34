"""Cost of evaluating all rules of one pathway variant for one patient (≈ 50 resources), and where it goes.

Prints the median and best time of `PlanDefinition/$apply` (case features, every condition, dynamic
values, ActivityDefinitions), the cost of each case feature and each rule condition (slowest first),
and, measured beside it in the same run, fhirpathpy interpreting the same case features: the ratio
is what to compare across machines. Prints figures, asserts nothing.

    .venv/bin/python bench/reasoning_bench.py [--variant se|skane|midtjylland] [--runs 200] [--synthea]

With --synthea the record is the first resources of a Synthea patient from ../shared/data (when
present) instead of the built-in synthetic one.
"""

from __future__ import annotations

import argparse
import bz2
import gc
import json
import os
import statistics
import sys
import time
import timeit
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.fhirpath import FHIRPATH, singleton_boolean  # noqa: E402
from app.reasoning.apply import apply_plan_definition  # noqa: E402
from app.reasoning.features import evaluate_features, patient_context  # noqa: E402
from app.reasoning.knowledge import KnowledgeBase  # noqa: E402

BASE = "https://lbp-pathway.org/fhir"
TODAY = date(2025, 3, 1)
ICD = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"


def ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def synthetic_record() -> list[dict]:
    """A primary-care record of 50 resources: the episode, other diagnoses, ratings, vitals, drugs, forms."""
    active = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
    }
    ref = {"reference": "Patient/p1"}
    record: list[dict] = [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1958-09-14", "gender": "female"}
    ]
    record.append(
        {
            "resourceType": "Condition",
            "id": "lbp",
            "clinicalStatus": active,
            "subject": ref,
            "code": {"coding": [{"system": ICD, "code": "M54.5"}]},
            "onsetDateTime": ago(50),
        }
    )
    for i, code in enumerate(
        [
            "I10",
            "E11.9",
            "J45.9",
            "K21.0",
            "F32.1",
            "M17.1",
            "E78.0",
            "N39.0",
            "H52.1",
            "L40.0",
            "G43.9",
            "C50.9",
            "Z85.3",
            "M81.0",
        ]
    ):
        record.append(
            {
                "resourceType": "Condition",
                "id": f"c{i}",
                "clinicalStatus": active,
                "subject": ref,
                "code": {"coding": [{"system": ICD, "code": code}]},
                "onsetDateTime": ago(400 + 37 * i),
            }
        )
    for i in range(6):
        record.append(
            {
                "resourceType": "Observation",
                "id": f"nrs{i}",
                "status": "final",
                "subject": ref,
                "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
                "valueInteger": 7 - i % 3,
                "effectiveDateTime": ago(48 - 8 * i),
            }
        )
    for i in range(12):
        record.append(
            {
                "resourceType": "Observation",
                "id": f"vital{i}",
                "status": "final",
                "subject": ref,
                "code": {
                    "coding": [{"system": LOINC, "code": ["8480-6", "8462-4", "29463-7", "8867-4"][i % 4]}]
                },
                "valueQuantity": {
                    "value": 60 + i,
                    "unit": "1",
                    "system": "http://unitsofmeasure.org",
                    "code": "1",
                },
                "effectiveDateTime": ago(5 * i),
            }
        )
    record.append(
        {
            "resourceType": "Observation",
            "id": "sbt",
            "status": "final",
            "subject": ref,
            "code": {"coding": [{"system": f"{BASE}/CodeSystem/lbp-observation", "code": "sbt-risk"}]},
            "valueCodeableConcept": {
                "coding": [{"system": f"{BASE}/CodeSystem/lbp-risk-category", "code": "medium"}]
            },
            "effectiveDateTime": ago(45),
        }
    )
    for i, atc in enumerate(["C09AA05", "A10BA02", "R03AC02", "A02BC01", "N06AB06", "M01AE01"]):
        record.append(
            {
                "resourceType": "MedicationStatement",
                "id": f"m{i}",
                "status": "active",
                "subject": ref,
                "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}]},
            }
        )
    record.append(
        {
            "resourceType": "Procedure",
            "id": "pt",
            "status": "completed",
            "subject": ref,
            "code": {"coding": [{"system": "urn:oid:1.2.752.116.1.3.2.1.4", "code": "GB021"}]},
            "performedDateTime": ago(44),
        }
    )
    for i in range(6):
        record.append(
            {
                "resourceType": "Encounter",
                "id": f"e{i}",
                "status": "finished",
                "subject": ref,
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "period": {"start": ago(50 - 8 * i)},
            }
        )
    record.append(
        {
            "resourceType": "QuestionnaireResponse",
            "id": "rf",
            "questionnaire": f"{BASE}/Questionnaire/lbp-red-flags",
            "status": "completed",
            "subject": ref,
            "authored": ago(49),
            "item": [{"linkId": f"RF{i}", "answer": [{"valueBoolean": False}]} for i in range(1, 10)]
            + [{"linkId": f"RA{i}", "answer": [{"valueBoolean": False}]} for i in range(1, 5)],
        }
    )
    record.append(
        {
            "resourceType": "QuestionnaireResponse",
            "id": "intake",
            "questionnaire": f"{BASE}/Questionnaire/lbp-intake",
            "status": "completed",
            "subject": ref,
            "authored": ago(49),
            "item": [
                {"linkId": "pain-duration-weeks", "answer": [{"valueInteger": 1}]},
                {"linkId": "sick-leave", "answer": [{"valueBoolean": True}]},
                {"linkId": "sick-leave-weeks", "answer": [{"valueInteger": 2}]},
                {"linkId": "radiation-below-knee", "answer": [{"valueBoolean": False}]},
                {"linkId": "mr-contraindication", "answer": [{"valueBoolean": False}]},
            ],
        }
    )
    record.append(
        {
            "resourceType": "DiagnosticReport",
            "id": "dr1",
            "status": "final",
            "subject": ref,
            "code": {"coding": [{"system": LOINC, "code": "24558-9"}]},
            "effectiveDateTime": ago(900),
        }
    )
    return record


def synthea_record(limit: int = 50) -> list[dict] | None:
    folder = ROOT.parent / "shared" / "data" / "synthea"
    files = (
        sorted(p for p in folder.glob("*.json.bz2") if "Information" not in p.name) if folder.is_dir() else []
    )
    if not files:
        return None
    bundle = json.loads(bz2.decompress(files[0].read_bytes()))
    resources = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    wanted = ("Condition", "Observation", "MedicationRequest", "Procedure", "Encounter", "DiagnosticReport")
    picked = [r for r in resources if r["resourceType"] in wanted][: limit - 1]
    for r in [patient, *picked]:
        r.setdefault("id", r.get("id") or str(id(r)))
    return [patient, *picked]


def load_artifacts() -> list[dict]:
    folders = [ROOT / "valuesets", ROOT / "questionnaires", ROOT / "plandefinitions"]
    files = [p for f in folders if f.is_dir() for p in sorted(f.glob("*.json"))]
    if not any(p.name.startswith("Library-") for p in files):
        files = sorted((ROOT / "tests" / "data" / "reasoning").glob("*.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def fhirpathpy_features(kb: KnowledgeBase, library, context) -> float:
    """Seconds fhirpathpy takes to interpret the same case features once (the baseline)."""
    import fhirpathpy
    from fhirpathpy.engine.nodes import FP_DateTime
    from fhirpathpy.models import models

    terminology = kb.terminology

    def member_of(inputs, url):
        return [terminology.member_of(getattr(i, "data", i), url) for i in inputs]

    options = {"userInvocationTable": {"memberOf": {"fn": member_of, "arity": {1: ["String"]}}}}
    env = {
        "patient": context.patient,
        "today": FP_DateTime(TODAY.isoformat()),
        "draftOrders": [],
        "selections": [],
    }
    started = time.perf_counter()
    for feature in library.features:
        try:
            env[feature.name] = fhirpathpy.evaluate(
                context.bundle, feature.expression.text, dict(env), models["r4"], options
            )
        except Exception:
            env[feature.name] = []
    return time.perf_counter() - started


def rule_conditions(kb: KnowledgeBase, plan) -> list[tuple[str, object]]:
    """(label, compiled condition) of every action condition below the pathway, nested rules included."""
    found: list[tuple[str, object]] = []
    seen: set[str] = set()

    def visit(artifact, actions, where):
        for i, action in enumerate(actions or []):
            path = f"{where}[{i}]"
            for j, condition in enumerate(action.get("condition", []) or []):
                if (condition.get("expression") or {}).get("language") == FHIRPATH:
                    compiled = artifact.expressions.get(f"{path}.condition[{j}].expression.expression")
                    codes = [
                        c["code"] for cc in action.get("code", []) for c in cc["coding"] if c.get("code")
                    ]
                    label = f"{artifact.id}#{action.get('id', path)} ({', '.join(codes[:3])})"
                    found.append((label, compiled))
            target = kb.artifact(action["definitionCanonical"]) if action.get("definitionCanonical") else None
            if target is not None and target.resource_type == "PlanDefinition" and target.label not in seen:
                seen.add(target.label)
                visit(target, target.resource.get("action"), "PlanDefinition.action")
            visit(artifact, action.get("action"), f"{path}.action")

    visit(plan, plan.resource.get("action"), "PlanDefinition.action")
    return found


def hooks_against_every_feature(kb: KnowledgeBase, plan, library, record: list[dict], subject: dict, runs: int) -> None:
    """Each hook's $apply as the CDS service runs it (case features computed when a rule first reads them),
    beside the same $apply computing up front the features its triggered rules name (the static pruning
    alone) and computing every case feature: the ratios are the gains of laziness and pruning."""
    import app.reasoning.apply as apply_module
    from app.reasoning.needs import features_read
    from tests.cds.orders import ORDERS

    every = {f.name for f in library.features} if library else set()
    drafts = [ORDERS["opioid"](subject["id"]), ORDERS["mri"](subject["id"])]
    print(f"\nper hook: features read on demand (lazy) | computed up front, pruned to what the triggered rules "
          f"name | every case feature ({len(every)}) up front; median wall / cpu ms of {runs} runs:")
    for hook in ("patient-view", "order-select", "order-sign"):
        orders = drafts if hook != "patient-view" else []
        timings = {}
        for label, chooser, eager in (("every feature", lambda *_: every, True), ("pruned", features_read, True),
                                      ("lazy", features_read, False)):

            def once(hook: str = hook, orders: list = orders, eager: bool = eager) -> None:
                apply_plan_definition(kb, plan, subject=subject, record=record, today=TODAY, trigger=hook,
                                      draft_orders=orders, eager_features=eager,
                                      selections=[f"{o['resourceType']}/{o['id']}" for o in orders])

            apply_module.features_read = chooser
            try:
                once()
                samples, cpu = [], []
                for _ in range(runs):
                    t, c = time.perf_counter(), time.process_time()
                    once()
                    samples.append((time.perf_counter() - t) * 1000)
                    cpu.append((time.process_time() - c) * 1000)
            finally:
                apply_module.features_read = features_read
            timings[label] = (statistics.median(samples), statistics.median(cpu))
        read = len(features_read(kb, plan, hook))
        lazy, pruned, whole = timings["lazy"], timings["pruned"], timings["every feature"]
        print(f"  {hook:<13} lazy {lazy[0]:5.2f} / {lazy[1]:5.2f} ms | pruned {pruned[0]:5.2f} / {pruned[1]:5.2f} ms "
              f"({read} features named) | every feature {whole[0]:5.2f} / {whole[1]:5.2f} ms | lazy / every "
              f"{lazy[0] / whole[0]:.2f} (cpu {lazy[1] / whole[1]:.2f}), lazy / pruned {lazy[0] / pruned[0]:.2f}"
              f" | target <= 3 ms: {'met' if lazy[0] <= 3 else 'not met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="se")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--synthea", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    started = time.perf_counter()
    kb = KnowledgeBase(load_artifacts())
    loaded_ms = (time.perf_counter() - started) * 1000
    plan = kb.artifact(f"{BASE}/PlanDefinition/lbp-pathway-{args.variant}", "PlanDefinition") or next(
        kb.artifact(r) for r in kb.resources("PlanDefinition") if r.get("library")
    )
    library = kb.library_for(plan.resource)
    record = (synthea_record() if args.synthea else None) or synthetic_record()
    subject = next(r for r in record if r["resourceType"] == "Patient")

    def one_apply():
        return apply_plan_definition(kb, plan, subject=subject, record=record, today=TODAY)

    cold_started = time.perf_counter()
    care_plan, issues = one_apply()
    cold_ms = (time.perf_counter() - cold_started) * 1000
    for _ in range(5):
        one_apply()
    gc.collect()
    wall, cpu = [], []
    for _ in range(args.runs):
        w, c = time.perf_counter(), time.process_time()
        one_apply()
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)

    context = patient_context(record, subject=subject, today=TODAY, terminology=kb.terminology)
    feature_ms: dict[str, list[float]] = defaultdict(list)
    features_total: list[float] = []
    conditions = rule_conditions(kb, plan)
    rule_ms: dict[str, list[float]] = defaultdict(list)
    for _ in range(max(args.runs // 4, 10)):
        t = time.perf_counter()
        values = evaluate_features(kb, library, context)
        features_total.append((time.perf_counter() - t) * 1000)
        for name, ms in values.timings_ms.items():
            feature_ms[name].append(ms)
        for label, compiled in conditions:
            if compiled is None:
                continue
            t = time.perf_counter()
            try:
                singleton_boolean(values.evaluate(compiled))
            except Exception:
                pass
            rule_ms[label].append((time.perf_counter() - t) * 1000)

    baseline = min(fhirpathpy_features(kb, library, context) for _ in range(3)) * 1000
    ours_features = min(features_total)

    group = care_plan["contained"][0]
    count = 0
    stack = list(group.get("action", []))
    while stack:
        action = stack.pop()
        count += 1
        stack.extend(action.get("action", []))
    median = statistics.median(wall)
    p90 = sorted(wall)[int(len(wall) * 0.9)]
    calibration = min(timeit.repeat("sum(range(1000))", number=1000, repeat=5)) * 1000
    feature_sum = sum(statistics.median(v) for v in feature_ms.values())
    rule_sum = sum(statistics.median(v) for v in rule_ms.values())
    features_count = len(library.features) if library else 0
    print(
        f"machine: sum(range(1000)) takes {calibration:.1f} us here (about 9 us on a 2023 laptop); "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(
        f"artifacts: {len(kb.resources())} loaded in {loaded_ms:.0f} ms; pathway {plan.label}; "
        f"library {library.label if library else '-'} ({features_count} features); {len(conditions)} rule conditions"
    )
    print(
        f"record: {len(record)} resources ({'Synthea' if args.synthea else 'synthetic'}); result: {count} actions, "
        f"{len(care_plan['contained']) - 1} contained resources, {len(issues)} issues"
    )
    print(
        f"$apply, all rules: median {median:.2f} ms, best {min(wall):.2f} ms, p90 {p90:.2f} ms, "
        f"cpu median {statistics.median(cpu):.2f} ms over {args.runs} runs; first (cold) run {cold_ms:.1f} ms; "
        f"target <= 5 ms median: {'met' if median <= 5 else 'not met'}"
    )
    print(
        f"case features alone: best {ours_features:.2f} ms; fhirpathpy interpreting the same features: "
        f"{baseline:.1f} ms (x{baseline / ours_features:.0f})"
    )
    hooks_against_every_feature(kb, plan, library, record, subject, max(args.runs // 2, 20))
    print(f"\nslowest case features (median ms over {len(features_total)} runs; sum {feature_sum:.2f}):")
    for name, samples in sorted(feature_ms.items(), key=lambda kv: -statistics.median(kv[1]))[: args.top]:
        print(f"  {statistics.median(samples):7.3f}  {name}")
    print(f"\nslowest rule conditions (median ms; sum {rule_sum:.2f}):")
    for label, samples in sorted(rule_ms.items(), key=lambda kv: -statistics.median(kv[1]))[: args.top]:
        print(f"  {statistics.median(samples):7.3f}  {label}")


if __name__ == "__main__":
    main()
