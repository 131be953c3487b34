"""The case-feature Library compiles and evaluates over small hand-made records with fhirpathpy (R4 model).

Features are evaluated in declaration order, each earlier result passed on as a %-variable, with
%today fixed; memberOf() is a small helper over the shipped ValueSet expansions with the prefix
semantics of the artifact conventions (ICD-10 WHO / ICD-10-SE / SKS and ATC by category prefix).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import FP_DateTime
from fhirpathpy.models import models

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "plandefinitions" / "Library-lbp-case-features.json"
FEATURE_EXT = "https://lbp-pathway.org/fhir/StructureDefinition/case-feature"
BASE = "https://lbp-pathway.org/fhir"
TODAY = date(2025, 3, 1)

ICD_WHO = "http://hl7.org/fhir/sid/icd-10"
ICD_SE = "urn:oid:1.2.752.116.1.1.1.1.3"
SKS = "urn:oid:1.2.208.176.2.4"
ATC = "http://www.whocc.no/atc"
# system -> (family, leading marker the system puts before family codes)
PREFIX_SYSTEMS = {ICD_WHO: ("icd-10", ""), ICD_SE: ("icd-10", ""), SKS: ("icd-10", "D"), ATC: ("atc", "")}


# --- memberOf over the shipped expansions -------------------------------------------------------
def _load_expansions() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for path in sorted((ROOT / "valuesets").glob("ValueSet-*.json")):
        vs = json.loads(path.read_text(encoding="utf-8"))
        out[vs["url"]] = [
            (c.get("system", ""), c["code"]) for c in vs.get("expansion", {}).get("contains", [])
        ]
    return out


EXPANSIONS = _load_expansions()


def _key(system: str, code: str) -> tuple[str, str, bool]:
    """(family or system, normalised code, prefix semantics?)"""
    if system in PREFIX_SYSTEMS:
        family, marker = PREFIX_SYSTEMS[system]
        norm = code.replace(".", "").upper()
        if marker and norm.startswith(marker):
            norm = norm[len(marker) :]
        return family, norm, True
    return system, code, False


def _codings(item: Any) -> Iterable[tuple[str, str]]:
    data = getattr(item, "data", item)
    if isinstance(data, str):
        yield "", data
    elif isinstance(data, dict):
        if "coding" in data:
            for coding in data.get("coding") or []:
                if coding.get("code"):
                    yield coding.get("system", ""), coding["code"]
        elif data.get("code"):
            yield data.get("system", ""), data["code"]


def member_of(inputs: list[Any], url: str) -> list[bool]:
    assert url in EXPANSIONS, f"memberOf(): ValueSet {url} is not shipped"
    if not inputs:
        return []
    members = [_key(s, c) for s, c in EXPANSIONS[url]]
    for item in inputs:
        for system, code in _codings(item):
            family, norm, prefix = _key(system, code)
            for m_family, m_code, _ in members:
                if family != m_family:
                    continue
                if norm == m_code or (prefix and norm.startswith(m_code)):
                    return [True]
    return [False]


OPTIONS = {"userInvocationTable": {"memberOf": {"fn": member_of, "arity": {1: ["String"]}}}}


# --- the Library --------------------------------------------------------------------------------
def _features() -> list[tuple[str, str]]:
    lib = json.loads(LIBRARY.read_text(encoding="utf-8"))
    return [
        (e["valueExpression"]["name"], e["valueExpression"]["expression"])
        for e in lib.get("extension", [])
        if e.get("url") == FEATURE_EXT
    ]


FEATURES = _features()
COMPILED = {
    name: fhirpathpy.compile(expr, models["r4"], {**OPTIONS, "returnRawData": True})
    for name, expr in FEATURES
}


def _plain(values: list[Any]) -> list[Any]:
    out = []
    for v in values:
        data = getattr(v, "data", v)
        if isinstance(data, FP_DateTime):
            data = str(data)
        elif isinstance(data, Decimal) and data == data.to_integral_value():
            data = int(data)
        out.append(data)
    return out


def evaluate(bundle: dict, selections: list[dict] | None = None) -> dict[str, list[Any]]:
    patient = next(
        (e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"), None
    )
    env: dict[str, Any] = {
        "patient": patient,
        "today": FP_DateTime(TODAY.isoformat()),
        "now": FP_DateTime(f"{TODAY.isoformat()}T12:00:00+00:00"),
        "draftOrders": list(selections or []),
        "selections": list(selections or []),
    }
    raw: dict[str, list[Any]] = {}
    for name, _ in FEATURES:
        value = COMPILED[name](bundle, dict(env))
        raw[name] = value
        env[name] = value
    return {name: _plain(v) for name, v in raw.items()}


# --- record builders ----------------------------------------------------------------------------
def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def patient(birth: str = "1985-06-15") -> dict:
    return {"resourceType": "Patient", "id": "p1", "birthDate": birth}


def condition(
    cid: str, system: str, code: str, onset_days_ago: int | None = 14, status: str = "active"
) -> dict:
    res = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
        },
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "recordedDate": days_ago(onset_days_ago or 0),
    }
    if onset_days_ago is not None:
        res["onsetDateTime"] = f"{days_ago(onset_days_ago)}T09:00:00+01:00"
    return res


def red_flag_response(answers: dict[str, bool], authored_days_ago: int = 1) -> dict:
    return {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-rf",
        "status": "completed",
        "questionnaire": f"{BASE}/Questionnaire/lbp-red-flags|0.1.0",
        "subject": {"reference": "Patient/p1"},
        "authored": f"{days_ago(authored_days_ago)}T10:00:00+01:00",
        "item": [
            {
                "linkId": "red-flags",
                "item": [{"linkId": k, "answer": [{"valueBoolean": v}]} for k, v in answers.items()],
            }
        ],
    }


NO_FLAGS = {f"RF{n}": False for n in range(1, 10)} | {f"RA{n}": False for n in range(1, 5)}


def observation(oid: str, code: dict, value: dict, eff_days_ago: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [code]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": f"{days_ago(eff_days_ago)}T10:00:00Z",
        **value,
    }


def risk(oid: str, tool: str, category: str, eff_days_ago: int = 2) -> dict:
    return observation(
        oid,
        {"system": f"{BASE}/CodeSystem/lbp-observation", "code": tool},
        {
            "valueCodeableConcept": {
                "coding": [{"system": f"{BASE}/CodeSystem/lbp-risk-category", "code": category}]
            }
        },
        eff_days_ago,
    )


def nrs(oid: str, value: int, eff_days_ago: int) -> dict:
    return observation(
        oid, {"system": "http://loinc.org", "code": "72514-3"}, {"valueInteger": value}, eff_days_ago
    )


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


LBP = ("c-lbp", ICD_WHO, "M54.5")

RECORDS = {
    "no_flags": bundle(
        patient(),
        condition(*LBP, onset_days_ago=14),
        red_flag_response(NO_FLAGS),
        risk("o-sbt", "sbt-risk", "low"),
        nrs("o-nrs", 4, 3),
    ),
    "cancer_code": bundle(
        patient(),
        condition(*LBP, onset_days_ago=30),
        condition("c-ca", ICD_WHO, "C50.9", onset_days_ago=2000, status="resolved"),
        {
            "resourceType": "MedicationStatement",
            "id": "ms1",
            "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "H02AB06"}]},
            "subject": {"reference": "Patient/p1"},
        },
    ),
    "questionnaire_flag": bundle(
        patient(), condition(*LBP, onset_days_ago=30), red_flag_response(NO_FLAGS | {"RF2": True})
    ),
    "high_start_back": bundle(
        patient(), condition(*LBP, onset_days_ago=70), risk("o-sbt", "sbt-risk", "high")
    ),
    "physio_no_improvement": bundle(
        patient(),
        condition(*LBP, onset_days_ago=70),
        red_flag_response(NO_FLAGS),
        {
            "resourceType": "Procedure",
            "id": "pr1",
            "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91251008"}]},
            "subject": {"reference": "Patient/p1"},
            "performedPeriod": {"start": days_ago(60)},
        },
        nrs("o-nrs1", 7, 60),
        nrs("o-nrs2", 7, 1),
    ),
    "cauda_equina": bundle(
        patient(), condition(*LBP, onset_days_ago=5), condition("c-ces", ICD_WHO, "G83.4", onset_days_ago=1)
    ),
    "intake_only": bundle(
        patient("1990-01-01"),
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr-intake",
            "status": "completed",
            "questionnaire": f"{BASE}/Questionnaire/lbp-intake",
            "subject": {"reference": "Patient/p1"},
            "authored": f"{days_ago(7)}T10:00:00+01:00",
            "item": [
                {"linkId": "pain-duration-weeks", "answer": [{"valueInteger": 5}]},
                {"linkId": "radiation-below-knee", "answer": [{"valueBoolean": True}]},
                {"linkId": "sick-leave", "answer": [{"valueBoolean": True}]},
                {"linkId": "sick-leave-weeks", "answer": [{"valueInteger": 2}]},
                {
                    "linkId": "tried-treatments",
                    "answer": [
                        {
                            "valueCoding": {
                                "system": f"{BASE}/CodeSystem/lbp-treatment-tried",
                                "code": "physiotherapy",
                            }
                        }
                    ],
                },
                {"linkId": "mr-contraindication", "answer": [{"valueBoolean": True}]},
                {"linkId": "interpreter-needed", "answer": [{"valueBoolean": False}]},
            ],
        },
    ),
    "danish_sks": bundle(patient("1950-01-20"), condition("c-dk", SKS, "DM545", onset_days_ago=None)),
}


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, list[Any]]]:
    return {name: evaluate(record) for name, record in RECORDS.items()}


def one(values: list[Any]) -> Any:
    assert len(values) <= 1, values
    return values[0] if values else None


# --- tests --------------------------------------------------------------------------------------
def test_library_declares_every_feature_once_with_a_parameter():
    lib = json.loads(LIBRARY.read_text(encoding="utf-8"))
    names = [n for n, _ in FEATURES]
    assert len(names) == len(set(names))
    assert [p["name"] for p in lib["parameter"]] == names
    assert all(p["use"] == "out" for p in lib["parameter"])


def test_feature_names_are_fhir_ids_and_fhirpath_identifiers():
    import re

    for name, _ in FEATURES:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,63}", name), name


def test_every_feature_reads_only_earlier_features_or_engine_variables():
    import re

    engine = {"patient", "today", "now", "draftOrders", "selections", "context", "resource", "ucum"}
    seen: set[str] = set()
    for name, expr in FEATURES:
        for var in re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)", expr):
            assert var in seen or var in engine, f"{name} reads %{var} before it is defined"
        seen.add(name)


@pytest.mark.parametrize("record", sorted(RECORDS))
def test_every_feature_evaluates_on_every_record(record):
    values = evaluate(RECORDS[record])
    assert set(values) == {n for n, _ in FEATURES}


def test_record_without_flags_is_in_scope_and_red_flags_known_absent(results):
    r = results["no_flags"]
    assert one(r["ageYears"]) == 39
    assert one(r["inScope"]) is True
    assert one(r["lbpEpisodePresent"]) is True
    assert one(r["lbpOnsetDate"]) == days_ago(14)
    assert one(r["painDurationDays"]) == 14
    assert one(r["painDurationWeeks"]) == 2
    assert one(r["redFlagsKnown"]) is True
    assert one(r["redFlagAny"]) is False
    assert one(r["acuteSignAny"]) is False
    assert one(r["screeningRecorded"]) is True
    assert one(r["screeningRisk"]) == "low"
    assert one(r["nrsRecorded"]) is True and one(r["nrsLatest"]) == 4
    assert one(r["imagingIndicated"]) is False
    assert one(r["lbpAcute"]) is True


def test_previous_cancer_code_raises_rf4_even_when_resolved(results):
    r = results["cancer_code"]
    assert one(r["redFlagRf4"]) is True
    assert one(r["redFlagRf6"]) is True  # prednisolone H02AB06 under H02AB
    assert one(r["redFlagAny"]) is True
    assert "RF4" in r["redFlagsPresent"]
    assert one(r["redFlagsKnown"]) is False  # the other flags are not answered: not negative
    assert one(r["mriIndicationI1"]) is True  # > 3 weeks and a red flag
    assert one(r["imagingIndicated"]) is True


def test_red_flag_from_questionnaire_answer(results):
    r = results["questionnaire_flag"]
    assert one(r["redFlagRf2"]) is True
    assert one(r["redFlagRf3"]) is False
    assert one(r["redFlagAny"]) is True
    assert r["redFlagsPresent"] == ["RF2"]


def test_missing_data_is_empty_not_negative(results):
    r = results["high_start_back"]
    assert r["redFlagRf2"] == [] and r["redFlagAny"] == []
    assert one(r["redFlagsKnown"]) is False
    assert r["mrContraindication"] == [] and r["basicTreatmentStarted"] == []
    assert one(r["basicTreatmentKnown"]) is False
    assert one(r["nrsRecorded"]) is False


def test_high_start_back_risk_gives_yellow_flags_and_i3(results):
    r = results["high_start_back"]
    assert one(r["screeningRisk"]) == "high"
    assert one(r["screeningRiskHigh"]) is True
    assert one(r["yellowFlagsPresent"]) is True
    assert one(r["startBackRecorded"]) is True
    assert one(r["painDurationWeeks"]) == 10
    assert one(r["mriIndicationI3"]) is True


def test_eight_weeks_of_physiotherapy_without_improvement(results):
    r = results["physio_no_improvement"]
    assert one(r["basicTreatmentStarted"]) is True
    assert one(r["basicTreatmentWeeks"]) == 8
    assert one(r["nrsFirst"]) == 7 and one(r["nrsLatest"]) == 7
    assert one(r["nrsChange"]) == 0
    assert one(r["noImprovement"]) is True
    assert one(r["noImprovementAfter6WeeksTreatment"]) is True
    assert one(r["mriIndicationI2"]) is True
    assert one(r["kvaGb021Recorded"]) is False
    assert one(r["redFlagAny"]) is False


def test_cauda_equina_code_is_acute_sign_ra1(results):
    r = results["cauda_equina"]
    assert one(r["acuteSignRa1"]) is True
    assert one(r["acuteSignAny"]) is True
    assert r["acuteSignsPresent"] == ["RA1"]


def test_danish_sks_code_with_leading_d_is_low_back_pain(results):
    r = results["danish_sks"]
    assert one(r["lbpEpisodePresent"]) is True
    assert one(r["ageYears"]) == 75
    # no onset: recordedDate stands in
    assert one(r["painDurationDays"]) == 0
    assert one(r["redFlagRf1"]) is True  # onset after 55


def test_draft_orders_are_classified():
    record = RECORDS["no_flags"]
    drafts = [
        {
            "resourceType": "ServiceRequest",
            "id": "sr1",
            "status": "draft",
            "intent": "order",
            "code": {"coding": [{"system": "http://loinc.org", "code": "24972-2"}]},
        },
        {
            "resourceType": "ServiceRequest",
            "id": "sr2",
            "status": "draft",
            "intent": "order",
            "priority": "routine",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "183545006"}]},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "mr1",
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "N02AA01"}]},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "mr2",
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "N06AX21"}]},
        },
    ]
    r = evaluate(record, drafts)
    assert one(r["draftedLumbarXray"]) is True
    assert r["draftedLumbarXrayRefs"] == ["ServiceRequest/sr1"]
    assert r["draftedOpioidsRefs"] == ["MedicationRequest/mr1"]
    assert one(r["draftedLumbarMri"]) is False
    assert one(r["draftedLumbarImaging"]) is True
    assert one(r["draftedOrthopaedicReferral"]) is True
    assert one(r["draftedOrthopaedicReferralNonAcute"]) is True
    assert one(r["draftedOrthopaedicReferralAcute"]) is False
    assert one(r["draftedSpecialistReferralNonAcute"]) is True
    assert one(r["draftedOpioid"]) is True
    assert one(r["draftedSnri"]) is True and one(r["draftedAntidepressant"]) is True
    assert one(r["draftedParacetamol"]) is False
    assert one(r["lumbarMriWithinYear"]) is False
    assert one(r["orthopaedicReferralTemplateCompleted"]) is False


def test_lumbar_mri_older_than_a_year_is_told_apart():
    record = bundle(
        patient(),
        condition(*LBP),
        {
            "resourceType": "DiagnosticReport",
            "id": "dr1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "24968-0"}]},
            "effectiveDateTime": f"{days_ago(400)}T08:00:00Z",
        },
    )
    r = evaluate(record)
    assert one(r["lumbarMriLatestDate"]) == days_ago(400)
    assert one(r["lumbarMriWithinYear"]) is False
    assert one(r["lumbarMriOlderThanYear"]) is True


def test_intake_questionnaire_alone_gives_episode_duration_and_history(results):
    r = results["intake_only"]
    assert one(r["lbpEpisodePresent"]) is True
    assert one(r["painDurationDays"]) == 5 * 7 + 7  # answered 7 days ago
    assert one(r["radicularPain"]) is True
    assert one(r["sickLeave"]) is True and one(r["sickLeaveWeeks"]) == 2
    assert one(r["basicTreatmentStarted"]) is True and r["basicTreatmentWeeks"] == []
    assert one(r["mrContraindication"]) is True
    assert one(r["interpreterNeeded"]) is False
    assert one(r["backuppEligible"]) is True


def _rule_expressions() -> list[tuple[str, str]]:
    out = []
    for folder in ("plandefinitions",):
        for path in sorted((ROOT / folder).glob("*.json")):
            res = json.loads(path.read_text(encoding="utf-8"))
            if res["resourceType"] not in ("PlanDefinition", "Measure"):
                continue

            def walk(node, where):
                if isinstance(node, dict):
                    if node.get("language") == "text/fhirpath" and isinstance(node.get("expression"), str):
                        out.append((where, node["expression"]))
                    for k, v in node.items():
                        walk(v, f"{where}.{k}")
                elif isinstance(node, list):
                    for i, v in enumerate(node):
                        walk(v, f"{where}[{i}]")

            walk(res, path.stem)
    return out


RULE_EXPRESSIONS = _rule_expressions()


@pytest.mark.parametrize("record", sorted(RECORDS))
def test_every_rule_expression_runs_over_the_features(record):
    """Conditions, dynamic values and measure criteria evaluate (to at most one value) on every record."""
    env: dict[str, Any] = {
        "patient": RECORDS[record]["entry"][0]["resource"],
        "today": FP_DateTime(TODAY.isoformat()),
        "draftOrders": [],
        "selections": [],
    }
    for name, _ in FEATURES:
        env[name] = COMPILED[name](RECORDS[record], dict(env))
    for where, expr in RULE_EXPRESSIONS:
        value = fhirpathpy.compile(expr, models["r4"], OPTIONS)(RECORDS[record], dict(env))
        assert len(value) <= 1, (where, value)


def test_cards_fire_on_the_records_they_are_meant_for(results):
    conditions = {}
    for where, expr in RULE_EXPRESSIONS:
        if where.startswith("PlanDefinition-") and where.endswith(".condition[0].expression"):
            conditions[where] = expr

    def fired(record: str) -> set[str]:
        env: dict[str, Any] = {
            "patient": RECORDS[record]["entry"][0]["resource"],
            "today": FP_DateTime(TODAY.isoformat()),
            "draftOrders": [],
            "selections": [],
        }
        for name, _ in FEATURES:
            env[name] = COMPILED[name](RECORDS[record], dict(env))
        out = set()
        for where, expr in conditions.items():
            if fhirpathpy.compile(expr, models["r4"], OPTIONS)(RECORDS[record], dict(env)) == [True]:
                out.add(where.split(".condition")[0])
        return out

    assert "PlanDefinition-lbp-red-flags.action[0]" in fired("cancer_code")
    assert "PlanDefinition-lbp-red-flags.action[1]" in fired("high_start_back")  # red flags not assessed
    assert "PlanDefinition-lbp-acute-referral.action[0]" in fired("cauda_equina")
    assert "PlanDefinition-lbp-screening.action[2]" in fired("high_start_back")  # multimodal
    assert not any(w.startswith("PlanDefinition-lbp-red-flags") for w in fired("no_flags"))
