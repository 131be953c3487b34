"""FHIR batch and transaction — https://hl7.org/fhir/R4/http.html#transaction

A transaction is all or nothing: ids are assigned, `urn:uuid:` / relative references rewritten and
conditional references (`Patient?identifier=…`) resolved before anything is written, then every entry
is written in one database transaction in the spec's order (DELETE, POST, PUT, GET). Any failure rolls
everything back and the OperationOutcome names the failing entry. A batch answers for each entry on its own
(a failing entry fails alone), and its writes share one database transaction with a savepoint per entry.
Every resource is admitted by `app.records`; a POSTed QuestionnaireResponse is scored and its
Observations extracted in the same database transaction, as on `POST /QuestionnaireResponse`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from flask import current_app, request

from app import auth as access
from app.auth import audit
from app.errors import FHIRError
from app.records import admit, after_write, conditional_ids, scored
from app.records.bulk import bulk_write
from app.store.db import Stored, Transaction, instant, new_id
from app.store.indexing import extract

from .http import MAX_DEPTH, base_url, json_body

log = logging.getLogger("lbp")
METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    method: str
    url: str
    full_url: str | None
    resource: dict | None
    if_none_exist: str | None = None
    if_match: str | None = None
    # resolved before writing
    res_type: str | None = None
    res_id: str | None = None
    skip_with: Stored | None = None  # ifNoneExist matched an existing resource
    index_rows: Any = None
    response: dict = field(default_factory=dict)
    out_resource: Any = None
    derived: list[dict] = field(default_factory=list)  # Observations extracted from a created response

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def process_bundle():
    size = request.content_length or 0
    with bulk_write(size // 2000):  # a Synthea entry is 1-3 kB of JSON
        return _process_bundle()


def _process_bundle():
    bundle = json_body("Bundle", check_nesting=False)  # entries are checked while references are rewritten
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FHIRError("invalid", "POST to the base takes a Bundle of type transaction or batch",
                        "Bundle.resourceType")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise FHIRError("invalid", f"Bundle.type must be transaction or batch, not '{kind}'", "Bundle.type")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise FHIRError("structure", "Bundle.entry must be an array", "Bundle.entry")
    limit = current_app.config["MAX_BUNDLE_ENTRIES"]
    if len(raw_entries) > limit:
        raise FHIRError("too-costly", f"The Bundle has {len(raw_entries)} entries; this server takes at most {limit}",
                        "Bundle.entry", status=413)
    entries = [_parse_entry(i, e, kind) for i, e in enumerate(raw_entries)]
    access.note().interaction = kind
    if kind == "transaction":
        for e in entries:  # one forbidden entry refuses the whole transaction, before anything is written
            _authorize(e)
        return _respond(_transaction(entries), "transaction-response")
    return _respond(_batch(entries), "batch-response")


def _authorize(e: Entry) -> None:
    path, _, query = e.url.partition("?")
    rtype = path.strip("/").split("/")[0]
    if e.method == "GET":
        permission = "s" if (query or "/" not in path.strip("/")) else "r"
    else:
        permission = {"POST": "c", "PUT": "u", "DELETE": "d"}[e.method]
    access.require(rtype, permission, f"{e.where}.request")
    # A conditional lookup answers a search (its status says whether anything matched): it needs the search scope.
    if e.method == "POST" and e.if_none_exist:
        access.require(rtype, "s", f"{e.where}.request.ifNoneExist")
    if e.method in ("PUT", "DELETE") and query:
        access.require(rtype, "s", f"{e.where}.request.url")


def _parse_entry(index: int, raw: Any, kind: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise FHIRError("structure", "A Bundle entry must be an object", where)
    req = raw.get("request")
    if not isinstance(req, dict) or not req.get("method") or not req.get("url"):
        raise FHIRError("required", f"Every {kind} entry needs request.method and request.url (bdl-3)",
                        f"{where}.request")
    for name in ("method", "url", "ifNoneExist", "ifMatch", "ifNoneMatch", "ifModifiedSince"):
        if name in req and req[name] is not None and not isinstance(req[name], str):
            raise FHIRError("structure", f"request.{name} must be a string", f"{where}.request.{name}")
    if "fullUrl" in raw and raw["fullUrl"] is not None and not isinstance(raw["fullUrl"], str):
        raise FHIRError("structure", "fullUrl must be a string", f"{where}.fullUrl")
    if "resource" in raw and raw["resource"] is not None and not isinstance(raw["resource"], dict):
        raise FHIRError("structure", "resource must be a JSON object", f"{where}.resource")
    method = str(req["method"]).upper()
    if method not in METHOD_ORDER or method in ("PATCH", "HEAD"):
        raise FHIRError("not-supported", f"request.method {method} is not supported", f"{where}.request.method")
    resource = raw.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise FHIRError("required", f"A {method} entry needs a resource", f"{where}.resource")
    full_url = raw.get("fullUrl")
    return Entry(index, method, str(req["url"]), full_url if isinstance(full_url, str) else None, resource,
                 req.get("ifNoneExist"), req.get("ifMatch"))


# ------------------------------------------------------------------ transaction

def _transaction(entries: list[Entry]) -> list[Entry]:
    lbp = current_app.extensions["lbp"]
    seen_full_urls: set[str] = set()
    for e in entries:
        if e.full_url and e.method in ("POST", "PUT"):
            if e.full_url in seen_full_urls:
                raise FHIRError("invalid", f"fullUrl {e.full_url} appears twice (bdl-7)", f"{e.where}.fullUrl")
            seen_full_urls.add(e.full_url)
    # Phase 1, outside the write lock so that other requests keep writing meanwhile: assign ids, resolve
    # conditional references and ifNoneExist, rewrite references, validate, compute index rows.
    with lbp.store.engine.connect() as conn:
        lookups = Lookups(conn)
        _plan(entries, lookups)
    # Phase 2, under the write lock: confirm that what phase 1 looked up still holds, then write.
    with lbp.store.transaction() as tx:
        lookups.confirm(tx)
        for e in sorted(entries, key=lambda x: METHOD_ORDER[x.method]):
            _execute(e, tx)
        written = list(tx.written)
    after_write(written)
    return entries


def _plan(entries: list[Entry], lookups: Lookups) -> None:
    """Phase 1: ids, references and conditional lookups resolved; every resource admitted and its index rows made."""
    id_map = _assign_ids(entries, lookups)
    resolver = _ReferenceResolver(id_map, lookups)
    for e in entries:
        if e.resource is not None and e.method in ("POST", "PUT"):
            resolver.rewrite(e.resource, e.where)
            if e.skip_with is None:
                _admit_entry(e)


def _admit_entry(e: Entry) -> None:
    """Admit the entry's resource; a created QuestionnaireResponse is scored and extracted, as on POST."""
    assert e.resource is not None and e.res_id is not None
    where = f"{e.where}.resource"
    admit(e.resource, expected_type=e.res_type, where=where)
    if e.method == "POST" and e.res_type == "QuestionnaireResponse":
        ready = scored(e.resource, where=where)
        e.resource = ready.response
        e.derived = ready.observations(e.res_id, where=where)
    e.index_rows = extract(e.resource)


