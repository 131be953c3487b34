"""AuditEvent for every request that touches patient data or is refused — stored in the same database.

Who: the client id (agent.altId, agent.name, agent.who.identifier) and, on the clinician pages, the Practitioner
the browser session was opened for (a second agent); what: the resources (entity.what) and
the queries (entity.query, base64); when: recorded; outcome: 0 success, 4 refused or invalid, 8 server
failure. `AuditEvent?patient=<id>` or `?entity=Patient/<id>` answers who read a patient's record.

The audit never fails open:
- a write's AuditEvent is created inside the write's own database transaction (`Store.before_commit`),
  so a committed write always has its event, and a write whose event cannot be stored is not committed;
- a successful read or search of patient data is answered only after its AuditEvent is stored; when it
  cannot be stored the answer is 503 with an OperationOutcome instead of the data. Concurrent readers
  share one transaction (group commit): whoever holds the write first stores everyone's waiting events;
- refusals and failures are written in batches by a per-process writer, at most FLUSH_SECONDS later.
"""
from __future__ import annotations

import atexit
import base64
import logging
import threading
import time
from typing import Any

from flask import Response, current_app, g, has_request_context, request

from app.errors import FHIRError
from app.store.db import instant

from . import AuditNote, client_id, note

log = logging.getLogger("lbp")

INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
MAX_ENTITIES = 500
MAX_QUERY_CHARS = 4096


def build_event(n: AuditNote, status: int, *, outcome_desc: str | None = None,
                extra_entities: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    outcome = "0" if status < 400 else ("8" if status >= 500 else "4")
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": INTERACTION_SYSTEM, "code": n.interaction or "operation"}],
        "action": n.action,
        "recorded": instant(time.time()),
        "outcome": outcome,
        "outcomeDesc": outcome_desc or f"HTTP {status}",
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
    if n.person:
        # the person at the client: named when the clinician session was opened, not proven by the token
        event["agent"].append({"who": {"reference": n.person}, "requestor": True,
                               "type": {"text": "clinician named at sign-in"}})
    entities: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ref in [*n.entities, *extra_entities]:
        if len(seen) >= MAX_ENTITIES:
            break
        if ref not in seen:
            seen.add(ref)
            entities.append({"what": {"reference": ref}})
    queries = ([(n.resource_type or "", n.query)] if n.query is not None else []) + list(n.queries)
    for rtype, query in queries[:MAX_ENTITIES]:
        entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                         "name": rtype, "query": base64.b64encode(query[:MAX_QUERY_CHARS].encode()).decode()})
    if n.resource_type and not entities:
        entities.append({"name": n.resource_type})
    if entities:
        event["entity"] = entities
    return event


def record(response: Response) -> Response:
    """Store the request's AuditEvent; a patient-data answer whose event cannot be stored becomes a 503."""
    n = g.get("audit")
    if n is None or not n.sensitive:
        return response
    status = response.status_code
    if n.audited_in_write and status < 400:
        return response  # committed together with the write
    writer = current_app.extensions["lbp"].audit
    event = build_event(n, status)
    if status >= 400:
        writer.put(event)
        return response
    if writer.store_now(event):
        return response
    log.error("patient data not served: its AuditEvent could not be stored (%s)", writer.last_error or "error")
    err = FHIRError("transient", "The audit trail cannot be written at the moment, so patient data is not served; "
                    "retry later", "AuditEvent", status=503, headers={"Retry-After": "5"})
    out = current_app.response_class(__import__("orjson").dumps(err.outcome()), status=503,
                                     mimetype="application/fhir+json")
    out.headers["Retry-After"] = "5"
    return out


def audit_write(tx: Any) -> None:
    """`Store.before_commit` hook: the AuditEvent of a write request, inside the write's own transaction."""
    if not has_request_context():
        return
    n = g.get("audit")
    if n is None or not n.sensitive:
        return
    written = [s for s in tx.written if s.res_type != "AuditEvent"]
    if not written:
        return
    refs: list[str] = []
    for stored in written[:MAX_ENTITIES]:
        refs.append(f"{stored.res_type}/{stored.res_id}")
        if stored.content is not None and stored.res_type != "Patient":
            try:
                refs.extend(patient_refs(stored.resource()))
            except ValueError:
                pass
    tx.create(build_event(n, 200, outcome_desc="committed", extra_entities=refs))
    n.audited_in_write = True


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


