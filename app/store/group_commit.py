"""Group commit for unique inserts on the hot path: many callers' rows, one transaction, each caller its own answer.

A CDS call or a SMART client assertion must record its `jti` before it is answered, and a replay must be
refused by every worker and every host: a unique insert into one table does that. One transaction per
call, though, costs a commit (an fsync on SQLite, a round trip and WAL flush on PostgreSQL) per request.
Here a writer thread per process collects the rows that arrive within a few milliseconds (or up to a batch
size), inserts them with one `INSERT … ON CONFLICT DO NOTHING RETURNING key` in one transaction and tells
each waiting caller whether its row went in. The caller still waits for the commit, so a replay is refused
before its response, across processes and hosts, exactly as with one transaction per call; two rows with
the same key in one batch are decided in the process (the first wins). If the transaction fails, every
caller of the batch gets the exception (nothing is accepted that was not committed).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

log = logging.getLogger("lbp.store")


class _Pending:
    __slots__ = ("row", "done", "inserted", "error")

    def __init__(self, row: Mapping[str, Any]):
        self.row = row
        self.done = threading.Event()
        self.inserted = False
        self.error: BaseException | None = None


class UniqueInserts:
    """Rows of `table` whose `key` must be new, inserted by a per-process writer thread in grouped commits.

    `window` is how long the writer waits for more rows after the first one arrives (seconds), `max_batch`
    the most rows one transaction takes. `housekeeping(conn)` runs inside a batch's transaction, at most
    every `housekeeping_every` seconds (the replay table deletes expired rows there).
    """

    def __init__(self, store: Any, table: Table, key: str, *, window: float = 0.002, max_batch: int = 256,
                 housekeeping: Callable[[Any], None] | None = None, housekeeping_every: float = 60.0):
        self.store = store
        self.table = table
        self.key = key
        self.window = window
        self.max_batch = max_batch
        self.housekeeping = housekeeping
        self.housekeeping_every = housekeeping_every
        self._housekept = 0.0
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        ref = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (ref() or (lambda: None))())
        self.batches = 0  # transactions committed (for benchmarks)
        self.rows = 0

    def insert(self, row: Mapping[str, Any], timeout: float = 10.0) -> bool:
        """True when the row was inserted and committed, False when its key was there already."""
        pending = _Pending(row)
        with self._cond:
            self._ensure_writer()
            self._queue.append(pending)
            self._cond.notify()
        if not pending.done.wait(timeout):
            raise TimeoutError("the grouped insert was not committed in time")
        if pending.error is not None:
            raise pending.error
        return pending.inserted

    def _ensure_writer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, daemon=True, name=f"group-commit-{self.table.name}")
            self._thread.start()

    def _after_fork(self) -> None:
        # a gunicorn worker is a fork of the master: the master's writer thread, its lock and its callers
        # do not exist in it
        self._cond = threading.Condition()
        self._queue = []
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                first_seen = time.monotonic()
                while len(self._queue) < self.max_batch:
                    left = self.window - (time.monotonic() - first_seen)
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        first: dict[Any, _Pending] = {}
        for pending in batch:
            first.setdefault(pending.row[self.key], pending)  # a same-batch duplicate is refused here
        try:
            inserted = self._write([p.row for p in first.values()])
        except BaseException as exc:  # noqa: BLE001 — handed to every caller of the batch, never lost
            log.error("grouped insert into %s failed: %s", self.table.name, type(exc).__name__)
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        self.batches += 1
        self.rows += len(first)
        for pending in batch:
            pending.inserted = first[pending.row[self.key]] is pending and pending.row[self.key] in inserted
            pending.done.set()

    def _write(self, rows: list[Mapping[str, Any]]) -> set[Any]:
        dialect = self.store.dialect
        make = pg_insert if dialect == "postgresql" else sqlite_insert
        column = self.table.c[self.key]
        statement = make(self.table).values(list(rows)).on_conflict_do_nothing(index_elements=[column])
        with self.store.transaction() as tx:
            now = time.monotonic()
            if self.housekeeping is not None and now - self._housekept > self.housekeeping_every:
                self.housekeeping(tx.conn)
                self._housekept = now
            found = tx.conn.execute(statement.returning(column)).scalars().all()
        return set(found)
