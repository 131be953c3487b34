"""A deterministic demo cohort of low back pain courses, coded as the data contract says, per variant.

The courses follow the sources' proportions (Q10, Skåne: of 1000 patients with acute low back pain about
500 recover with first-line advice, 500 get a primary-care course, about 50 need an MRÖ for red flags,
about 10 an orthopaedic specialist and 1–2 surgery) and BackUpp's figures where the sources give them
(34 % on sick leave at inclusion, 60 % women, mean age 46, improvement in 72–79 %, 91 % satisfied).
Everything else (screening rates, waits, opioid prescriptions) is an invented but plausible spread, so
that every indicator has something to show. The same seed always gives the same patients.
"""
from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

BASE = "https://lbp-pathway.org/fhir"
OBS = f"{BASE}/CodeSystem/lbp-observation"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
ICD10_SE = "urn:oid:1.2.752.116.1.1.1.1.3"
SKS = "urn:oid:1.2.208.176.2.4"
KVA = "urn:oid:1.2.752.116.1.3.2.1.4"
ACT = "http://terminology.hl7.org/v3-ActCode"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VARIANTS = ("se", "skane", "midtjylland")

_PLACES = {
    "skane": [("Malmö", "Skåne län", "SE"), ("Lund", "Skåne län", "SE"), ("Helsingborg", "Skåne län", "SE")],
    "se": [("Stockholm", "Stockholms län", "SE"), ("Uppsala", "Uppsala län", "SE"), ("Örebro", "Örebro län", "SE")],
    "midtjylland": [("Aarhus", "Region Midtjylland", "DK"), ("Viborg", "Region Midtjylland", "DK"),
                    ("Herning", "Region Midtjylland", "DK")],
}
_UNITS = {
    "skane": ["Vårdcentralen Möllevången", "Vårdcentralen Lund Norr", "Vårdcentralen Helsingborg City"],
    "se": ["Vårdcentralen Södermalm", "Vårdcentralen Luthagen", "Vårdcentralen Örebro Centrum"],
    "midtjylland": ["Lægehuset Aarhus C", "Lægerne i Viborg", "Herning Lægecenter"],
}
_GIVEN = {"sv": (["Anna", "Eva", "Maria", "Karin", "Sara"], ["Erik", "Lars", "Karl", "Anders", "Johan"]),
          "da": (["Mette", "Hanne", "Anne", "Susanne", "Louise"], ["Jens", "Peter", "Lars", "Søren", "Niels"])}
_FAMILY = {"sv": ["Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson"],
           "da": ["Nielsen", "Jensen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen", "Sørensen"]}


def _d(day: date) -> str:
    return day.isoformat()


class _Patient:
    """Builds one patient's resources with ids derived from the patient's."""

    def __init__(self, pid: str, variant: str):
        self.pid = pid
        self.variant = variant
        self.danish = variant == "midtjylland"
        self.resources: list[dict[str, Any]] = []
        self._n = 0

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        kind = resource.pop("resourceType")
        if kind == "Patient":
            rid = self.pid
        else:
            self._n += 1
            rid = f"{self.pid}-{self._n}"
        resource = {"resourceType": kind, "id": rid, **resource}
        if resource["resourceType"] in ("Task",):
            resource["for"] = {"reference": f"Patient/{self.pid}"}
        elif resource["resourceType"] != "Patient":
            resource["subject"] = {"reference": f"Patient/{self.pid}"}
        self.resources.append(resource)
        return resource

    def ref(self, resource: dict[str, Any]) -> dict[str, str]:
        return {"reference": f"{resource['resourceType']}/{resource['id']}"}

    def diagnosis(self, icd: str) -> dict[str, Any]:
        if self.danish:
            return {"coding": [{"system": SKS, "code": "D" + icd.replace(".", "")}]}
        return {"coding": [{"system": ICD10_SE, "code": icd}]}

    def observation(self, code: dict[str, Any], day: date, **value: Any) -> dict[str, Any]:
        when = {} if "effectivePeriod" in value else {"effectiveDateTime": _d(day)}
        return self.add({"resourceType": "Observation", "status": "final", "code": {"coding": [code]},
                         **when, **value})

    def encounter(self, cls: str, day: date, **extra: Any) -> dict[str, Any]:
        return self.add({"resourceType": "Encounter", "status": "finished",
                         "class": {"system": ACT, "code": cls}, "period": {"start": _d(day), "end": _d(day)},
                         **extra})

    def order(self, code: dict[str, Any], day: date, **extra: Any) -> dict[str, Any]:
        return self.add({"resourceType": "ServiceRequest", "status": "completed", "intent": "order",
                         "code": {"coding": [code]}, "authoredOn": _d(day), **extra})


