"""Fixtures of the reasoning tests: the small self-made artifacts in tests/data/reasoning and record builders."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from app.reasoning.knowledge import KnowledgeBase

DATA = Path(__file__).resolve().parents[1] / "data" / "reasoning"
B = "https://example.org/fhir"
ICD = "http://hl7.org/fhir/sid/icd-10"
SKS = "urn:oid:1.2.208.176.2.4"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
TODAY = date(2025, 3, 1)


def load(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def all_artifacts() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DATA.glob("*.json"))]


@pytest.fixture
def artifacts() -> list[dict]:
    return all_artifacts()


@pytest.fixture
def kb(artifacts) -> KnowledgeBase:
    return KnowledgeBase(artifacts)


def patient(birth_date: str | None = "1970-05-01", id_: str = "p1") -> dict:
    out = {"resourceType": "Patient", "id": id_, "gender": "female"}
    if birth_date:
        out["birthDate"] = birth_date
    return out


def condition(id_: str, code: str, system: str = ICD, onset: str | None = None, **extra) -> dict:
    out = {
        "resourceType": "Condition",
        "id": id_,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if onset:
        out["onsetDateTime"] = onset
    out.update(extra)
    return out


def nrs(id_: str, value: int, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
        "valueInteger": value,
        "effectiveDateTime": when,
    }


def medication(id_: str, atc: str, status: str = "active") -> dict:
    return {
        "resourceType": "MedicationStatement",
        "id": id_,
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}]},
    }


def mri_order(id_: str = "sr1") -> dict:
    return {
        "resourceType": "ServiceRequest",
        "id": id_,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": LOINC, "code": "24968-0"}]},
    }


def response(
    answers: dict, *, status: str = "completed", authored: str = "2025-02-01T10:00:00+01:00", id_: str = "qr1"
) -> dict:
    """A QuestionnaireResponse to test-score; answers: linkId -> answer dict (q3/q4 go into group g1)."""
    top, group = [], []
    for link, answer in answers.items():
        item = {"linkId": link, "answer": answer if isinstance(answer, list) else [answer]}
        (group if link in ("q3", "q4") else top).append(item)
    if group:
        top.insert(2, {"linkId": "g1", "item": group})
    return {
        "resourceType": "QuestionnaireResponse",
        "id": id_,
        "questionnaire": f"{B}/Questionnaire/test-score",
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "authored": authored,
        "item": top,
    }


def yes_no(code: str) -> dict:
    return {"valueCoding": {"system": f"{B}/CodeSystem/test-answer", "code": code}}
