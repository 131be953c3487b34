"""Read benchmark: single-resource read latency over HTTP (gunicorn).

Measured in one run: /healthz (the floor), a read with authentication disabled (the unauthenticated
read), and the same read with a bearer token (token verification plus scope check). Every patient-data
read also writes its AuditEvent, in both configurations.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import Client, Server  # noqa: E402

N = 2000


def timed(client: Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        status, _ = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        assert status == 200
    return out


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


def measure(db: str, *, auth: bool) -> tuple[list[float], list[float]]:
    env = {"LBP_AUTH_DISABLED": "false" if auth else "true"}
    with Server(f"sqlite:///{db}", env=env) as srv:
        s = requests.Session()
        token = srv.token() if auth else None
        if token:
            s.headers["Authorization"] = f"Bearer {token}"
        body = {"resourceType": "Patient", "name": [{"family": "Bench"}], "birthDate": "1970-01-01"}
        r = s.post(srv.base + "/fhir/Patient", json=body, headers={"Content-Type": "application/fhir+json"})
        pid = r.json()["id"]
        c = Client(srv.port, token)
        for _ in range(200):  # warm-up: connections, caches
            c.get(f"/fhir/Patient/{pid}")
            c.get("/healthz")
        return timed(c, "/healthz", N), timed(c, f"/fhir/Patient/{pid}", N)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        floor, plain = measure(f"{tmp}/plain.db", auth=False)
        _, authed = measure(f"{tmp}/auth.db", auth=True)
    med_floor, med_plain, med_auth = statistics.median(floor), statistics.median(plain), statistics.median(authed)
    print(f"GET /healthz (floor):                  p50 {med_floor:.2f} ms  p99 {pct(floor, 0.99):.2f} ms")
    print(f"GET /fhir/Patient/{{id}}, no auth:        p50 {med_plain:.2f} ms  p99 {pct(plain, 0.99):.2f} ms  "
          f"({med_plain / med_floor:.1f}x the floor)")
    print(f"GET /fhir/Patient/{{id}}, bearer token:   p50 {med_auth:.2f} ms  p99 {pct(authed, 0.99):.2f} ms  "
          f"(token verification adds {med_auth - med_plain:+.2f} ms median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