class Lookups:
    """Conditional lookups made while planning, so the write phase can confirm they still hold."""

    def __init__(self, conn):
        self.conn = conn
        self.made: dict[tuple[str, str], list[str]] = {}
        self.reads: dict[tuple[str, str], int | None] = {}

    def ids(self, res_type: str, query: str) -> list[str]:
        key = (res_type, query)
        if key not in self.made:
            self.made[key] = conditional_ids(res_type, query, self.conn)
            patients: list[str] = []
            if res_type != "Patient":  # audited under the patients of what it matched, too
                for res_id in self.made[key]:
                    stored = current_app.extensions["lbp"].store.read(res_type, res_id, self.conn)
                    if stored is not None and stored.content is not None and not stored.deleted:
                        patients.extend(audit.patient_refs(stored.resource()))
            audit.add_query(res_type, query, self.made[key], patients)
        return self.made[key]

    def read(self, res_type: str, res_id: str) -> Stored | None:
        stored = current_app.extensions["lbp"].store.read(res_type, res_id, self.conn)
        self.reads[(res_type, res_id)] = None if stored is None else stored.version
        return stored

    def confirm(self, tx: Transaction) -> None:
        changed = self.changed(tx)
        if changed is not None:
            raise FHIRError("conflict", f"{changed} changed while the request was processed; retry",
                            "Bundle.entry", status=409)

    def changed(self, tx: Transaction) -> str | None:
        """The first lookup whose answer inside `tx` differs from the one planned with, else None."""
        for (res_type, query), ids in self.made.items():
            if conditional_ids(res_type, query, tx.conn) != ids:
                return f"{res_type}?{query}"
        for (res_type, res_id), version in self.reads.items():
            now = tx.read(res_type, res_id)
            if (None if now is None else now.version) != version:
                return f"{res_type}/{res_id}"
        return None


