"""Persistence: versioned resources and their search index in one SQL transaction (SQLite or PostgreSQL)."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import and_, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from app.errors import FHIRError
from app.store import jsonio

from . import schema
from .indexing import IndexRows, extract, registry

# the artifacts (StructureDefinition: the project's extension definitions), public where knowledge is
KNOWLEDGE_TYPES = frozenset({
    "PlanDefinition", "ActivityDefinition", "Questionnaire", "ValueSet", "CodeSystem", "Library", "Measure",
    "StructureDefinition",
})


def now_epoch() -> float:
    return round(time.time(), 3)


def instant(epoch: float) -> str:
    """Epoch seconds -> FHIR instant with milliseconds, UTC."""
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def http_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Stored:
    """A stored version of a resource."""

    res_type: str
    res_id: str
    version: int
    last_updated: float
    deleted: bool
    content: bytes | None
    method: str = ""
    rid: int | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def resource(self) -> dict:
        assert self.content is not None
        return orjson.loads(self.content)


def _load_content(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    # PostgreSQL JSONB comes back as a dict; keep resourceType first for readers.
    ordered = {"resourceType": value.get("resourceType"), **value}
    return orjson.dumps(ordered)


class Store:
    """Owns the engine. Writes go through `transaction()`; reads use short connections."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = url
        self.dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs.update(connect_args={"check_same_thread": False}, poolclass=StaticPool)
            else:
                kwargs.update(connect_args={"check_same_thread": False, "timeout": 30})
        else:
            kwargs.update(
                pool_size=10, max_overflow=10, pool_pre_ping=True,
                json_serializer=lambda o: orjson.dumps(o).decode(), json_deserializer=orjson.loads,
            )
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # One writer at a time in this process: SQLite serialises writers anyway, and queueing
            # here avoids busy-wait retries inside the database.
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        self.search_params = registry()
        self.before_dispose: list = []  # e.g. flushing buffered audit events
        # Called with each Transaction just before it commits: the write's AuditEvent goes into it (app.auth.audit).
        self.before_commit: list = []
        mark = "%s" if self.dialect == "postgresql" else "?"
        content_mark = "CAST(%s AS jsonb)" if self.dialect == "postgresql" else "?"
        self.sql_insert_resource = (
            "INSERT INTO resources (rid, res_type, res_id, version, last_updated, deleted, content) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}, {content_mark})"
        )
        content_col = "content::text" if self.dialect == "postgresql" else "content"
        self.sql_read = (f"SELECT version, last_updated, deleted, {content_col}, rid FROM resources "
                         f"WHERE res_type = {mark} AND res_id = {mark}")
        # An update or delete reads the current version under a row lock on PostgreSQL: a concurrent writer
        # (another worker or host) waits for this transaction and then sees its version, so a conflicting
        # If-Match answers 412 instead of both writers racing to the history row. SQLite serializes writers.
        self.sql_read_for_update = self.sql_read + (" FOR UPDATE" if self.dialect == "postgresql" else "")
        self.sql_insert_index = {
            kind: f"INSERT INTO {table.name} ({', '.join(c.name for c in table.columns)}) "
                  f"VALUES ({', '.join([mark] * len(table.columns))})"
            for kind, table in schema.INDEX_TABLES.items()
        }
        schema.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            if conn.execute(select(schema.knowledge_epoch.c.epoch)).first() is None:
                conn.execute(insert(schema.knowledge_epoch).values(id=1, epoch=0))

    # ------------------------------------------------------------------ reads
    def read(self, res_type: str, res_id: str, conn: Connection | None = None, *,
             for_update: bool = False) -> Stored | None:
        with self._conn(conn) as c:
            row = c.exec_driver_sql(self.sql_read_for_update if for_update else self.sql_read,
                                    (res_type, res_id)).first()
        if row is None:
            return None
        return Stored(res_type, res_id, row[0], row[1], bool(row[2]), _load_content(row[3]), rid=row[4])

    def vread(self, res_type: str, res_id: str, version: int) -> Stored | None:
        current = self.read(res_type, res_id)
        if current is None:
            return None
        if current.version == version:
            return current
        h = schema.history.c
        with self._conn(None) as c:
            row = c.execute(
                select(h.last_updated, h.deleted, h.content, h.method).where(
                    h.res_type == res_type, h.res_id == res_id, h.version == version
                )
            ).first()
        if row is None:
            return None
        return Stored(res_type, res_id, version, row[0], bool(row[1]), _load_content(row[2]), row[3])

    def history(
        self,
        res_type: str | None = None,
        res_id: str | None = None,
        *,
        since: float | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[Stored]]:
        """Versions newest first, current and older ones together."""
        r, h = schema.resources.c, schema.history.c

        def conds(cols):
            out = []
            if res_type:
                out.append(cols.res_type == res_type)
            if res_id:
                out.append(cols.res_id == res_id)
            if since is not None:
                out.append(cols.last_updated >= since)
            return and_(*out) if out else True

        cur = select(
            r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content
        ).where(conds(r))
        old = select(h.res_type, h.res_id, h.version, h.last_updated, h.deleted, h.content).where(conds(h))
        union = cur.union_all(old).subquery()
        with self._conn(None) as c:
            total = c.execute(select(func.count()).select_from(union)).scalar_one()
            rows = c.execute(
                select(union)
                .order_by(union.c.last_updated.desc(), union.c.version.desc())
                .limit(count)
                .offset(offset)
            ).all()
        out = []
        for row in rows:
            method = "DELETE" if row[4] else ("POST" if row[2] == 1 else "PUT")
            out.append(Stored(row[0], row[1], row[2], row[3], bool(row[4]), _load_content(row[5]), method))
        return total, out

    def knowledge_epoch(self) -> int:
        with self._conn(None) as c:
            return c.execute(select(schema.knowledge_epoch.c.epoch)).scalar_one()

    def all_current(self, types: frozenset[str] | set[str]) -> Iterator[Stored]:
        r = schema.resources.c
        with self._conn(None) as c:
            for row in c.execute(
                select(r.res_type, r.res_id, r.version, r.last_updated, r.content).where(
                    r.res_type.in_(sorted(types)), r.deleted.is_(False)
                )
            ):
                yield Stored(row[0], row[1], row[2], row[3], False, _load_content(row[4]))

    @contextmanager
    def _conn(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as c:
                yield c

    # ------------------------------------------------------------------ writes
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All or nothing: everything written inside commits together, or nothing does."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.begin()
                tx = Transaction(self, conn)
                try:
                    yield tx
                    for hook in self.before_commit:
                        hook(tx)
                    tx.flush()
                    if tx.knowledge_changed:
                        conn.execute(
                            update(schema.knowledge_epoch).values(epoch=schema.knowledge_epoch.c.epoch + 1)
                        )
                except BaseException as exc:
                    if self.dialect == "sqlite":
                        conn.exec_driver_sql("ROLLBACK")
                    else:
                        conn.rollback()
                    if self.dialect == "postgresql" and isinstance(exc, IntegrityError):
                        # another worker or host wrote the same key first (e.g. two creates of one new id):
                        # this transaction is rolled back whole, as a conflict the client may retry
                        raise FHIRError("conflict", "a concurrent write changed the same resource; retry",
                                        "Bundle", status=409) from None
                    raise
                else:
                    if self.dialect == "sqlite":
                        conn.exec_driver_sql("COMMIT")
                    else:
                        conn.commit()
        finally:
            if lock is not None:
                lock.release()

    def probe_write(self) -> None:
        """Write a row and roll it back: raises at start-up when the database cannot be written at all."""
        with self.transaction() as tx:
            tx.conn.execute(insert(schema.knowledge_epoch).values(id=-1, epoch=0))
            raise _ProbeDone

    def dispose(self) -> None:
        for hook in self.before_dispose:
            hook()
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # The driver's own transaction handling is replaced by explicit BEGIN IMMEDIATE / COMMIT.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=OFF")
    cur.execute("PRAGMA temp_store=MEMORY")
    # 2 MB per connection: a worker keeps several pooled connections, and each one that wrote a large bundle
    # keeps its cache full (at 8 MB each, tens of MB per loading worker); pages beyond it come from the
    # operating system's file cache
    cur.execute("PRAGMA cache_size=-2048")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class _ProbeDone(Exception):
    """Rolls back the write probe."""


class Transaction:
    """Writes inside one database transaction; inserts are batched and flushed before any read."""

    def __init__(self, store: Store, conn: Connection):
        self.store = store
        self.conn = conn
        self.knowledge_changed = False
        self._new_rows: list[tuple] = []
        self._index_rows: dict[str, list[tuple]] = {k: [] for k in schema.INDEX_TABLES}
        self._pending_keys: set[tuple[str, str]] = set()
        self.written: list[Stored] = []
        self._rids: list[int] = []
        self._last_rid: int | None = None
        self._savepoints = 0

    def _next_rid(self) -> int:
        """Surrogate keys: SQLite counts on from max(rid) under its write lock; PostgreSQL takes sequence blocks."""
        if self.store.dialect == "sqlite":
            if self._last_rid is None:
                self._last_rid = self.conn.exec_driver_sql("SELECT coalesce(max(rid), 0) FROM resources").scalar_one()
            self._last_rid += 1
            return self._last_rid
        if not self._rids:
            self._rids = [row[0] for row in self.conn.exec_driver_sql(
                "SELECT nextval('resources_rid_seq') FROM generate_series(1, 256)")]
            self._rids.reverse()
        return self._rids.pop()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """One batch entry inside the shared transaction: when the block raises, what it wrote is undone
        (the SQL savepoint rolled back, its queued rows dropped) and the rest of the transaction stands.

        The block's rows are flushed before the savepoint is released, so a storage error (a unique key a
        concurrent writer took first, a full disk) fails this block alone.
        """
        self.flush()
        self._savepoints += 1
        name = f"entry_{self._savepoints}"
        written, knowledge_changed = len(self.written), self.knowledge_changed
        self.conn.exec_driver_sql(f"SAVEPOINT {name}")
        try:
            yield
            self.flush()
        except BaseException as exc:
            self._new_rows = []
            self._index_rows = {k: [] for k in schema.INDEX_TABLES}
            self._pending_keys.clear()
            del self.written[written:]
            self.knowledge_changed = knowledge_changed
            self.conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
            self.conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
            if isinstance(exc, IntegrityError):  # another writer took the same key first: retryable
                raise FHIRError("conflict", "a concurrent write changed the same resource; retry",
                                "Bundle.entry", status=409) from None
            raise
        self.conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")

    # reads inside the transaction see its own pending writes
    def read(self, res_type: str, res_id: str, *, for_update: bool = False) -> Stored | None:
        if (res_type, res_id) in self._pending_keys:
            self.flush()
        return self.store.read(res_type, res_id, self.conn, for_update=for_update)

    def flush(self) -> None:
        """The queued rows, one statement per table: executemany on SQLite, COPY on PostgreSQL (measured on
        Synthea bundles: COPY inserts about twice as fast as psycopg's pipelined executemany)."""
        if self.store.dialect == "postgresql":
            self._copy_rows()
            return
        if self._new_rows:
            self.conn.exec_driver_sql(self.store.sql_insert_resource, self._new_rows)
            self._new_rows = []
        for kind, rows in self._index_rows.items():
            if rows:
                self.conn.exec_driver_sql(self.store.sql_insert_index[kind], rows)
                self._index_rows[kind] = []
        self._pending_keys.clear()

    def _copy_rows(self) -> None:
        tables = [(schema.resources, self._new_rows)] + [
            (schema.INDEX_TABLES[kind], rows) for kind, rows in self._index_rows.items()]
        if not any(rows for _, rows in tables):
            return
        # the DBAPI connection of this transaction: the rows are in the same transaction as everything else
        statement = ""
        driver = self.conn.connection.driver_connection
        dbapi = self.conn.dialect.dbapi
        assert driver is not None and dbapi is not None
        try:
            with driver.cursor() as cur:
                for table, rows in tables:
                    if rows:
                        statement = f"COPY {table.name} ({', '.join(c.name for c in table.columns)}) FROM STDIN"
                        with cur.copy(statement) as copy:
                            for row in rows:
                                copy.write_row(row)
        except dbapi.IntegrityError as exc:
            # as SQLAlchemy reports it for a statement: the transaction answers 409 for a key taken concurrently
            raise IntegrityError(statement, None, exc) from exc
        self._new_rows = []
        self._index_rows = {k: [] for k in schema.INDEX_TABLES}
        self._pending_keys.clear()

    def _stamp(self, resource: dict, version: int, when: float) -> bytes:
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(when)
        resource["meta"] = meta
        # resourceType and id first, as people read them
        ordered = {"resourceType": resource["resourceType"], "id": resource["id"]}
        ordered.update(resource)
        # decimals keep their exact text. orjson's bytes keep the capacity of its output buffer (often 30 kB
        # for a 2 kB resource); a bundle's contents live until it commits, so each is copied to its own size.
        return bytes(memoryview(jsonio.dumps(ordered)))

    def _queue_index(self, rid: int, res_type: str, resource: dict, rows: IndexRows | None = None) -> None:
        if rows is None:
            rows = extract(resource, self.store.search_params)
        idx = self._index_rows
        owner = (rid, res_type)
        for kind in schema.INDEX_TABLES:
            values = getattr(rows, kind)
            if values:
                idx[kind].extend(owner + v for v in values)

    def _drop_index(self, rid: int) -> None:
        self.flush()
        for table in schema.INDEX_TABLES.values():
            self.conn.execute(delete(table).where(table.c.rid == rid))

    def create(self, resource: dict, *, res_id: str | None = None, known_new: bool = False,
               index_rows: IndexRows | None = None) -> Stored:
        """Create with a server-assigned id, or the given one, which must be new (checked unless known_new)."""
        res_type = resource["resourceType"]
        resource["id"] = res_id or new_id()
        when = now_epoch()
        content = self._stamp(resource, 1, when)
        key = (res_type, resource["id"])
        if res_id is not None and not known_new:
            if key in self._pending_keys or self.store.read(res_type, res_id, self.conn):
                raise FHIRError("duplicate", f"{res_type}/{res_id} already exists", f"{res_type}.id")
        rid = self._next_rid()
        self._new_rows.append((rid, res_type, resource["id"], 1, when, False, self._content_param(content)))
        self._pending_keys.add(key)
        self._queue_index(rid, res_type, resource, index_rows)
        if res_type in KNOWLEDGE_TYPES:
            self.knowledge_changed = True
        stored = Stored(res_type, resource["id"], 1, when, False, content, "POST", rid)
        self.written.append(stored)
        return stored

    def update(self, resource: dict, *, if_match: int | None = None,
               index_rows: IndexRows | None = None) -> tuple[Stored, bool]:
        """Update or create with the client's id. Returns (stored, created)."""
        res_type, res_id = resource["resourceType"], resource["id"]
        current = self.read(res_type, res_id, for_update=True)
        if if_match is not None and (current is None or current.deleted or current.version != if_match):
            raise FHIRError(
                "conflict",
                f"If-Match version {if_match} does not match the current version of {res_type}/{res_id}",
                f"{res_type}.meta.versionId",
                status=412,
            )
        if current is None:
            return self.create(resource, res_id=res_id, index_rows=index_rows), True
        when = max(now_epoch(), current.last_updated)
        version = current.version + 1
        content = self._stamp(resource, version, when)
        self._move_to_history(current)
        r = schema.resources.c
        result = self.conn.execute(
            update(schema.resources)
            .where(r.res_type == res_type, r.res_id == res_id, r.version == current.version)
            .values(version=version, last_updated=when, deleted=False, content=content)
        )
        if result.rowcount != 1:
            raise FHIRError("conflict", f"{res_type}/{res_id} was changed concurrently", f"{res_type}.id")
        assert current.rid is not None
        self._drop_index(current.rid)
        self._queue_index(current.rid, res_type, resource, index_rows)
        if res_type in KNOWLEDGE_TYPES:
            self.knowledge_changed = True
        stored = Stored(res_type, res_id, version, when, False, content, "PUT")
        self.written.append(stored)
        return stored, current.deleted

    def delete(self, res_type: str, res_id: str, *, if_match: int | None = None) -> Stored | None:
        """Delete (a new, empty version). Returns None when there was nothing to delete."""
        current = self.read(res_type, res_id, for_update=True)
        if if_match is not None and (current is None or current.deleted or current.version != if_match):
            raise FHIRError(
                "conflict", f"If-Match version {if_match} does not match {res_type}/{res_id}",
                f"{res_type}.meta.versionId", status=412,
            )
        if current is None or current.deleted:
            return None
        when = max(now_epoch(), current.last_updated)
        self._move_to_history(current)
        r = schema.resources.c
        self.conn.execute(
            update(schema.resources)
            .where(r.res_type == res_type, r.res_id == res_id)
            .values(version=current.version + 1, last_updated=when, deleted=True, content=None)
        )
        assert current.rid is not None
        self._drop_index(current.rid)
        if res_type in KNOWLEDGE_TYPES:
            self.knowledge_changed = True
        stored = Stored(res_type, res_id, current.version + 1, when, True, None, "DELETE")
        self.written.append(stored)
        return stored

    def _move_to_history(self, current: Stored) -> None:
        method = "DELETE" if current.deleted else ("POST" if current.version == 1 else "PUT")
        self.conn.execute(
            insert(schema.history).values(
                res_type=current.res_type,
                res_id=current.res_id,
                version=current.version,
                last_updated=current.last_updated,
                deleted=current.deleted,
                method=method,
                content=current.content,
            )
        )

    def _content_param(self, content: bytes) -> Any:
        return content.decode() if self.store.dialect == "postgresql" else content
