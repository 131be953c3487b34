"""Generated records: every code of a ValueSet, in every system form the project documents, in every place of a
record the data contract gives that code, on top of a reference patient; and how to run them (in process and
through the CDS service).

The place semantics (which statuses count) are the data contract's, stated here once in `SOURCE_PLACES`: the
test expects them, it does not read them from the Library.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.reasoning import apply_plan_definition
from tests.cds.patients import TODAY, ago, patients

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_SE = "urn:oid:1.2.752.116.1.1.1.1.3"
ICD10_SE_URI = "http://hl7.org/fhir/sid/icd-10-se"
SKS = "urn:oid:1.2.208.176.2.4"
SKS_MEDCOM = "urn:oid:1.2.208.176.2.4.12"
ATC = "http://www.whocc.no/atc"
ICD_FAMILY = (ICD10, ICD10_SE, ICD10_SE_URI, SKS, SKS_MEDCOM)
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
SCT = "http://snomed.info/sct"
PATIENT_REFERRAL = {"coding": [{"system": SCT, "code": "3457005", "display": "Patient referral"}]}
REFERRAL_CATEGORY = {"coding": [{"system": SCT, "code": "3457005"}]}
SUBJECT_ID = "clean"
SECOND = "second-coding:"  # a form's system prefix: the code is the second coding of its CodeableConcept
PATIENT_BUNDLES = Path(__file__).resolve().parents[1] / "data" / "patients"


# -- system forms ----------------------------------------------------------------------------------
def category(system: str, code: str) -> str:
    """The ICD-10 category of a ValueSet code, without dot and without the SKS 'D'."""
    flat = code.replace(".", "").upper()
    return flat[1:] if system in (SKS, SKS_MEDCOM) and flat.startswith("D") and flat[1:2].isalpha() else flat


def dotted(flat: str) -> str:
    return f"{flat[:3]}.{flat[3:]}" if len(flat) > 3 else flat


def forms(system: str, code: str) -> list[tuple[str, str, str]]:
    """(form name, system, code): the ways docs/terminology.md says a record may carry this ValueSet code."""
    if system in ICD_FAMILY:
        flat = category(system, code)
        sub = dotted(flat + "9") if len(flat) > 3 else f"{flat}.9"
        return [
            ("who-dot", ICD10, dotted(flat)),
            ("who-flat", ICD10, flat),
            ("who-lower", ICD10, dotted(flat).lower()),
            ("who-sub", ICD10, sub),
            ("se-dot", ICD10_SE, dotted(flat)),
            ("se-flat", ICD10_SE, flat),
            ("se-uri", ICD10_SE_URI, dotted(flat)),
            ("se-sub", ICD10_SE, sub.replace(".", "")),
            ("sks-flat", SKS, "D" + flat),
            ("sks-dot", SKS, "D" + dotted(flat)),
            ("sks-medcom", SKS_MEDCOM, "D" + flat),
            ("sks-no-marker", SKS, dotted(flat)),
            ("sks-sub", SKS, "D" + sub.replace(".", "")),
            ("second-coding", SECOND + ICD10, dotted(flat)),
        ]
    if system == ATC:
        out = [("atc", ATC, code), ("atc-lower", ATC, code.lower()), ("second-coding", SECOND + ATC, code)]
        if len(code) < 7:  # a full substance code below the listed group
            out.append(("atc-sub", ATC, (code + "01")[:7] if len(code) == 5 else code + "X"))
        return out
    return [("exact", system, code), ("second-coding", SECOND + system, code)]


def categories(valueset: dict) -> list[tuple[str, str]]:
    """The distinct codes of a ValueSet's expansion (an ICD-10 category listed under three systems counts once)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for c in (valueset.get("expansion") or {}).get("contains", []) or []:
        system, code = c["system"], c["code"]
        key = ("icd-10", category(system, code)) if system in ICD_FAMILY else (system, code.upper())
        if key not in seen:
            seen.add(key)
            out.append((system, code))
    return out


# -- places -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """Where in a record a code sits and whether the data contract counts it for the source collection."""

    name: str
    counts: bool
    resource_type: str
    status: dict[str, Any]  # the status elements of the resource (and the code of a place a code defines)


OTHER_CODING = {"system": "http://example.org/local-codes", "code": "x-1", "display": "local code"}


def _cc(system: str, code: str) -> dict[str, Any]:
    """The code as a CodeableConcept; the form 'second-coding' puts a local coding before it."""
    if system.startswith(SECOND):
        return {"coding": [dict(OTHER_CODING), {"system": system[len(SECOND):], "code": code}], "text": "finding"}
    return {"coding": [{"system": system, "code": code}]}


