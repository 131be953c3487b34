"""AuditEvent for every request that touches patient data or is refused — stored in the same database.

Who: the client id (agent.altId, agent.name, agent.who.identifier); what: the resources (entity.what) and
the query (entity.query, base64); when: recorded; outcome: 0 success, 4 refused or invalid, 8 server
failure. `AuditEvent?patient=<id>` or `?entity=Patient/<id>` answers who read a patient's record.
"""
from __future__ import annotations

import base64
import logging
import time

from flask import Response, current_app, g, request

from app.store.db import instant

from . import client_id, note

log = logging.getLogger("lbp")

INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
MAX_ENTITIES = 500


def record(response: Response) -> None:
    n = g.get("audit")
    if n is None or not n.sensitive:
        return
    status = response.status_code
    outcome = "0" if status < 400 else ("8" if status >= 500 else "4")
    event = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": INTERACTION_SYSTEM, "code": n.interaction or "operation"}],
        "action": n.action,
        "recorded": instant(time.time()),
        "outcome": outcome,
        "outcomeDesc": f"HTTP {status}",
        "agent": [{
            "who": {"identifier": {"system": "urn:lbp-pathway:client", "value": client_id()}},
            "altId": client_id(),
            "name": client_id(),
            "requestor": True,
            "network": {"address": request.remote_addr or "unknown", "type": "2"},
        }],
        "source": {"observer": {"display": "lbp-pathway FHIR server"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]},
    }
    entities = []
    seen = set()
    for ref in n.entities[:MAX_ENTITIES]:
        if ref not in seen:
            seen.add(ref)
            entities.append({"what": {"reference": ref}})
    if n.query is not None:
        entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                         "name": n.resource_type or "", "query": base64.b64encode(n.query.encode()).decode()})
    elif n.resource_type and not entities:
        entities.append({"name": n.resource_type})
    if entities:
        event["entity"] = entities
    store = current_app.extensions["lbp"].store
    try:
        with store.transaction() as tx:
            tx.create(event)
    except Exception as exc:  # the response is already decided; a lost audit row must be visible in the log
        log.error("audit event not written: %s", type(exc).__name__)


def patient_refs(resource: dict) -> list[str]:
    """The patient(s) a resource is about: itself, or its subject/patient/beneficiary reference."""
    if resource.get("resourceType") == "Patient" and resource.get("id"):
        return [f"Patient/{resource['id']}"]
    out = []
    for key in ("subject", "patient", "beneficiary"):
        ref = (resource.get(key) or {}).get("reference") if isinstance(resource.get(key), dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            out.append(ref)
    return out


def add_entities(*refs: str) -> None:
    note().entities.extend(refs)
