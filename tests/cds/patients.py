"""Test patients for the CDS service, one per situation a rule family must (or must not) fire in.

`python -m tests.cds.patients` (from the project root) rewrites the Bundles under tests/data/cds/; the
tests read those files, both as prefetch and loaded into the FHIR server behind `fhirServer`.
The clock is pinned to TODAY (config CDS_TODAY) so durations stay what the names say.
"""
from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

TODAY = date(2026, 11, 25)
DATA = Path(__file__).resolve().parents[1] / "data" / "cds"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
KVA = "urn:oid:1.2.752.116.1.3.2.1.4"
OBS = "https://lbp-pathway.org/fhir/CodeSystem/lbp-observation"
RISK = "https://lbp-pathway.org/fhir/CodeSystem/lbp-risk-category"
Q = "https://lbp-pathway.org/fhir/Questionnaire/"
ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
RED_FLAG_IDS = [f"RF{i}" for i in range(1, 10)] + [f"RA{i}" for i in range(1, 5)]


def ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def born(years: int) -> str:
    return TODAY.replace(year=TODAY.year - years, month=1, day=1).isoformat()


class Record:
    def __init__(self, pid: str, age: int | None):
        self.pid = pid
        patient = {"resourceType": "Patient", "id": pid, "birthDate": born(age) if age is not None else None,
                   "gender": "female"}
        self.resources: list[dict] = [{k: v for k, v in patient.items() if v is not None}]
        self._n = 0

    def _id(self, kind: str) -> str:
        self._n += 1
        return f"{self.pid}-{kind}-{self._n}"

    def subject(self) -> dict:
        return {"reference": f"Patient/{self.pid}"}

    def condition(self, code: str, onset_days: int | None = None, system: str = ICD10) -> Record:
        c = {"resourceType": "Condition", "id": self._id("cond"), "clinicalStatus": ACTIVE,
             "code": {"coding": [{"system": system, "code": code}]}, "subject": self.subject()}
        if onset_days is not None:
            c["onsetDateTime"] = ago(onset_days)
        self.resources.append(c)
        return self

    def lbp(self, days: int) -> Record:
        return self.condition("M54.5", days)

    def red_flags(self, days_ago: int = 1, **present: bool) -> Record:
        """A completed red-flag questionnaire: every sign answered, False unless named."""
        items = [{"linkId": k, "answer": [{"valueBoolean": bool(present.get(k, False))}]} for k in RED_FLAG_IDS]
        self.resources.append({"resourceType": "QuestionnaireResponse", "id": self._id("qr-rf"),
                               "questionnaire": Q + "lbp-red-flags", "status": "completed",
                               "subject": self.subject(), "authored": ago(days_ago), "item": items})
        return self

    def screening(self, risk: str, days_ago: int = 1) -> Record:
        self.resources.append({"resourceType": "Observation", "id": self._id("sbt"), "status": "final",
                               "code": {"coding": [{"system": OBS, "code": "sbt-risk"}]},
                               "subject": self.subject(), "effectiveDateTime": ago(days_ago),
                               "valueCodeableConcept": {"coding": [{"system": RISK, "code": risk}]}})
        return self

    def nrs(self, value: int, days_ago: int = 1) -> Record:
        self.resources.append({"resourceType": "Observation", "id": self._id("nrs"), "status": "final",
                               "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
                               "subject": self.subject(), "effectiveDateTime": ago(days_ago),
                               "valueInteger": value})
        return self

    def physiotherapy(self, days_ago: int) -> Record:
        self.resources.append({"resourceType": "Procedure", "id": self._id("proc"), "status": "completed",
                               "code": {"coding": [{"system": KVA, "code": "GB021"}]},
                               "subject": self.subject(), "performedDateTime": ago(days_ago)})
        return self

    def mri_report(self, days_ago: int) -> Record:
        self.resources.append({"resourceType": "DiagnosticReport", "id": self._id("mri"), "status": "final",
                               "code": {"coding": [{"system": LOINC, "code": "24968-0"}]},
                               "subject": self.subject(), "effectiveDateTime": ago(days_ago)})
        return self

    def bundle(self) -> dict:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in self.resources]}


def patients() -> dict[str, Record]:
    out = {
        # no red flags, screened low risk, NRS recorded, 4 weeks of pain, no treatment yet
        "clean": Record("clean", 40).lbp(28).red_flags().screening("low").nrs(5),
        # previous cancer (RF4): a red flag from the record, the questionnaire silent on it
        "cancer": Record("cancer", 40).lbp(35).condition("C61").red_flags(RF4=True).screening("low").nrs(5),
        # only the diagnosis: red flags, screening and NRS all unknown
        "unknown": Record("unknown", 40).lbp(28),
        # cauda equina syndrome in the record (RA1)
        "cauda": Record("cauda", 45).lbp(10).condition("G83.4").screening("low").nrs(8),
        # screened high risk (YF5)
        "highrisk": Record("highrisk", 40).lbp(28).red_flags().screening("high").nrs(6),
        # 16 weeks of pain, physiotherapy for 12 weeks, no improvement, radicular pain, MRI 2 months ago
        "treated": Record("treated", 50).lbp(112).condition("M54.1", 112).red_flags().screening("low")
        .physiotherapy(84).nrs(7, 84).nrs(7, 2).mri_report(60),
        # ankylosing spondylitis in the record: suspected inflammatory origin (RF5, RR1)
        "inflammatory": Record("inflammatory", 35).lbp(49).condition("M45").red_flags().screening("low").nrs(5),
        # physiotherapy started three weeks ago: not yet eight weeks in the primary sector (T5)
        "early": Record("early", 40).lbp(35).red_flags().screening("low").physiotherapy(21).nrs(6, 21).nrs(6, 1),
        # the same, but the last MRI is two years old (I6)
        "oldmri": Record("oldmri", 50).lbp(112).condition("M54.1", 112).red_flags().screening("low")
        .physiotherapy(84).nrs(7, 84).nrs(7, 2).mri_report(730),
        # no birth date in the record: age unknown; cauda equina syndrome (RA1) does not depend on age
        "nobirth": Record("nobirth", None).lbp(10).condition("G83.4").screening("low").nrs(8),
    }
    return out


def write() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name, record in patients().items():
        (DATA / f"Bundle-patient-{name}.json").write_text(
            json.dumps(record.bundle(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
