"""Shared input handling for the reasoning operations: subject, record (server data and/or `data`), knowledge."""
from __future__ import annotations

from datetime import date
from typing import Any

from flask import current_app

from app import auth as access
from app.auth import audit
from app.errors import FHIRError
from app.store.record import RECORD_TYPES, patient_record


def knowledge_base():
    kb = current_app.extensions["lbp"].knowledge.base
    if kb is None:
        raise FHIRError("processing", "No knowledge is loaded on this server", "PlanDefinition")
    return kb


def subject_id(subject: Any) -> str:
    if not isinstance(subject, str) or not subject:
        raise FHIRError("required", "Parameter 'subject' (Patient/<id>) is required", "Parameters.parameter('subject')")
    if "/" in subject:
        rtype, _, rid = subject.rpartition("/")
        if rtype.rsplit("/", 1)[-1] != "Patient":
            raise FHIRError("not-supported", "Only Patient subjects are supported", "Parameters.parameter('subject')")
        return rid
    return subject


def gather_record(subject: str, data: Any, use_server_data: Any) -> list[dict]:
    """The patient's record from the store (unless useServerData=false) plus the caller's `data` Bundle."""
    pid = subject_id(subject)
    if data is not None and (not isinstance(data, dict) or data.get("resourceType") != "Bundle"):
        raise FHIRError("invalid", "Parameter 'data' must be a Bundle", "Parameters.parameter('data')")
    use_server = str(use_server_data).lower() != "false" if use_server_data is not None else True
    record: list[dict] = []
    if use_server:
        for t in ("Patient", *RECORD_TYPES):  # reading the record needs read access to each of its types
            access.require(t, "r", "Parameters.parameter('subject')")
        record = patient_record(current_app.extensions["lbp"].store, pid)
        audit.add_entities(f"Patient/{pid}")
    if data is not None:
        record.extend(e["resource"] for e in data.get("entry") or [] if isinstance(e, dict) and
                      isinstance(e.get("resource"), dict))
    if not any(r.get("resourceType") == "Patient" and r.get("id") == pid for r in record):
        raise FHIRError("not-found", f"Patient/{pid} is not known" + (" (and not in 'data')" if data else ""),
                        "Parameters.parameter('subject')")
    return record


def today_param(value: Any) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise FHIRError("invalid", "Parameter 'today' must be a date", "Parameters.parameter('today')") from None
