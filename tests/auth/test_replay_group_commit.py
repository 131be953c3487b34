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
