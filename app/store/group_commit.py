"""Group commit for unique inserts on the hot path: many callers' rows, one transaction, each caller its own answer.

A CDS call or a SMART client assertion must record its `jti` before it is answered, and a replay must be
refused by every worker and every host: a unique insert into one table does that. One transaction per
call, though, costs a commit (an fsync on SQLite, a round trip and WAL flush on PostgreSQL) per request.
Here the callers of a process commit for each other: a caller that finds no commit in flight (or fewer than
`writers`) leads, taking every row that queued meanwhile, its own among them (on a busy server, several
calls' worth), inserting them with one `INSERT … ON CONFLICT DO NOTHING RETURNING key` in one transaction on
its own thread, and telling each waiting caller whether its row went in; a caller that arrives while the
commits are in flight waits for the leader's answer, or to lead the next batch. Nothing is handed to another
thread when the process is quiet, so an uncontended call pays its own commit and no thread switch. The caller
still waits for the commit, so a replay is refused before its response, across processes and hosts, exactly
as with one transaction per call; two rows with the same key in one batch are decided in the process (the
first wins). If the transaction fails, every caller of the batch gets the exception (nothing is accepted that
was not committed).
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
    __slots__ = ("row", "done", "lead", "inserted", "error")

    def __init__(self, row: Mapping[str, Any]):
        self.row = row
        self.done = False
        self.lead = False  # asked to lead the next batch
        self.inserted = False
        self.error: BaseException | None = None


class UniqueInserts:
    """Rows of `table` whose `key` must be new, inserted in grouped commits led by the callers themselves.

    A leading caller takes every row queued while the previous commit was in flight (no added wait by
    default; `window` seconds of waiting for more rows may be set), at most `max_batch` per transaction;
    at most `writers` batches are in flight at once per process. `housekeeping(conn)` runs inside a batch's
    transaction, at most every `housekeeping_every` seconds (the replay table deletes expired rows there).
    """

    def __init__(self, store: Any, table: Table, key: str, *, window: float = 0.0, max_batch: int = 256,
                 housekeeping: Callable[[Any], None] | None = None, housekeeping_every: float = 60.0,
                 writers: int | None = None):
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
        self._leading = 0  # batches in flight
        # SQLite takes one writer at a time; on PostgreSQL a few batches in flight keep the commits' round
        # trips overlapping
        self.writers = writers if writers is not None else (1 if store.dialect == "sqlite" else 3)
        ref = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (ref() or (lambda: None))())
        self.batches = 0  # transactions committed (for benchmarks)
        self.rows = 0

    def insert(self, row: Mapping[str, Any], timeout: float = 10.0) -> bool:
        """True when the row was inserted and committed, False when its key was there already."""
        pending = _Pending(row)
        deadline = time.monotonic() + timeout
        with self._cond:
            self._queue.append(pending)
        while True:
            with self._cond:
                # lead when asked to (the slot was reserved for it) or when a batch may start; else wait
                while not pending.lead:
                    if pending.done:
                        return self._answer(pending)
                    if self._leading < self.writers:
                        self._leading += 1
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        if pending in self._queue:  # in no batch: never committed, safe to drop
                            self._queue.remove(pending)
                            raise TimeoutError("the grouped insert was not committed in time")
                        left = 0.05  # in a batch in flight: its answer is on the way
                    self._cond.wait(left)
                pending.lead = False
                batch = self._take()
            try:
                if batch:
                    self._commit(batch)
            finally:
                with self._cond:
                    if self._queue:
                        self._queue[0].lead = True  # its slot is kept: the next batch is led by a caller in it
                    else:
                        self._leading -= 1
                    self._cond.notify_all()
            if pending.done:
                return self._answer(pending)

    @staticmethod
    def _answer(pending: _Pending) -> bool:
        if pending.error is not None:
            raise pending.error
        return pending.inserted

    def _take(self) -> list[_Pending]:
        """The next batch, oldest rows first (called holding the lock)."""
        if self.window > 0:
            first_seen = time.monotonic()
            while len(self._queue) < self.max_batch:
                left = self.window - (time.monotonic() - first_seen)
                if left <= 0:
                    break
                self._cond.wait(left)
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
        return batch

    def _after_fork(self) -> None:
        # a gunicorn worker is a fork of the master: the master's callers and its lock do not exist in it
        self._cond = threading.Condition()
        self._queue = []
        self._leading = 0

    def _commit(self, batch: list[_Pending]) -> None:
        first: dict[Any, _Pending] = {}
        for pending in batch:
            first.setdefault(pending.row[self.key], pending)  # a same-batch duplicate is refused here
        try:
            inserted = self._write([p.row for p in first.values()])
        except BaseException as exc:  # noqa: BLE001 — handed to every caller of the batch, never lost
            log.error("grouped insert into %s failed: %s", self.table.name, type(exc).__name__)
            with self._cond:
                for pending in batch:
                    pending.error = exc
                    pending.done = True
            return
        self.batches += 1
        self.rows += len(first)
        with self._cond:
            for pending in batch:
                pending.inserted = first[pending.row[self.key]] is pending and pending.row[self.key] in inserted
                pending.done = True

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
