"""A patient's record from the store: the Patient and every resource of the data-contract types about them."""
from __future__ import annotations

from sqlalchemy import and_, or_, select

from . import schema
from .db import Store, _load_content

# The resource types the pathway reads (data-contract.md), and the reference parameters that tie each to a patient.
RECORD_TYPES = ("Condition", "Observation", "MedicationStatement", "MedicationRequest", "Procedure",
                "DiagnosticReport", "ImagingStudy", "ServiceRequest", "QuestionnaireResponse", "CarePlan",
                "Encounter", "Task")
PATIENT_PARAMS = ("patient", "subject")


def patient_record(store: Store, patient_id: str) -> list[dict]:
    """[Patient, ...every current resource of RECORD_TYPES whose patient/subject is that patient]; [] if unknown."""
    patient = store.read("Patient", patient_id)
    if patient is None or patient.deleted:
        return []
    ref, r = schema.idx_reference.c, schema.resources.c
    owners = select(ref.rid).where(
        ref.res_type.in_(RECORD_TYPES), ref.param.in_(PATIENT_PARAMS),
        and_(ref.target_type == "Patient", ref.target_id == patient_id),
    )
    out = [patient.resource()]
    with store.engine.connect() as conn:
        rows = conn.execute(select(r.content).where(r.rid.in_(owners), or_(r.deleted.is_(False))))
        for (content,) in rows:
            import orjson

            loaded = _load_content(content)
            if loaded is not None:
                out.append(orjson.loads(loaded))
    return out
