"""Draft orders for order-select and order-sign calls (codes from the data contract)."""
from __future__ import annotations

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"


def service_request(oid: str, pid: str, system: str, code: str, priority: str | None = None,
                    status: str = "draft") -> dict:
    r = {"resourceType": "ServiceRequest", "id": oid, "status": status, "intent": "order",
         "subject": {"reference": f"Patient/{pid}"}, "code": {"coding": [{"system": system, "code": code}]}}
    if priority:
        r["priority"] = priority
    return r


def medication(oid: str, pid: str, atc: str, status: str = "draft") -> dict:
    return {"resourceType": "MedicationRequest", "id": oid, "status": status, "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}]}}


ORDERS = {
    "mri": lambda pid: service_request("mri-1", pid, LOINC, "24968-0"),
    "xray": lambda pid: service_request("xray-1", pid, LOINC, "24972-2"),
    "ct": lambda pid: service_request("ct-1", pid, LOINC, "24963-1"),
    "referral": lambda pid: service_request("ref-1", pid, SCT, "183545006", "routine"),
    "opioid": lambda pid: medication("med-opioid", pid, "N02AA01"),
    "nsaid": lambda pid: medication("med-nsaid", pid, "M01AE01"),
    "paracetamol": lambda pid: medication("med-para", pid, "N02BE01"),
    "gabapentinoid": lambda pid: medication("med-gaba", pid, "N03AX16"),
    "tca": lambda pid: medication("med-tca", pid, "N06AA09"),
    "relaxant": lambda pid: medication("med-relax", pid, "M03BX01"),
}


def draft_bundle(orders: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]}