def organizations(variant: str) -> list[dict[str, Any]]:
    return [{"resourceType": "Organization", "id": f"demo-{variant}-unit-{i + 1}", "active": True, "name": name,
             "address": [{"city": _PLACES[variant][i][0], "state": _PLACES[variant][i][1],
                          "country": _PLACES[variant][i][2]}]}
            for i, name in enumerate(_UNITS[variant])]


def patient_course(rng: random.Random, index: int, variant: str, year: int) -> list[dict[str, Any]]:
    """One patient: demographics, the new visit, screening, treatment, imaging, referral and outcomes."""
    p = _Patient(f"demo-{variant}-{index:05d}", variant)
    lang = "da" if p.danish else "sv"
    female = rng.random() < 0.6
    age = max(18, min(85, int(rng.gauss(46, 13))))
    d0 = date(year, 1, 1) + timedelta(days=rng.randrange(365))  # the new visit
    birth = d0 - timedelta(days=age * 365 + rng.randrange(365))
    unit = rng.randrange(3)
    city, state, country = _PLACES[variant][unit]
    p.add({"resourceType": "Patient", "active": True,
           "name": [{"family": rng.choice(_FAMILY[lang]), "given": [rng.choice(_GIVEN[lang][0 if female else 1])]}],
           "gender": "female" if female else "male", "birthDate": _d(birth),
           "address": [{"use": "home", "city": city, "state": state, "country": country}],
           "managingOrganization": {"reference": f"Organization/demo-{variant}-unit-{unit + 1}"},
           "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": lang}]}}]})
    roll = rng.random()
    course = "red-flag" if roll < 0.05 else "primary" if roll < 0.50 else "recovering"
    onset = d0 - timedelta(days=rng.randrange(3, 50))
    sciatica = rng.random() < 0.2
    # First contact (telephone) and the physician's visit: most within the 7 days of the care guarantee
    contact = d0 - timedelta(days=rng.randrange(0, 4) if rng.random() < 0.9 else rng.randrange(8, 15))
    p.encounter("VR", contact)
    p.encounter("AMB", d0)
    end = d0 + timedelta(days=rng.randrange(14, 35) if course == "recovering" else rng.randrange(42, 150))
    condition = {"resourceType": "Condition", "code": p.diagnosis("M54.4" if sciatica else "M54.5"),
                 "onsetDateTime": _d(onset), "recordedDate": _d(d0),
                 # left active: whether an episode is closed depends on the day the record is read
                 "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]}}
    p.add(condition)
    red_flag = course == "red-flag"
    if red_flag:
        p.add({"resourceType": "Condition", "code": p.diagnosis("C50.9"), "recordedDate": _d(d0 - timedelta(days=2000)),
               "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "remission"}]}})
    if rng.random() < 0.85:  # red flags asked at the new visit
        answers = {f"RF{i}": False for i in range(1, 10)} | {f"RA{i}": False for i in range(1, 5)}
        if red_flag:
            answers["RF4"] = True
        if age > 55:
            answers["RF1"] = True
        p.add({"resourceType": "QuestionnaireResponse", "questionnaire": f"{BASE}/Questionnaire/lbp-red-flags",
               "status": "completed", "authored": _d(d0),
               "item": [{"linkId": k, "answer": [{"valueBoolean": v}]} for k, v in answers.items()]})
    sick = rng.random() < 0.34
    if rng.random() < 0.8:  # intake questionnaire
        p.add({"resourceType": "QuestionnaireResponse", "questionnaire": f"{BASE}/Questionnaire/lbp-intake",
               "status": "completed", "authored": _d(d0),
               "item": [{"linkId": "onset-date", "answer": [{"valueDate": _d(onset)}]},
                        {"linkId": "radiation-below-knee", "answer": [{"valueBoolean": sciatica}]},
                        {"linkId": "sick-leave", "answer": [{"valueBoolean": sick}]}]})
    if sick:
        p.observation({"system": OBS, "code": "sick-leave"}, d0,
                      effectivePeriod={"start": _d(d0), "end": _d(d0 + timedelta(days=rng.randrange(7, 60)))},
                      valueCodeableConcept=p.diagnosis("M54.4" if sciatica else "M54.5"))
    if rng.random() < 0.7:  # STarT Back at the new visit
        risk = rng.choices(["low", "medium", "high"], [0.5, 0.3, 0.2])[0]
        p.observation({"system": OBS, "code": "sbt-risk"}, d0, valueCodeableConcept={
            "coding": [{"system": f"{BASE}/CodeSystem/lbp-risk-category", "code": risk}]})
    nrs0 = rng.randrange(4, 10)
    if rng.random() < 0.9:
        p.observation({"system": LOINC, "code": "72514-3"}, d0, valueInteger=nrs0)
    eq0, vas0, rmdq0 = round(rng.uniform(0.1, 0.7), 2), rng.randrange(25, 75), rng.randrange(6, 20)
    measured = rng.random() < 0.75
    if measured:
        p.observation({"system": OBS, "code": "eq5d-index"}, d0, valueQuantity={"value": eq0})
        p.observation({"system": OBS, "code": "eq-vas"}, d0, valueInteger=vas0)
        p.observation({"system": OBS, "code": "rmdq-total"}, d0, valueInteger=rmdq0)
    if course != "recovering":
        start = d0 + timedelta(days=rng.randrange(0, 14))
        treatment = ({"system": SCT, "code": "91251008"} if p.danish or rng.random() < 0.25
                     else {"system": KVA, "code": "GB021"})
        p.add({"resourceType": "Procedure", "status": "completed", "code": {"coding": [treatment]},
               "performedPeriod": {"start": _d(start), "end": _d(end)}})
    if rng.random() < 0.04:  # opioids prescribed despite M3
        p.add({"resourceType": "MedicationRequest", "status": "completed", "intent": "order",
               "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "N02AX02"}]},
               "authoredOn": _d(d0)})
    mri_date = None
    if red_flag or (course == "primary" and rng.random() < 0.03):
        ordered = d0 + timedelta(days=rng.randrange(0, 10))
        order = p.order({"system": LOINC, "code": "24968-0"}, ordered)
        mri_date = ordered + timedelta(days=rng.randrange(5, 26) if rng.random() < 0.8 else rng.randrange(31, 60))
        report: dict[str, Any] = {"resourceType": "DiagnosticReport", "status": "final",
                                  "code": {"coding": [{"system": LOINC, "code": "24968-0"}]},
                                  "basedOn": [p.ref(order)], "effectiveDateTime": _d(mri_date)}
        if rng.random() < 0.08:  # the MRÖ did not answer the question: a complete MR follows
            report["conclusionCode"] = [{"coding": [{"system": SCT, "code": "419984006"}]}]
            p.add(report)
            p.order({"system": LOINC, "code": "30679-5"}, mri_date + timedelta(days=3))
        else:
            p.add(report)
    elif course == "primary" and rng.random() < 0.04:  # plain X-ray without an indication (I0, I4)
        xray = p.order({"system": LOINC, "code": "24972-2"}, d0 + timedelta(days=1))
        p.add({"resourceType": "DiagnosticReport", "status": "final",
               "code": {"coding": [{"system": LOINC, "code": "24972-2"}]}, "basedOn": [p.ref(xray)],
               "effectiveDateTime": _d(d0 + timedelta(days=rng.randrange(2, 12)))})
    referred = (red_flag and rng.random() < 0.2) or (course == "primary" and rng.random() < 0.002)
    if referred:
        when = (mri_date or d0) + timedelta(days=rng.randrange(3, 20))
        # Midtjylland refers to the hospital's back centre (Regional Rygklinik), Sweden to orthopaedics
        target = ({"system": f"{BASE}/CodeSystem/lbp-handover", "code": "hospital-back-centre"} if p.danish
                  else {"system": SCT, "code": "183545006"})
        referral = p.order(target, when, priority="routine", status="active")
        if rng.random() < 0.15:
            p.add({"resourceType": "Task", "status": "rejected", "intent": "order", "focus": p.ref(referral),
                   "authoredOn": _d(when + timedelta(days=7)),
                   "businessStatus": {"text": "Remissen återsänd till primärvården" if not p.danish
                                      else "Henvisningen returneret til almen praksis"}})
        else:
            seen = when + timedelta(days=rng.randrange(25, 80) if rng.random() < 0.8 else rng.randrange(91, 130))
            p.encounter("AMB", seen, basedOn=[p.ref(referral)],
                        serviceType={"coding": [{"system": SCT, "code": "394801008"}]})
            if rng.random() < 0.15:
                p.add({"resourceType": "Procedure", "status": "completed",
                       "category": {"coding": [{"system": SCT, "code": "387713003"}]},
                       "code": {"text": "Lumbar decompression"},
                       "bodySite": [{"coding": [{"system": SCT, "code": "122496007"}]}],
                       "performedDateTime": _d(seen + timedelta(days=rng.randrange(20, 60)))})
    elif p.danish and course == "primary" and rng.random() < 0.06:
        # a non-urgent hospital referral without improvement: most after the eight weeks, some before (T5, DK-8)
        p.order({"system": f"{BASE}/CodeSystem/lbp-handover", "code": "hospital-back-centre"},
                d0 + timedelta(days=rng.randrange(35, 100)), priority="routine", status="active")
    # The final visit: pain, health and function again; most improve (BackUpp 72–79 %)
    if course != "recovering" or rng.random() < 0.5:
        improved = rng.random() < (0.9 if course == "recovering" else 0.75)
        p.encounter("AMB", end)
        if rng.random() < 0.8:
            nrs1 = max(0, nrs0 - rng.randrange(2, 6)) if improved else min(10, nrs0 + rng.randrange(-1, 2))
            p.observation({"system": LOINC, "code": "72514-3"}, end, valueInteger=nrs1)
        if measured:
            p.observation({"system": OBS, "code": "eq5d-index"}, end,
                          valueQuantity={"value": round(min(1.0, eq0 + rng.uniform(0.1, 0.4)) if improved
                                             else eq0 - rng.uniform(0, 0.1), 2)})
            p.observation({"system": OBS, "code": "eq-vas"}, end,
                          valueInteger=min(100, vas0 + rng.randrange(5, 30)) if improved else vas0)
            p.observation({"system": OBS, "code": "rmdq-total"}, end,
                          valueInteger=max(0, rmdq0 - rng.randrange(3, 10)) if improved else rmdq0)
        if rng.random() < 0.7:
            p.observation({"system": OBS, "code": "care-satisfaction"}, end, valueBoolean=rng.random() < 0.91)
    return p.resources


def demo_cohort(variant: str, patients: int, seed: int, *, year: int = 2026) -> list[dict[str, Any]]:
    """Organizations, then every patient's resources: the same arguments always give the same list."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    rng = random.Random(f"{variant}:{seed}")
    out = organizations(variant)
    for i in range(1, patients + 1):
        out.extend(patient_course(rng, i, variant, year))
    return out


def transaction_bundles(resources: list[dict[str, Any]], per_bundle: int = 2000) -> list[dict[str, Any]]:
    """PUT-by-id transaction Bundles (loading twice gives the same store)."""
    bundles = []
    for start in range(0, len(resources), per_bundle):
        bundles.append({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r,
             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources[start:start + per_bundle]]})
    return bundles
