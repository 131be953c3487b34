"""The jti replay table under grouped commits: each jti accepted once, however the calls interleave."""
from __future__ import annotations

import threading
import time

import pytest

from app.auth.client_jwt import JWTRefused, ReplayCache
from app.store.db import Store


def _accepted(replay: ReplayCache, jtis: list[str]) -> list[str]:
    accepted: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(jtis))

    def call(jti: str) -> None:
        start.wait()
        try:
            replay.remember("https://ehr.test", jti, time.time() + 60)
        except JWTRefused:
            return
        with lock:
            accepted.append(jti)

    threads = [threading.Thread(target=call, args=(j,)) for j in jtis]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return accepted


def test_concurrent_calls_with_the_same_jti_are_accepted_once(db_url):
    store = Store(db_url)
    try:
        replay = ReplayCache(store)
        jtis = [f"jti-{i % 5}" for i in range(30)]
        assert sorted(_accepted(replay, jtis)) == [f"jti-{i}" for i in range(5)]
        # a second process (its own writer threads) over the same table refuses them too
        other = ReplayCache(store)
        assert _accepted(other, ["jti-0", "jti-3", "jti-new"]) == ["jti-new"]
    finally:
        store.dispose()


def test_a_failed_commit_is_refused_to_every_caller_of_the_batch(sqlite_url):
    store = Store(sqlite_url)
    replay = ReplayCache(store)
    store.dispose()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE client_jti")
    with pytest.raises(Exception) as caught:
        replay.remember("https://ehr.test", "jti-x", time.time() + 60)
    assert not isinstance(caught.value, JWTRefused)
    store.dispose()


def test_callers_beyond_one_batch_each_get_their_own_answer(sqlite_url):
    """Small batches and many callers: the callers lead batch after batch, and every row is decided once."""
    from app.store import schema
    from app.store.group_commit import UniqueInserts

    store = Store(sqlite_url)
    try:
        inserts = UniqueInserts(store, schema.client_jti, "key", max_batch=2)
        answers: dict[int, bool] = {}
        start = threading.Barrier(40)

        def call(i: int) -> None:
            start.wait()
            answers[i] = inserts.insert({"key": f"k-{i % 20}", "expires": time.time() + 60})

        threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(answers) == 40
        accepted = sorted(i % 20 for i, ok in answers.items() if ok)
        assert accepted == list(range(20))  # each key accepted by exactly one of its two callers
        assert inserts.batches >= 20  # never more than two rows in one transaction
        with store.engine.connect() as conn:
            assert len(conn.execute(schema.client_jti.select()).fetchall()) == 20
    finally:
        store.dispose()
