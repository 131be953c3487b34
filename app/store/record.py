"""A patient's record from the store: the Patient and every resource of the data-contract types about them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select

from . import schema
from .db import Store, Stored, _load_content
from .search import _content, _date_cond

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


def compartment_page(store: Store, patient_id: str, params: Mapping[str, Sequence[str]], *, since: str | None,
                     offset: int, count: int) -> tuple[int, list[Stored]]:
    """One page of the resources in a patient's compartment, ordered by type and id, and how many there are.

    `params`: resource type -> the reference parameters that put a resource of it in the compartment (a resource
    that refers to the patient by several of them is counted once). Only the page's rows are read: the others
    are counted in the database. `since`: a FHIR date(time) the resources were last updated on or after
    (`_lastUpdated=ge…`)."""
    if not params:
        return 0, []
    ref, r = schema.idx_reference.c, schema.resources.c
    owners = select(ref.rid).where(
        ref.target_type == "Patient", ref.target_id == patient_id,
        or_(*[and_(ref.res_type == t, ref.param.in_(_row_params(store, t, names))) for t, names in params.items()]),
    )
    conds: list[Any] = [r.rid.in_(owners), r.res_type.in_(list(params)), r.deleted.is_(False)]
    if since:
        conds.append(_date_cond(r.last_updated, r.last_updated, f"ge{since}", "_since"))
    with store.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(schema.resources).where(*conds)).scalar_one()
        rows = conn.execute(
            select(r.res_type, r.res_id, r.version, r.last_updated, _content(store), r.rid)
            .where(*conds).order_by(r.res_type, r.res_id).limit(count).offset(offset)
        ).all()
    return total, [Stored(row[0], row[1], row[2], row[3], False, _load_content(row[4]), rid=row[5]) for row in rows]


def _row_params(store: Store, res_type: str, names: Sequence[str]) -> list[str]:
    """The parameters whose index rows hold `names`' references: a derived one (`patient` =
    `subject.where(resolve() is Patient)`) is stored under its source's rows; the compartment query asks for the
    Patient target itself."""
    out: set[str] = set()
    for name in names:
        stored = store.search_params.stored_as(res_type, name)
        out.update(stored.params if stored is not None else (name,))
    return sorted(out)