def _assign_ids(entries: list[Entry], tx: Lookups) -> dict[str, str]:
    """fullUrl -> `Type/id` for every entry that creates or updates a resource."""
    base = base_url()
    id_map: dict[str, str] = {}
    for e in entries:
        if e.method == "POST":
            _target_of_create(e, tx)
        elif e.method == "PUT":
            _target_of_update(e, tx)
        elif e.method == "DELETE":
            _target_of_delete(e, tx)
        if e.method in ("POST", "PUT") and e.res_type and e.res_id:
            local = f"{e.res_type}/{e.res_id}"
            if e.full_url:
                id_map[e.full_url] = local
                if e.full_url.startswith(base + "/"):
                    id_map[e.full_url[len(base) + 1:]] = local
    return id_map


def _target_of_create(e: Entry, tx: Lookups) -> None:
    """POST: a new id, or the existing resource ifNoneExist matches (then nothing is written)."""
    rtype = e.url.split("?", 1)[0].strip("/")
    _check_url_type(e, rtype)
    e.res_type = rtype
    if e.if_none_exist:
        ids = tx.ids(rtype, e.if_none_exist.lstrip("?"))
        if len(ids) > 1:
            raise FHIRError("multiple-matches", f"ifNoneExist matches {len(ids)} or more resources",
                            f"{e.where}.request.ifNoneExist", status=412)
        if ids:
            e.res_id = ids[0]
            e.skip_with = tx.read(rtype, ids[0])
    if e.res_id is None:
        e.res_id = new_id()


def _target_of_update(e: Entry, tx: Lookups) -> None:
    """PUT `Type/id`, or conditional `Type?query` (the one match, else the resource's id, else a new one)."""
    path, _, query = e.url.partition("?")
    parts = path.strip("/").split("/")
    rtype = parts[0]
    _check_url_type(e, rtype)
    e.res_type = rtype
    if query:
        ids = tx.ids(rtype, query)
        if len(ids) > 1:
            raise FHIRError("multiple-matches", "The conditional update matches more than one resource",
                            f"{e.where}.request.url", status=412)
        e.res_id = ids[0] if ids else (e.resource or {}).get("id") or new_id()
    elif len(parts) == 2:
        e.res_id = parts[1]
    else:
        raise FHIRError("invalid", f"PUT url must be Type/id or Type?query, got '{e.url}'", f"{e.where}.request.url")


def _target_of_delete(e: Entry, tx: Lookups) -> None:
    """DELETE `Type/id`, or conditional `Type?query` (no match: nothing to delete)."""
    path, _, query = e.url.partition("?")
    parts = path.strip("/").split("/")
    _check_url_type(e, parts[0])
    e.res_type = parts[0]
    if query:
        ids = tx.ids(parts[0], query)
        if len(ids) > 1:
            raise FHIRError("multiple-matches", "The conditional delete matches more than one resource",
                            f"{e.where}.request.url", status=412)
        e.res_id = ids[0] if ids else None
    elif len(parts) == 2:
        e.res_id = parts[1]
    else:
        raise FHIRError("invalid", f"DELETE url must be Type/id or Type?query, got '{e.url}'",
                        f"{e.where}.request.url")


def _check_url_type(e: Entry, rtype: str) -> None:
    lbp = current_app.extensions["lbp"]
    if rtype not in lbp.resource_types:
        raise FHIRError("not-supported", f"Unknown resource type '{rtype}' in request.url", f"{e.where}.request.url")
    if e.resource is not None and e.resource.get("resourceType") != rtype:
        raise FHIRError("invalid", f"request.url names {rtype} but the resource is "
                        f"{e.resource.get('resourceType')}", f"{e.where}.resource.resourceType")


