"""AuditEvent for every request that touches patient data or is refused — stored in the same database.

Who: the client id (agent.altId, agent.name, agent.who.identifier); what: the resources (entity.what) and
the query (entity.query, base64); when: recorded; outcome: 0 success, 4 refused or invalid, 8 server
failure. `AuditEvent?patient=<id>` or `?entity=Patient/<id>` answers who read a patient's record.

Events are written in batches by a per-process writer, at most FLUSH_SECONDS after the request (one
transaction per batch instead of one per read); reading the audit trail flushes first, and a worker
flushes when it stops. A worker killed outright loses at most the last FLUSH_SECONDS of its events.
"""
from __future__ import annotations

import atexit
import base64
import logging
import threading
import time
from typing import Any

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
    entities: list[dict[str, Any]] = []
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
    current_app.extensions["lbp"].audit.put(event)


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


FLUSH_SECONDS = 0.1


class AuditWriter:
    """Buffers AuditEvents and writes them in one transaction per batch, from a background thread."""

    def __init__(self, store):
        self.store = store
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        atexit.register(self.close)
        store.before_dispose.append(self.close)

    def put(self, event: dict) -> None:
        with self._lock:
            self._pending.append(event)
            start = not self._closed and (self._thread is None or not self._thread.is_alive())
            if start:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
        if self._closed:
            self.flush()

    def _run(self) -> None:
        while not self._wake.wait(FLUSH_SECONDS):
            if not self.flush():
                with self._lock:
                    if not self._pending:
                        self._thread = None
                        return
        self._wake.clear()

    def close(self) -> None:
        """Stop the background writer and write what is pending (at dispose and interpreter exit)."""
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._wake.set()
            thread.join(timeout=5)
        self.flush()

    def flush(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            with self.store.transaction() as tx:
                for event in batch:
                    tx.create(event)
        except Exception as exc:  # noqa: BLE001 — a lost audit batch must be visible in the log
            log.error("%d audit events not written: %s", len(batch), type(exc).__name__)
        return len(batch)
