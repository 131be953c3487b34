"""Two independent servers over one PostgreSQL: what a region running several hosts relies on.

Each server is its own gunicorn master (own port, own workers, own knowledge cache, own replay and audit
writers), as two hosts behind a load balancer would be; the database is the only thing they share. Both
answer under one public base URL (the balancer's), so a CDS client's `aud` is the same for either.
"""
from __future__ import annotations

import json
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

from tests.cds.conftest import ISSUER, Keys, hook_request, mint
from tests.cds.patients import DATA, TODAY
from tests.cds.validator import rules_of, validate_response

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("LBP_TEST_PG_URL")
PUBLIC = "http://cds.region.test"
SIGN = "/cds-services/lbp-order-sign-se"
FHIR = "application/fhir+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    """One server: a gunicorn master with two workers on its own port."""

    def __init__(self, name: str, env: dict[str, str], tmp: Path):
        self.name = name
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app.wsgi:app"],
            cwd=ROOT, env=dict(env, PORT=str(self.port)), stdout=self.log, stderr=self.log, start_new_session=True)
        self.key = tmp / "keys" / f"{name}.pem"

    def wait(self) -> None:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not start: {self.log_path.read_text(errors='replace')[-2000:]}")

    def token(self, scope: str = "system/*.cruds") -> str:
        from app.auth.local import token_request

        r = requests.post(self.base + "/auth/token", timeout=20,
                          data=token_request(self.name, self.key, PUBLIC + "/auth/token", scope))
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    if not PG_URL:
        pytest.skip("LBP_TEST_PG_URL is not set (.ci/run starts PostgreSQL and sets it)")
    from sqlalchemy import create_engine

    import app.cds.tables  # noqa: F401  (its tables are on the metadata, dropped too)
    from app import create_app
    from app.auth.local import register_client
    from app.store.schema import metadata

    tmp = tmp_path_factory.mktemp("region")
    engine = create_engine(PG_URL)
    metadata.drop_all(engine)
    engine.dispose()
    create_app({"DATABASE_URL": PG_URL, "VALIDATE_WRITES": False}).extensions["lbp"].store.dispose()  # artifacts
    keys = Keys()
    issuers = tmp / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": keys.jwks()}]}))
    clients = tmp / "clients.json"
    for name in ("host-a", "host-b"):
        register_client(clients, name, "system/*.cruds system/cds-feedback.read", tmp / "keys")
    env = dict(os.environ, DATABASE_URL=PG_URL, WEB_CONCURRENCY="2", THREADS="2", LBP_LOAD_ARTIFACTS="false",
               LBP_CDS_TRUSTED_ISSUERS_FILE=str(issuers), LBP_CDS_TODAY=TODAY.isoformat(),
               LBP_CLIENTS_FILE=str(clients), LBP_PUBLIC_BASE_URL=PUBLIC, LBP_VALIDATE_WRITES="false",
               LOG_LEVEL="info")
    a, b = Host("host-a", env, tmp), Host("host-b", env, tmp)
    try:
        a.wait()
        b.wait()
        bundle = (DATA / "Bundle-patient-clean.json").read_bytes()
        r = requests.post(a.base + "/fhir", data=bundle, timeout=60,
                          headers={"Content-Type": FHIR, "Authorization": f"Bearer {a.token()}"})
        assert r.status_code == 200, r.text
        yield a, b, keys
    finally:
        a.stop()
        b.stop()


def _sign(host: Host, keys: Keys, token: str | None = None) -> requests.Response:
    # a fresh connection each time: gunicorn hands it to either worker of the host
    return requests.post(host.base + SIGN, json=hook_request("order-sign", "clean", ["opioid"]), timeout=30,
                         headers={"Authorization": f"Bearer {token or mint(keys, PUBLIC + SIGN)}",
                                  "Connection": "close"})


def test_a_plan_definition_loaded_through_one_host_is_applied_by_the_others_hooks(region):
    a, b, keys = region
    before = _sign(b, keys)
    assert before.status_code == 200
    assert rules_of(validate_response(before.json())).get("M3") == "warning"
    token = a.token()
    medication = requests.get(a.base + "/fhir/PlanDefinition/lbp-medication", timeout=20,
                              headers={"Authorization": f"Bearer {token}"}).json()
    opioids = next(x for x in medication["action"]
                   if any(c.get("code") == "M3" for cc in x.get("code", []) for c in cc.get("coding", [])))
    opioids["trigger"] = [t for t in opioids["trigger"] if t.get("name") != "order-sign"]  # no longer at signing
    r = requests.put(a.base + "/fhir/PlanDefinition/lbp-medication", json=medication, timeout=60,
                     headers={"Content-Type": FHIR, "Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    # each worker of each host compares the knowledge epoch at most every 0.5 s before serving knowledge
    time.sleep(1.0)
    for _ in range(6):
        after = _sign(b, keys)
        assert after.status_code == 200
        assert "M3" not in rules_of(validate_response(after.json()))
    opioids["trigger"].append({"type": "named-event", "name": "order-sign"})
    r = requests.put(a.base + "/fhir/PlanDefinition/lbp-medication", json=medication, timeout=60,
                     headers={"Content-Type": FHIR, "Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    time.sleep(1.0)
    assert rules_of(validate_response(_sign(b, keys).json())).get("M3") == "warning"


def test_a_jti_used_on_one_host_is_refused_on_the_other(region):
    a, b, keys = region
    token = mint(keys, PUBLIC + SIGN)
    assert _sign(a, keys, token).status_code == 200
    assert _sign(b, keys).status_code == 200  # the same audience is accepted on b: only the replay is refused
    for _ in range(4):
        assert _sign(b, keys, token).status_code == 401
        assert _sign(a, keys, token).status_code == 401


def test_audit_and_feedback_from_both_hosts_land_in_one_trail(region):
    a, b, keys = region
    tokens = {h.name: h.token() for h in (a, b)}
    for host in (a, b):
        r = requests.get(host.base + "/fhir/Patient/clean", timeout=20,
                         headers={"Authorization": f"Bearer {tokens[host.name]}"})
        assert r.status_code == 200
    cards = {}
    for host in (a, b):
        issued = validate_response(_sign(host, keys).json())
        cards[host.name] = next(c for c in issued if rules_of([c]).get("M3"))
        feedback = {"feedback": [{"card": cards[host.name]["uuid"], "outcome": "accepted",
                                  "outcomeTimestamp": "2026-11-25T10:00:00Z"}]}
        path = SIGN + "/feedback"
        r = requests.post(host.base + path, json=feedback, timeout=20,
                          headers={"Authorization": f"Bearer {mint(keys, PUBLIC + path)}"})
        assert r.status_code == 200, r.text
    time.sleep(0.5)  # each host writes its audit events and issued cards behind the response
    for reader in (a, b):
        auth = {"Authorization": f"Bearer {tokens[reader.name]}"}
        events = requests.get(reader.base + "/fhir/AuditEvent?entity=Patient/clean&_count=200", headers=auth,
                              timeout=20).json()
        who = {agent.get("altId") for e in events.get("entry", []) for agent in e["resource"].get("agent", [])}
        assert {"host-a", "host-b"} <= who
        statistics = {"Authorization": f"Bearer {reader.token('system/cds-feedback.read')}"}
        report = requests.get(reader.base + "/cds-feedback?rule=M3", headers=statistics, timeout=20).json()
        counted = {item["card"]: item["rule"] for item in report["feedback"]}
        assert counted.get(cards["host-a"]["uuid"]) == "M3"
        assert counted.get(cards["host-b"]["uuid"]) == "M3"


def _conditional_write(host: Host, token: str, patient: dict, gender: str, version: int,
                       start: threading.Barrier, statuses: dict[str, int]) -> None:
    """A transaction updating the patient only if it is still at `version` (ifMatch)."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {**patient, "gender": gender, "meta": {}},
        "request": {"method": "PUT", "url": "Patient/clean", "ifMatch": f'W/"{version}"'}}]}
    start.wait()
    r = requests.post(host.base + "/fhir", json=bundle, timeout=60,
                      headers={"Content-Type": FHIR, "Authorization": f"Bearer {token}"})
    statuses[host.name] = r.status_code


def test_conflicting_transactions_on_two_hosts_never_both_commit(region):
    a, b, _ = region
    tokens = {h.name: h.token() for h in (a, b)}
    read = requests.get(a.base + "/fhir/Patient/clean", timeout=20,
                        headers={"Authorization": f"Bearer {tokens['host-a']}"})
    patient = read.json()
    for round_ in range(5):
        version = int(patient["meta"]["versionId"])
        statuses: dict[str, int] = {}
        start = threading.Barrier(2)
        threads = [threading.Thread(target=_conditional_write, args=(h, tokens[h.name], patient, gender, version,
                                                                     start, statuses))
                   for h, gender in ((a, "male"), (b, "other"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses.values())[0] == 200, statuses
        assert sorted(statuses.values())[1] in (409, 412), statuses
        patient = requests.get(b.base + "/fhir/Patient/clean", timeout=20,
                               headers={"Authorization": f"Bearer {tokens['host-b']}"}).json()
        assert int(patient["meta"]["versionId"]) == version + 1, round_
        winner = "host-a" if statuses["host-a"] == 200 else "host-b"
        assert patient["gender"] == {"host-a": "male", "host-b": "other"}[winner]
