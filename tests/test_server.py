"""The real server (gunicorn) end to end: start-up, HTTP, and crash safety of transactions."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
FHIR = {"Content-Type": "application/fhir+json"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    def __init__(self, db_url: str, tmp: Path, **env: str):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, DATABASE_URL=db_url, PORT=str(self.port), WEB_CONCURRENCY="2", **env)
        self.log = open(tmp / f"server-{self.port}.log", "wb")  # noqa: SIM115

    def start(self, command: list[str] | None = None) -> Gunicorn:
        cmd = command or [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app.wsgi:app"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/fhir/metadata", timeout=2).ok:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        self.stop()
        raise AssertionError("server did not start")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.log.close()


def _lbp(*args: str, env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_lbp_serve_starts_gunicorn_loads_artifacts_and_serves_fhir(tmp_path):
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    clients = str(tmp_path / "clients.json")
    srv = Gunicorn(db, tmp_path, LBP_CLIENTS_FILE=clients).start([sys.executable, "-m", "app.cli", "serve"])
    try:
        cap = requests.get(srv.base + "/fhir/metadata", timeout=10).json()
        assert cap["resourceType"] == "CapabilityStatement" and cap["fhirVersion"] == "4.0.1"
        assert requests.get(srv.base + "/fhir/Patient", timeout=10).status_code == 401
        # the README's two commands: register a client, then get a token with its signed assertion
        env = dict(srv.env)
        printed = _lbp("client", "add", "demo", "--key-dir", str(tmp_path / "keys"), env=env)
        assert "curl -s" in printed and "/auth/token" in printed
        assertion = _lbp("client", "assertion", "demo", "--key-dir", str(tmp_path / "keys"), "--base", srv.base,
                         env=env).strip()
        token = requests.post(srv.base + "/auth/token", data={
            "grant_type": "client_credentials", "scope": "system/*.cruds",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}, timeout=10).json()["access_token"]
        FHIR["Authorization"] = f"Bearer {token}"
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "gender": "male"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:c", "resource": {
                "resourceType": "Condition", "subject": {"reference": "urn:uuid:p"},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "M54.5"}]}},
             "request": {"method": "POST", "url": "Condition"}}]}
        r = requests.post(srv.base + "/fhir", json=bundle, headers=FHIR, timeout=30)
        assert r.status_code == 200
        pid = r.json()["entry"][0]["response"]["location"].split("/")[1]
        found = requests.get(srv.base + f"/fhir/Condition?code=M54.5&patient={pid}", headers=FHIR,
                             timeout=10).json()
        assert found["total"] == 1
        artifacts = requests.get(srv.base + "/fhir/CodeSystem?_summary=count", timeout=10).json()
        assert artifacts["total"] >= 1  # the project's folders were loaded at start-up
    finally:
        srv.stop()
        FHIR.pop("Authorization", None)
    log = (tmp_path / f"server-{srv.port}.log").read_text()
    assert pid not in log and token not in log  # ids, queries and tokens stay out of the log


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_killed_server_leaves_whole_transaction_or_nothing(tmp_path, delay):
    from app.store.db import Store

    db = f"sqlite:///{tmp_path / 'crash.db'}"
    srv = Gunicorn(db, tmp_path, LBP_LOAD_ARTIFACTS="false", LBP_AUTH_DISABLED="true").start()
    n = 3000
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{i:08d}-0000-0000-0000-000000000000",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:crash", "value": str(i)}]},
         "request": {"method": "POST", "url": "Patient"}} for i in range(n)]}
    outcome: dict = {}

    def send():
        try:
            outcome["status"] = requests.post(srv.base + "/fhir", json=bundle, headers=FHIR, timeout=120).status_code
        except requests.RequestException as exc:
            outcome["error"] = type(exc).__name__

    t = threading.Thread(target=send)
    t.start()
    time.sleep(delay)
    srv.kill()
    t.join(timeout=30)
    srv.log.close()
    store = Store(db)
    with store.engine.connect() as c:
        count = c.exec_driver_sql("SELECT count(*) FROM resources WHERE res_type = 'Patient'").scalar_one()
        index_rows = c.exec_driver_sql(
            "SELECT count(*) FROM idx_token WHERE res_type = 'Patient' AND param = 'identifier'").scalar_one()
        audit_events = c.exec_driver_sql("SELECT count(*) FROM resources WHERE res_type = 'AuditEvent'").scalar_one()
    store.dispose()
    assert count in (0, n)
    if count == n:
        assert audit_events >= 1  # a committed write has its AuditEvent: it commits in the same transaction
    assert index_rows == count  # the index is never ahead of or behind the resources
    if outcome.get("status") == 200:
        assert count == n


def test_a_restarted_worker_answers_only_from_loaded_knowledge(tmp_path):
    """kill -9 of a worker: the one gunicorn starts in its place serves complete knowledge from its first request."""
    db = f"sqlite:///{tmp_path / 'ready.db'}"
    # CDS client authentication off: discovery is the probe here (a JWT per probe would only add noise)
    srv = Gunicorn(db, tmp_path, LBP_CLIENTS_FILE=str(tmp_path / "clients.json"), LBP_CDS_AUTH_DISABLED="true").start(
        [sys.executable, "-m", "app.cli", "serve"])
    try:
        expected = {s["id"] for s in requests.get(srv.base + "/cds-services", timeout=10).json()["services"]}
        assert expected
        # lbp serve execs gunicorn in its own process: its children are the workers
        workers = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()
        assert workers
        os.kill(int(workers[0]), signal.SIGKILL)
        results: list = []

        def discover() -> None:
            r = requests.get(srv.base + "/cds-services", timeout=60)
            results.append((r.status_code, {s["id"] for s in r.json()["services"]} if r.ok else r.text[:200]))

        threads = [threading.Thread(target=discover) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(status == 200 and ids == expected for status, ids in results), results
        assert requests.get(srv.base + "/readyz", timeout=10).status_code == 200
    finally:
        srv.stop()