class _ReferenceResolver:
    """Rewrites references inside one bundle; conditional references are looked up once each."""

    def __init__(self, id_map: dict[str, str], tx: Lookups):
        self.id_map = id_map
        self.tx = tx
        self.base = base_url() + "/"
        self.conditional: dict[str, str] = {}
        self.rewritten: list[tuple[dict, str]] = []  # (node, its reference as submitted)

    def undo(self) -> None:
        """Put every rewritten reference back as submitted (a batch entry planned again)."""
        for node, ref in self.rewritten:
            node["reference"] = ref
        self.rewritten.clear()

    def rewrite(self, resource: dict, where: str) -> None:
        """Rewrite every Reference.reference in place; also enforces the nesting limit (one walk for both)."""
        stack: list[tuple[Any, int]] = [(resource, 0)]
        pop, push = stack.pop, stack.append
        while stack:
            node, depth = pop()
            if depth > MAX_DEPTH:
                raise FHIRError("too-costly", f"JSON nested deeper than {MAX_DEPTH} levels", f"{where}.resource")
            if type(node) is dict:
                ref = node.get("reference")
                if ref.__class__ is str:
                    resolved = self._resolve(ref, where)
                    if resolved is not ref:
                        node["reference"] = resolved
                        self.rewritten.append((node, ref))
                for v in node.values():
                    if type(v) in (dict, list):
                        push((v, depth + 1))
            else:
                for v in node:
                    if type(v) in (dict, list):
                        push((v, depth + 1))

    def _resolve(self, ref: str, where: str) -> str:
        mapped = self.id_map.get(ref)
        if mapped is not None:
            return mapped
        if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
            raise FHIRError("not-found", f"Reference {ref} does not match any fullUrl in the Bundle",
                            f"{where}.resource")
        if ref.startswith(self.base):
            return ref[len(self.base):]
        if "?" in ref and not ref.startswith(("http://", "https://")):
            cached = self.conditional.get(ref)
            if cached is None:
                rtype, _, query = ref.partition("?")
                lbp = current_app.extensions["lbp"]
                if rtype not in lbp.resource_types:
                    raise FHIRError("invalid", f"Conditional reference '{ref}' names an unknown type",
                                    f"{where}.resource")
                access.require(rtype, "s", f"{where}.resource")  # the lookup's outcome answers a search
                ids = self.tx.ids(rtype, query)
                if len(ids) != 1:
                    found = "no resource" if not ids else "more than one resource"
                    raise FHIRError("not-found" if not ids else "multiple-matches",
                                    f"Conditional reference '{ref}' matches {found}", f"{where}.resource",
                                    status=404 if not ids else 412)
                cached = self.conditional[ref] = f"{rtype}/{ids[0]}"
            return cached
        return ref


def _execute(e: Entry, tx: Transaction) -> None:
    where = e.where
    if e.method == "POST":
        if e.skip_with is not None:
            _set_response(e, e.skip_with, "200 OK")
            return
        assert e.resource is not None and e.res_id is not None
        e.resource["id"] = e.res_id
        stored = tx.create(e.resource, res_id=e.res_id, known_new=True, index_rows=e.index_rows)
        for observation in e.derived:
            tx.create(observation)
        _set_response(e, stored, "201 Created")
    elif e.method == "PUT":
        assert e.resource is not None and e.res_id is not None
        if e.resource.get("id") not in (None, e.res_id):
            raise FHIRError("invalid", f"The resource id '{e.resource.get('id')}' does not match request.url",
                            f"{where}.resource.id")
        e.resource["id"] = e.res_id
        if_match = _if_match(e)
        stored, created = tx.update(e.resource, if_match=if_match, index_rows=e.index_rows)
        _set_response(e, stored, "201 Created" if created else "200 OK")
    elif e.method == "DELETE":
        if e.res_id is None:
            e.response = {"status": "204 No Content"}
            return
        tx.delete(e.res_type or "", e.res_id, if_match=_if_match(e))
        e.response = {"status": "204 No Content"}
    else:  # GET
        e.out_resource, status = _get(e, tx)
        e.response = {"status": status}


def _if_match(e: Entry) -> int | None:
    if not e.if_match:
        return None
    from .http import parse_etag

    return parse_etag(e.if_match, f"{e.where}.request.ifMatch")


def _set_response(e: Entry, stored: Stored, status: str) -> None:
    e.response = {
        "status": status,
        "location": f"{stored.res_type}/{stored.res_id}/_history/{stored.version}",
        "etag": stored.etag,
        "lastModified": instant(stored.last_updated),
    }
    e.out_resource = stored


def _get(e: Entry, tx: Transaction | None) -> tuple[Any, str]:
    from .search import search_bundle

    path, _, query = e.url.partition("?")
    parts = path.strip("/").split("/")
    lbp = current_app.extensions["lbp"]
    if len(parts) == 2 and not query:
        stored = tx.read(parts[0], parts[1]) if tx else lbp.store.read(parts[0], parts[1])
        if stored is None or stored.deleted:
            raise FHIRError("not-found", f"{e.url} is not known", f"{e.where}.request.url")
        return stored, "200 OK"
    if len(parts) == 1 and parts[0] in lbp.resource_types:
        resp = search_bundle(parts[0], parse_qsl(query, keep_blank_values=True))
        return resp.get_data(), "200 OK"
    raise FHIRError("not-supported", f"GET {e.url} is not supported inside a Bundle", f"{e.where}.request.url")


