"""Fixtures of the Measure tests: the project's own artifacts as a KnowledgeBase, and record builders."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from app.measures import engine
from app.reasoning.knowledge import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]
BASE = "https://lbp-pathway.org/fhir"
OBS = f"{BASE}/CodeSystem/lbp-observation"
ICD10_SE = "urn:oid:1.2.752.116.1.1.1.1.3"
SKS = "urn:oid:1.2.208.176.2.4"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
YEAR = engine.Period(date(2026, 1, 1), date(2026, 12, 31))
AS_OF = date(2026, 12, 31)
SKANE = {"use": "home", "city": "Malmö", "state": "Skåne län", "country": "SE"}
STOCKHOLM = {"use": "home", "city": "Stockholm", "state": "Stockholms län", "country": "SE"}
AARHUS = {"use": "home", "city": "Aarhus", "state": "Region Midtjylland", "country": "DK"}


def artifacts() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8"))
            for folder in ("valuesets", "questionnaires", "plandefinitions")
            for p in sorted((ROOT / folder).glob("*.json"))]


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return KnowledgeBase(artifacts())


def measure(mid: str) -> dict[str, Any]:
    return json.loads((ROOT / "plandefinitions" / f"Measure-{mid}.json").read_text(encoding="utf-8"))


class Rec:
    """One patient's record, built fluently: Rec('a', visit='2026-03-01').nrs('2026-03-01', 7)…"""

    def __init__(self, pid: str, *, visit: str | None = "2026-03-01", born: str | None = "1980-01-01",
                 sex: str = "female", address: dict[str, Any] | list[dict[str, Any]] | None = None,
                 organization: str = "Organization/vc-1", code: tuple[str, str] = (ICD10_SE, "M54.5")):
        self.pid = pid
        self.n = 0
        patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": sex,
                                   "managingOrganization": {"reference": organization}}
        if born:
            patient["birthDate"] = born
        addresses = address if isinstance(address, list) else [address or SKANE]
        patient["address"] = addresses
        self.resources: list[dict[str, Any]] = [patient]
        if visit:
            self.add("Condition", code={"coding": [{"system": code[0], "code": code[1]}]}, recordedDate=visit,
                     onsetDateTime=visit)

    def add(self, kind: str, **fields: Any) -> Rec:
        self.n += 1
        res = {"resourceType": kind, "id": f"{self.pid}-{self.n}", **fields}
        res["for" if kind == "Task" else "subject"] = {"reference": f"Patient/{self.pid}"}
        self.resources.append(res)
        return self

    def last_ref(self) -> dict[str, str]:
        r = self.resources[-1]
        return {"reference": f"{r['resourceType']}/{r['id']}"}

    def obs(self, system: str, code: str, day: str, **value: Any) -> Rec:
        return self.add("Observation", status="final", code={"coding": [{"system": system, "code": code}]},
                        effectiveDateTime=day, **value)

    def nrs(self, day: str, value: int) -> Rec:
        return self.obs(LOINC, "72514-3", day, valueInteger=value)

    def order(self, system: str, code: str, day: str, **more: Any) -> Rec:
        return self.add("ServiceRequest", status="completed", intent="order",
                        code={"coding": [{"system": system, "code": code}]}, authoredOn=day, **more)

    def mri(self, day: str, **more: Any) -> Rec:
        return self.add("DiagnosticReport", status="final", code={"coding": [{"system": LOINC, "code": "24968-0"}]},
                        effectiveDateTime=day, **more)

    def encounter(self, cls: str, day: str, **more: Any) -> Rec:
        return self.add("Encounter", status="finished",
                        **{"class": {"system": "http://terminology.hl7.org/v3-ActCode", "code": cls}},
                        period={"start": day, "end": day}, **more)

    def red_flags(self, day: str, **answers: bool) -> Rec:
        values = {f"RF{i}": False for i in range(1, 10)} | {f"RA{i}": False for i in range(1, 5)} | answers
        return self.add("QuestionnaireResponse", questionnaire=f"{BASE}/Questionnaire/lbp-red-flags",
                        status="completed", authored=day,
                        item=[{"linkId": k, "answer": [{"valueBoolean": v}]} for k, v in values.items()])

    def intake(self, day: str, **answers: Any) -> Rec:
        items = []
        for link, value in answers.items():
            kind = ("valueBoolean" if isinstance(value, bool) else "valueInteger" if isinstance(value, int)
                    else "valueDate")
            items.append({"linkId": link.replace("_", "-"), "answer": [{kind: value}]})
        return self.add("QuestionnaireResponse", questionnaire=f"{BASE}/Questionnaire/lbp-intake",
                        status="completed", authored=day, item=items)


def evaluate(kb, measure_ids, recs, *, period=YEAR, variant=None, as_of=AS_OF, keep_members=True):
    """{measure id: (accumulator, population report)} for the records."""
    ev, accs = engine.evaluate_measures(kb, [measure(m) for m in measure_ids], [r.resources for r in recs], period,
                                        variant=variant, as_of=as_of, keep_members=keep_members)
    return {a.measure.id: (a, engine.measure_report(a, ev, report_type="population")) for a in accs}, ev


def counts(report: dict[str, Any], group: int = 0) -> dict[str, int]:
    """population code -> count, and code+'?' -> unknown count, of one group."""
    out = {}
    for p in report["group"][group]["population"]:
        code = p["code"]["coding"][0]["code"]
        out[code] = p["count"]
        for e in p.get("extension", []):
            out[code + "?"] = e["valueInteger"]
    return out


def score(report: dict[str, Any], group: int = 0) -> float | None:
    return (report["group"][group].get("measureScore") or {}).get("value")
