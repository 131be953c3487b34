"""The CDS service under gunicorn (two workers): signed calls, replay refused by every worker, knowledge shared."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from app import create_app
from tests.cds.conftest import ISSUER, hook_request, mint
from tests.cds.validator import rules_of, validate_discovery, validate_response

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gunicorn_workers_share_the_replay_cache_and_serve_cards(tmp_path, keys):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    create_app({"DATABASE_URL": db, "VALIDATE_WRITES": False}).extensions["lbp"].store.dispose()  # artifacts once
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": keys.jwks()}]}))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, DATABASE_URL=db, PORT=str(port), WEB_CONCURRENCY="2", THREADS="2",
               LBP_LOAD_ARTIFACTS="false", LBP_CDS_TRUSTED_ISSUERS_FILE=str(issuers),
               LBP_CDS_TODAY="2026-11-25", LBP_CLIENTS_FILE=str(tmp_path / "clients.json"), LOG_LEVEL="info")
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app.wsgi:app"],
                            cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise AssertionError("gunicorn did not start")
        url = base + "/cds-services"
        r = requests.get(url, headers={"Authorization": f"Bearer {mint(keys, url)}"}, timeout=10)
        assert r.status_code == 200
        validate_discovery(r.json())

        url = base + "/cds-services/lbp-order-sign-se"
        token = mint(keys, url)
        body = hook_request("order-sign", "clean", ["opioid"])
        first = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert first.status_code == 200
        assert rules_of(validate_response(first.json())).get("M3") == "warning"
        # new connections land on either worker: every one of them knows the jti
        for _ in range(8):
            again = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}",
                                                           "Connection": "close"}, timeout=10)
            assert again.status_code == 401
        # /metrics adds up every worker's samples: the 1 + 8 calls above, whichever worker served them
        for _ in range(4):
            metrics = requests.get(base + "/metrics", headers={"Connection": "close"}, timeout=10).text
            assert 'lbp_cds_hook_calls_total{service="lbp-order-sign-se",status="200"} 1.0' in metrics
            assert 'lbp_cds_hook_calls_total{service="lbp-order-sign-se",status="401"} 8.0' in metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    text = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert token not in text and "clean" not in text