# ------------------------------------------------------------------ batch

@dataclass
class _BatchPlan:
    """A batch entry's planning: its own lookups (confirmed under the write lock) and rewritten references."""

    lookups: Lookups
    resolver: _ReferenceResolver
    submitted: dict | None  # the resource as submitted (admission may replace e.resource)


def _batch(entries: list[Entry]) -> list[Entry]:
    """Each entry stands alone (its own status, a failure fails it alone), and the writes commit together.

    Phase 1, outside the write lock: every entry is authorized, targeted, rewritten and admitted. Phase 2:
    one database transaction with a savepoint per entry; an entry whose lookups no longer hold (another
    writer, or an earlier entry of this batch, changed what they matched) is planned again inside it.
    Phase 3, after the commit: the GET entries, which so see every write of the batch.
    """
    lbp = current_app.extensions["lbp"]
    plans: dict[int, _BatchPlan] = {}
    reads: list[Entry] = []
    with lbp.store.engine.connect() as conn:
        for e in entries:
            try:
                _authorize(e)
                if e.method == "GET":
                    reads.append(e)
                    continue
                plans[e.index] = _plan_batch_entry(e, Lookups(conn))
            except Exception as exc:  # noqa: BLE001 — the entry fails alone
                _fail_entry(e, exc)
    if plans:
        with lbp.store.transaction() as tx:
            for e in entries:
                plan = plans.get(e.index)
                if plan is None:
                    continue
                try:
                    with tx.savepoint():
                        if plan.lookups.changed(tx) is not None:
                            plan.resolver.undo()
                            e.resource = plan.submitted
                            e.res_id = e.skip_with = e.index_rows = None
                            e.derived = []
                            _plan_batch_entry(e, Lookups(tx.conn))
                        _execute(e, tx)
                except Exception as exc:  # noqa: BLE001 — the entry fails alone; the others still commit
                    _fail_entry(e, exc)
            written = list(tx.written)
        after_write(written)
    for e in reads:
        try:
            e.out_resource, status = _get(e, None)
            e.response = {"status": status}
        except Exception as exc:  # noqa: BLE001
            _fail_entry(e, exc)
    return entries


def _plan_batch_entry(e: Entry, lookups: Lookups) -> _BatchPlan:
    submitted = e.resource
    _assign_ids([e], lookups)
    resolver = _ReferenceResolver({}, lookups)
    if e.resource is not None:
        resolver.rewrite(e.resource, e.where)
        if e.skip_with is None:
            _admit_entry(e)
    return _BatchPlan(lookups, resolver, submitted)


def _fail_entry(e: Entry, exc: Exception) -> None:
    """The entry's response: its OperationOutcome (with expression), nothing written for it."""
    e.out_resource = None
    if isinstance(exc, FHIRError):
        e.response = {"status": str(exc.status), "outcome": exc.outcome()}
        return
    from app.store.errors import storage_cause

    found = storage_cause(exc)
    log.error("batch entry %d failed: %s", e.index, found[1] if found else type(exc).__name__)
    entry_status = found[0] if found else 500
    failure = FHIRError("exception", f"This entry was not applied: {found[1] if found else 'internal error'}",
                        f"{e.where}", status=entry_status)
    e.response = {"status": str(entry_status), "outcome": failure.outcome()}


# ------------------------------------------------------------------ response

def _respond(entries: list[Entry], kind: str):
    import orjson

    from .http import fhir_response

    base = base_url()
    # Written resources are echoed only on request: a region's bulk load should not get its data back.
    representation = "return=representation" in request.headers.get("Prefer", "")
    out = []
    for e in entries:
        entry: dict[str, Any] = {}
        if isinstance(e.out_resource, Stored):
            entry["fullUrl"] = f"{base}/{e.out_resource.res_type}/{e.out_resource.res_id}"
            if representation or e.method == "GET":
                entry["resource"] = orjson.Fragment(e.out_resource.content or b"null")  # as stored: exact decimals
        elif isinstance(e.out_resource, (bytes, bytearray)):
            entry["resource"] = orjson.loads(e.out_resource)
        entry["response"] = e.response
        out.append(entry)
    return fhir_response({"resourceType": "Bundle", "type": kind, "entry": out})