def _clinical(code: str) -> dict[str, Any]:
    return {"clinicalStatus": {"coding": [{"system": CLINICAL, "code": code}]}}


LBP_OBSERVATION = "https://lbp-pathway.org/fhir/CodeSystem/lbp-observation"
SICK_LEAVE = {"code": {"coding": [{"system": LBP_OBSERVATION, "code": "sick-leave"}]}}
REFUTED = {"verificationStatus": {"coding": [{"system": VERIFICATION, "code": "refuted"}]}}
ENTERED_IN_ERROR_CONDITION = {"verificationStatus": {"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]}}

# source collection of the Library -> the places of the data contract and whether each counts
SOURCE_PLACES: dict[str, list[Place]] = {
    "activeConditions": [
        Place("Condition active", True, "Condition", _clinical("active")),
        Place("Condition recurrence", True, "Condition", _clinical("recurrence")),
        Place("Condition relapse", True, "Condition", _clinical("relapse")),
        Place("Condition resolved", False, "Condition", _clinical("resolved")),
        Place("Condition inactive", False, "Condition", _clinical("inactive")),
        Place("Condition remission", False, "Condition", _clinical("remission")),
        Place("Condition refuted", False, "Condition", {**_clinical("active"), **REFUTED}),
        Place("Condition entered-in-error", False, "Condition", ENTERED_IN_ERROR_CONDITION),
    ],
    # 'any clinical status' (previous cancer, structural deformity)
    "conditions": [
        Place("Condition active", True, "Condition", _clinical("active")),
        Place("Condition resolved", True, "Condition", _clinical("resolved")),
        Place("Condition remission", True, "Condition", _clinical("remission")),
        Place("Condition refuted", False, "Condition", {**_clinical("resolved"), **REFUTED}),
        Place("Condition entered-in-error", False, "Condition", ENTERED_IN_ERROR_CONDITION),
    ],
    "lbpConditions": [
        Place("Condition active", True, "Condition", _clinical("active")),
        Place("Condition resolved", False, "Condition", _clinical("resolved")),
        Place("Condition entered-in-error", False, "Condition", ENTERED_IN_ERROR_CONDITION),
    ],
    "observations": [
        Place("Observation final", True, "Observation", {"status": "final"}),
        Place("Observation amended", True, "Observation", {"status": "amended"}),
        Place("Observation cancelled", False, "Observation", {"status": "cancelled"}),
        Place("Observation entered-in-error", False, "Observation", {"status": "entered-in-error"}),
    ],
    "activeMedicationCodes": [
        Place("MedicationStatement active", True, "MedicationStatement", {"status": "active"}),
        Place("MedicationStatement stopped", False, "MedicationStatement", {"status": "stopped"}),
        Place("MedicationStatement completed", False, "MedicationStatement", {"status": "completed"}),
        Place("MedicationStatement entered-in-error", False, "MedicationStatement", {"status": "entered-in-error"}),
        Place("MedicationRequest active", True, "MedicationRequest", {"status": "active", "intent": "order"}),
        Place("MedicationRequest stopped", False, "MedicationRequest", {"status": "stopped", "intent": "order"}),
        Place("MedicationRequest completed", False, "MedicationRequest", {"status": "completed", "intent": "order"}),
    ],
    "procedures": [
        Place("Procedure completed", True, "Procedure", {"status": "completed"}),
        Place("Procedure not-done", False, "Procedure", {"status": "not-done"}),
        Place("Procedure entered-in-error", False, "Procedure", {"status": "entered-in-error"}),
    ],
    "imagingReports": [
        Place("DiagnosticReport final", True, "DiagnosticReport", {"status": "final"}),
        Place("DiagnosticReport amended", True, "DiagnosticReport", {"status": "amended"}),
        Place("DiagnosticReport preliminary", False, "DiagnosticReport", {"status": "preliminary"}),
        Place("DiagnosticReport entered-in-error", False, "DiagnosticReport", {"status": "entered-in-error"}),
    ],
    "imagingStudies": [
        Place("ImagingStudy available", True, "ImagingStudy", {"status": "available"}),
        Place("ImagingStudy entered-in-error", False, "ImagingStudy", {"status": "entered-in-error"}),
    ],
    # the episode's conditions (measures): the 'any clinical status' Conditions of the LBP episode
    # (docs/recording-for-indicators.md: the diagnosis of the episode, whatever its status now)
    "lbpEpisodeConditions": [
        Place("Condition active", True, "Condition", _clinical("active")),
        Place("Condition resolved", True, "Condition", _clinical("resolved")),
        Place("Condition refuted", False, "Condition", {**_clinical("active"), **REFUTED}),
        Place("Condition entered-in-error", False, "Condition", ENTERED_IN_ERROR_CONDITION),
    ],
    # orders and referrals placed (docs/recording-for-indicators.md): a ServiceRequest active, on hold or
    # completed with intent order; a draft, a revoked or entered-in-error one and a proposal or plan are not placed
    "recordedOrders": [
        Place("ServiceRequest active", True, "ServiceRequest", {"status": "active", "intent": "order"}),
        Place("ServiceRequest on-hold", True, "ServiceRequest", {"status": "on-hold", "intent": "order"}),
        Place("ServiceRequest completed", True, "ServiceRequest", {"status": "completed", "intent": "order"}),
        Place("ServiceRequest original-order", True, "ServiceRequest",
              {"status": "active", "intent": "original-order"}),
        Place("ServiceRequest draft", False, "ServiceRequest", {"status": "draft", "intent": "order"}),
        Place("ServiceRequest revoked", False, "ServiceRequest", {"status": "revoked", "intent": "order"}),
        Place("ServiceRequest entered-in-error", False, "ServiceRequest",
              {"status": "entered-in-error", "intent": "order"}),
        Place("ServiceRequest proposal", False, "ServiceRequest", {"status": "active", "intent": "proposal"}),
        Place("ServiceRequest plan", False, "ServiceRequest", {"status": "active", "intent": "plan"}),
    ],
    # sick-leave certificates (docs/recording-for-indicators.md): an Observation coded lbp-observation#sick-leave
    # whose value is the certificate's diagnosis; the same value under another code is no certificate
    "sickLeaveCertificates": [
        Place("sick-leave Observation final", True, "Observation", {"status": "final", **SICK_LEAVE}),
        Place("sick-leave Observation amended", True, "Observation", {"status": "amended", **SICK_LEAVE}),
        Place("sick-leave Observation cancelled", False, "Observation", {"status": "cancelled", **SICK_LEAVE}),
        Place("sick-leave Observation entered-in-error", False, "Observation",
              {"status": "entered-in-error", **SICK_LEAVE}),
        Place("Observation final, another code", False, "Observation", {"status": "final"}),
    ],
    # drafted orders in order-sign: every draft order is advised on
    "selections": [Place("draft order", True, "", {"status": "draft", "intent": "order"})],
}

# features whose where() asks more of the resource than the code: what the generated resource also holds, and why
ALSO_HOLDS: dict[str, dict[str, Any]] = {
    # an MRI report concluding 'inconclusive' (SNOMED 419984006) dates the repeat-imaging indicator
    "lumbarMriInconclusiveDate": {"conclusionCode": [{"coding": [{"system": SCT, "code": "419984006"}]}]},
    # a VAS pain rating counts only with its value (as NRS)
    "vasPainObservations": {"valueInteger": 5},
}

HOOK_OF_SOURCE = {source: "patient-view" for source in SOURCE_PLACES} | {"selections": "order-sign"}


def build(place: Place, element: str, system: str, code: str, n: int = 0, feature: str = "") -> dict[str, Any]:
    """One resource holding system|code in `element` (the path memberOf() reads) at `place` (and what else the
    where() of `feature` asks, `ALSO_HOLDS`)."""
    rid = f"gen-{n}-{uuid.uuid4().hex[:8]}"
    subject = {"reference": f"Patient/{SUBJECT_ID}"}
    concept = _cc(system, code)
    kind = place.resource_type
    if not kind:  # a draft order: the element says which kind
        kind = "MedicationRequest" if element.startswith("medication") else "ServiceRequest"
    out: dict[str, Any] = {"resourceType": kind, "id": rid, "subject": subject, **copy.deepcopy(place.status)}
    if kind == "Condition":
        out.update(code=concept, onsetDateTime=ago(7), recordedDate=ago(7))
    elif kind == "Observation":
        if element == "code":
            out.update(code=concept)
        else:  # the code as the observed value, under the place's code or a generic one
            out.setdefault("code", {"text": "finding"})
            out["valueCodeableConcept"] = concept
        out["effectiveDateTime"] = ago(7)
    elif kind in ("MedicationStatement", "MedicationRequest"):
        out["medicationCodeableConcept"] = concept
        if kind == "MedicationRequest" and place.resource_type:
            out["authoredOn"] = ago(7)
    elif kind == "Procedure":
        out.update(code=concept, performedDateTime=ago(7))
    elif kind == "DiagnosticReport":
        out.update(code=concept, effectiveDateTime=ago(7))
    elif kind == "ImagingStudy":
        out.update(procedureCode=[concept], started=ago(7))
    elif kind == "ServiceRequest":
        if place.resource_type:  # a recorded order: dated by authoredOn
            out["authoredOn"] = ago(7)
        if element == "performerType":
            out.update(code=PATIENT_REFERRAL, category=[REFERRAL_CATEGORY], performerType=concept)
        else:
            out.update(code=concept)
    out.update(copy.deepcopy(ALSO_HOLDS.get(feature, {})))
    return out


def base_record() -> list[dict[str, Any]]:
    """The reference patient 'clean' (tests/cds/patients.py): adult, 4 weeks of LBP, every flag answered no."""
    return copy.deepcopy(patients()["clean"].resources)


def reference_records() -> dict[str, list[dict[str, Any]]]:
    """The reference patients of the CDS tests (tests/cds/patients.py) and of the pathway tests
    (tests/data/patients/*.json), by name; all dated for the same day (TODAY)."""
    out = {f"cds/{name}": copy.deepcopy(r.resources) for name, r in patients().items()}
    for path in sorted(PATIENT_BUNDLES.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        out[f"patients/{path.stem}"] = [e["resource"] for e in bundle["entry"]]
    return out


# -- running ----------------------------------------------------------------------------------------
def apply(kb, pathway: str, record: list[dict], hook: str, drafts: list[dict] = (), *, patient_id: str = "",
          **kwargs) -> tuple[dict, list]:
    """$apply of a variant's pathway as the CDS service calls it for `hook` (order-sign: every draft is advised on).

    The subject is the record's Patient; without one (or without its id), the reference `Patient/<patient_id>`,
    as the service passes it when the prefetch holds no patient."""
    patient: Any = next((r for r in record if r.get("resourceType") == "Patient" and r.get("id")), None)
    if patient is None:
        patient = f"Patient/{patient_id}"
    return apply_plan_definition(
        kb, pathway, subject=patient, record=record, trigger=hook, draft_orders=list(drafts),
        selections=list(drafts) if hook == "order-sign" else [], today=TODAY, **kwargs)


def request_group(care_plan: dict) -> dict:
    return next((r for r in care_plan.get("contained", []) if r.get("resourceType") == "RequestGroup"), {})


def applied_ids(care_plan: dict) -> set[str]:
    """Ids of every action in the applied RequestGroup, at any depth."""
    out: set[str] = set()

    def walk(actions: list[dict]) -> None:
        for a in actions or []:
            if a.get("id"):
                out.add(a["id"])
            walk(a.get("action", []))

    walk(request_group(care_plan).get("action", []))
    return out


def applied_actions(care_plan: dict) -> Iterator[dict]:
    stack = list(request_group(care_plan).get("action", []))
    while stack:
        a = stack.pop()
        yield a
        stack.extend(a.get("action", []) or [])


def card_rules(card: dict) -> set[str]:
    topic = ((card.get("source") or {}).get("topic") or {}).get("code")
    more = [c.get("code") for c in (card.get("extension") or {}).get("org.lbp-pathway.rules", [])]
    return {r for r in [topic, *more] if r}


def hook_body(hook: str, record: list[dict], drafts: list[dict] = ()) -> dict[str, Any]:
    """A CDS Hooks request with the record as prefetch (every resource type the services prefetch)."""
    patient = next(r for r in record if r["resourceType"] == "Patient")
    by_type: dict[str, list[dict]] = {}
    for r in record:
        if r["resourceType"] != "Patient":
            by_type.setdefault(r["resourceType"], []).append(r)
    prefetch: dict[str, Any] = {"patient": patient}
    for t in ("Condition", "Observation", "MedicationStatement", "MedicationRequest", "Procedure",
              "DiagnosticReport", "ImagingStudy", "QuestionnaireResponse", "CarePlan"):
        prefetch[t[0].lower() + t[1:]] = {"resourceType": "Bundle", "type": "searchset",
                                          "entry": [{"resource": r} for r in by_type.get(t, [])]}
    context: dict[str, Any] = {"patientId": patient["id"], "userId": "Practitioner/dr-1"}
    if hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": d} for d in drafts]}
    if hook == "order-select":
        context["selections"] = [f"{d['resourceType']}/{d['id']}" for d in drafts]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