def add_query(res_type: str, query: str, matched: list[str], patients: list[str] | None = None) -> None:
    """A conditional lookup (conditional reference, ifNoneExist, conditional update/delete), what it matched
    and the patients those are about: the lookup is found under each of them."""
    n = note()
    n.sensitive = True
    n.queries.append((res_type, query))
    n.entities.extend(f"{res_type}/{i}" for i in matched[:MAX_ENTITIES])
    n.entities.extend((patients or [])[:MAX_ENTITIES])


def record_token_refusal(error: str, status: int) -> None:
    """A refused /auth/token request: who asked (the claimed client, unverified) and why, as an AuditEvent."""
    n = AuditNote(interaction="token", action="E", sensitive=True)
    event = build_event(n, status, outcome_desc=f"token refused: {error}")
    event["subtype"] = [{"system": "urn:lbp-pathway:audit", "code": "token"}]
    claimed = _claimed_client()
    event["agent"][0]["who"] = {"identifier": {"system": "urn:lbp-pathway:client", "value": claimed}}
    event["agent"][0]["altId"] = event["agent"][0]["name"] = claimed
    current_app.extensions["lbp"].audit.put(event)


def _claimed_client() -> str:
    import jwt

    assertion = request.form.get("client_assertion") or ""
    try:
        iss = jwt.decode(assertion[:16384], options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        iss = None
    return f"unverified:{iss[:100]}" if isinstance(iss, str) and iss else "anonymous"


FLUSH_SECONDS = 0.1
RETRY_SECONDS = 5.0


class _Ticket:
    __slots__ = ("event", "done", "ok")

    def __init__(self, event: dict):
        self.event = event
        self.done = False
        self.ok = False


class AuditWriter:
    """Stores AuditEvents: synchronously for served patient data (group commit), in batches for the rest."""

    def __init__(self, store):
        self.store = store
        self._pending: list[dict] = []
        self._waiting: list[_Ticket] = []
        self._lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.last_error: str | None = None
        atexit.register(self.close)
        store.before_dispose.append(self.close)
        store.before_commit.append(audit_write)

    def put(self, event: dict) -> None:
        with self._lock:
            self._pending.append(event)
            start = not self._closed and (self._thread is None or not self._thread.is_alive())
            if start:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
        if self._closed:
            self.flush()

    def store_now(self, event: dict) -> bool:
        """Store `event` (with whatever else waits) before returning; False when it could not be stored."""
        ticket = _Ticket(event)
        with self._lock:
            self._waiting.append(ticket)
        with self._store_lock:
            if not ticket.done:
                with self._lock:
                    tickets, self._waiting = self._waiting, []
                    batch, self._pending = self._pending, []
                ok = self._write([t.event for t in tickets] + batch)
                if not ok:
                    with self._lock:
                        self._pending[:0] = batch  # refusals are kept for the next attempt
                for t in tickets:
                    t.ok, t.done = ok, True
        return ticket.ok

    def _run(self) -> None:
        # after a failed write (full disk, read-only database) retry every few seconds, not ten times a second
        while not self._wake.wait(FLUSH_SECONDS if self.last_error is None else RETRY_SECONDS):
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
        with self._store_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            if not self._write(batch):
                with self._lock:
                    if len(self._pending) < 10_000:  # kept for the next attempt, within reason
                        self._pending[:0] = batch
                return 0
            return len(batch)

    def _write(self, events: list[dict]) -> bool:
        if not events:
            return True
        try:
            with self.store.transaction() as tx:
                for event in events:
                    tx.create(event)
        except Exception as exc:  # noqa: BLE001 — a lost audit batch must be visible in the log
            from app.store.errors import describe

            self.last_error = describe(exc)
            log.error("%d audit events not written: %s", len(events), self.last_error)
            return False
        self.last_error = None
        return True
