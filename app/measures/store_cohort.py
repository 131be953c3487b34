"""Patients' records read from the store in bulk (one query per type family), for Measure evaluation."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import and_, select

from app.store import schema
from app.store.db import Store, _load_content
from app.store.record import PATIENT_PARAMS, RECORD_TYPES

BATCH = 500  # patients per round trip: bounded memory whatever the cohort's size


def patient_ids(store: Store) -> list[str]:
    r = schema.resources.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(r.res_id).where(r.res_type == "Patient", r.deleted.is_(False)).order_by(r.res_id))
        return [row[0] for row in rows]


def cohort_records(store: Store, ids: list[str] | None = None) -> Iterator[list[dict[str, Any]]]:
    """[Patient, ...record] per patient (as `patient_record` reads it), BATCH patients per pair of queries."""
    ids = patient_ids(store) if ids is None else ids
    r, ref = schema.resources.c, schema.idx_reference.c
    with store.engine.connect() as conn:
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            patients = {
                res_id: orjson.loads(_load_content(content))
                for res_id, content in conn.execute(
                    select(r.res_id, r.content).where(r.res_type == "Patient", r.res_id.in_(chunk),
                                                      r.deleted.is_(False)))
            }
            owned = (select(ref.target_id, r.rid, r.content)
                     .join(schema.resources, schema.resources.c.rid == ref.rid)
                     .where(ref.res_type.in_(RECORD_TYPES), ref.param.in_(PATIENT_PARAMS),
                            and_(ref.target_type == "Patient", ref.target_id.in_(chunk)), r.deleted.is_(False)))
            by_patient: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
            for target, rid, content in conn.execute(owned):
                if rid not in by_patient[target]:  # a resource indexed under both patient and subject
                    by_patient[target][rid] = orjson.loads(_load_content(content))
            for pid in chunk:
                if pid in patients:
                    yield [patients[pid], *by_patient.get(pid, {}).values()]
