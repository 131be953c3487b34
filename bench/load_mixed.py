"""Mixed load with a worker restart in the middle: errors, latency and worker memory under gunicorn.

8 concurrent clients (threads, keep-alive connections) for `--seconds` mix FHIR reads, searches, CDS
patient-view calls (full prefetch, a signed JWT each) and the clinician page, against one server with the
project's artifacts and the test patients loaded. Halfway through, the master gets SIGHUP (every worker is
replaced; `--restart kill` sends SIGKILL to one worker instead). The baseline measured in the same run is
`GET /healthz` on the same connections. Prints per kind: count, errors, p50, p99 (and p99 as a multiple of
the baseline's); worker RSS every 10 s. An error is any answer other than the expected status, or a
connection failure. Asserts nothing.

    .venv/bin/python bench/load_mixed.py [--seconds 300] [--clients 8] [--workers 2] [--threads 4]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import Server  # noqa: E402
from tests.cds.conftest import ISSUER, Keys, hook_request, mint  # noqa: E402
from tests.cds.patients import DATA, TODAY  # noqa: E402

PATIENTS = sorted(p.name.removeprefix("Bundle-patient-").removesuffix(".json")
                  for p in DATA.glob("Bundle-patient-*.json"))
MIX = [("read", 3), ("search", 3), ("cds", 2), ("clinician", 1), ("healthz", 1)]


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] if s else float("nan")


def worker_rss(srv: Server) -> dict[int, float]:
    out = {}
    for pid in srv._pids()[1:]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[pid] = int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return out


class LoadClient(threading.Thread):
    def __init__(self, srv: Server, token: str, keys: Keys, until: float, seed: int):
        super().__init__(daemon=True)
        self.srv, self.token, self.keys, self.until = srv, token, keys, until
        self.rng = random.Random(seed)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.reconnects = 0
        self.conn: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> int:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # a keep-alive connection the old worker closed between requests (not mid-request) is reopened
                # once, as every HTTP client does for an idle connection
                self.conn.close()
                self.conn = None
                self.reconnects += 1
                if attempt == 1 or not isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError)):
                    raise
        raise AssertionError("unreachable")

    def run(self) -> None:
        kinds = [k for k, w in MIX for _ in range(w)]
        auth = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() < self.until:
            kind = self.rng.choice(kinds)
            patient = self.rng.choice(PATIENTS)
            body, expected = None, 200
            headers = dict(auth)
            if kind == "read":
                method, path = "GET", f"/fhir/Patient/{patient}"
            elif kind == "search":
                method, path = "GET", f"/fhir/Observation?subject=Patient/{patient}&_count=50"
            elif kind == "clinician":
                method, path = "GET", f"/patients/{patient}/pathway"
            elif kind == "healthz":
                method, path, headers = "GET", "/healthz", {}
            else:
                method, path = "POST", "/cds-services/lbp-patient-view-se"
                body = json.dumps(hook_request("patient-view", patient)).encode()
                headers = {"Authorization": f"Bearer {mint(self.keys, self.srv.base + path)}",
                           "Content-Type": "application/json"}
            started = time.perf_counter()
            try:
                status = self._request(method, path, body, headers)
            except Exception:  # noqa: BLE001 — a failed request is an error in the figures
                self.errors[kind] += 1
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                continue
            self.latency[kind].append((time.perf_counter() - started) * 1000)
            if status != expected:
                self.errors[kind] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--restart", choices=["hup", "kill"], default="hup")
    args = parser.parse_args()

    keys = Keys()
    tmp = Path(tempfile.mkdtemp(prefix="lbp-load-"))
    issuers = tmp / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": keys.jwks()}]}))
    env = {"LBP_CDS_TRUSTED_ISSUERS_FILE": str(issuers), "LBP_CDS_TODAY": TODAY.isoformat()}
    with Server(f"sqlite:///{tmp / 'load.db'}", workers=args.workers, threads=args.threads, env=env,
                load_artifacts=True) as srv:
        token = srv.token("system/*.cruds")
        for path in sorted(DATA.glob("Bundle-patient-*.json")):
            r = requests.post(srv.base + "/fhir", data=path.read_bytes(), timeout=60, headers={
                "Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"})
            r.raise_for_status()
        # the token endpoint issues 5-minute tokens; the operator's longer token keeps a long run going
        from app import create_app

        app = create_app({"DATABASE_URL": srv.env["DATABASE_URL"], "LOAD_ARTIFACTS": False,
                          "CLIENTS_FILE": srv.env["LBP_CLIENTS_FILE"]})
        token = app.extensions["lbp"].auth.tokens.mint("load-bench", "system/*.rs", 3600)
        app.extensions["lbp"].store.dispose()

        started = time.monotonic()
        until = started + args.seconds
        clients = [LoadClient(srv, token, keys, until, seed) for seed in range(args.clients)]
        for c in clients:
            c.start()
        rss: list[tuple[float, dict[int, float]]] = []
        restarted = False
        while time.monotonic() < until:
            elapsed = time.monotonic() - started
            if not rss or elapsed - rss[-1][0] >= 10:
                rss.append((elapsed, worker_rss(srv)))
            if not restarted and elapsed >= args.seconds / 2:
                assert srv.proc is not None
                if args.restart == "hup":
                    srv.proc.send_signal(signal.SIGHUP)
                else:
                    os.kill(srv._pids()[1], signal.SIGKILL)
                restarted = True
                print(f"[{elapsed:5.1f} s] worker restart ({args.restart})", flush=True)
            time.sleep(0.5)
        for c in clients:
            c.join(timeout=90)
        rss.append((time.monotonic() - started, worker_rss(srv)))

    latency: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    for c in clients:
        for k, v in c.latency.items():
            latency[k].extend(v)
        for k, n in c.errors.items():
            errors[k] += n
    total = sum(len(v) for v in latency.values()) + sum(errors.values())
    every = [x for k, v in latency.items() if k != "healthz" for x in v]
    base_p99 = pct(latency["healthz"], 0.99)
    print(f"\n{args.clients} clients, {args.seconds:.0f} s, {args.workers} workers x {args.threads} threads, "
          f"restart: {args.restart} at {args.seconds / 2:.0f} s")
    print(f"requests: {total}  ({total / args.seconds:.1f}/s)   errors: {sum(errors.values())}   "
          f"idle keep-alive connections reopened: {sum(c.reconnects for c in clients)}")
    print(f"{'kind':<10} {'count':>7} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'p99/baseline':>13}")
    for kind, _ in MIX:
        v = latency[kind]
        print(f"{kind:<10} {len(v):>7} {errors[kind]:>6} {pct(v, 0.5):>8.1f} {pct(v, 0.99):>8.1f} "
              f"{pct(v, 0.99) / base_p99:>13.1f}")
    print(f"{'all':<10} {len(every):>7} {sum(errors.values()):>6} {pct(every, 0.5):>8.1f} {pct(every, 0.99):>8.1f} "
          f"{pct(every, 0.99) / base_p99:>13.1f}   (baseline: /healthz p99 {base_p99:.1f} ms)")
    print("worker RSS (MB) by time; the restart replaces the workers (new pids):")
    for t, per in rss:
        print(f"  {t:6.1f} s  " + "  ".join(f"{pid}:{mb:.0f}" for pid, mb in sorted(per.items())))


if __name__ == "__main__":
    main()
