"""A worker answers from fully loaded knowledge only: before the first load, and while a refresh builds anew."""
from __future__ import annotations

import threading
import time

from app.knowledge import runtime
from app.knowledge.runtime import Knowledge

CS_URL = "https://lbp-pathway.org/fhir/CodeSystem/readiness-test"


def _code_system(fhir, version: str = "1") -> None:
    fhir.put("CodeSystem/readiness-test", {
        "resourceType": "CodeSystem", "id": "readiness-test", "url": CS_URL, "version": version, "status": "active",
        "content": "complete", "concept": [{"code": "a", "display": "A"}]})


def _slow_build(monkeypatch, seconds: float = 0.3) -> None:
    real = runtime._build_base

    def slow(resources):
        time.sleep(seconds)
        return real(resources)

    monkeypatch.setattr(runtime, "_build_base", slow)


def _concurrently(n: int, fn) -> list:
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_no_thread_sees_knowledge_before_the_first_load_is_complete(app, fhir, monkeypatch):
    _code_system(fhir)
    knowledge = Knowledge(app.extensions["lbp"].store)  # a fresh worker's knowledge: not loaded yet
    _slow_build(monkeypatch)
    bases = _concurrently(8, lambda: knowledge.base)
    assert all(b is not None for b in bases)
    assert len({id(b) for b in bases}) == 1  # loaded once, not once per thread
    found = _concurrently(8, lambda: Knowledge(app.extensions["lbp"].store).resolve(CS_URL))
    assert all(f is not None for f in found)


def test_a_refresh_keeps_serving_the_previous_snapshot_until_the_new_one_is_whole(app, fhir, monkeypatch):
    _code_system(fhir)
    knowledge = app.extensions["lbp"].knowledge
    old = knowledge.base
    assert knowledge.resolve(CS_URL) is not None
    _slow_build(monkeypatch, 0.5)
    seen: list = []
    reload = threading.Thread(target=knowledge.refresh, kwargs={"force": True})
    reload.start()
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        seen.append((knowledge.base, knowledge.resolve(CS_URL)))
    reload.join()
    assert seen and all(base is not None and resolved is not None for base, resolved in seen)
    assert all(base is old for base, _ in seen)  # the old snapshot, whole, while the new one was built
    assert knowledge.base is not old


def test_create_app_loads_knowledge_and_services_before_the_first_request(app):
    lbp = app.extensions["lbp"]
    assert lbp.knowledge.ready  # no request has been made
    cached = app.extensions["lbp_cds"].registry._cache
    assert cached is not None and cached[0] is lbp.knowledge.base
    c = app.test_client()
    assert c.get("/readyz").status_code == 200
    assert c.get("/healthz").status_code == 200


def test_readyz_is_503_until_knowledge_is_loaded(app):
    app.extensions["lbp"].knowledge._snapshot = None  # as a worker before its first load
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert app.test_client().get("/healthz").status_code == 200
