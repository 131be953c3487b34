"""Read benchmark: single-resource read latency over HTTP (gunicorn), beside /healthz measured in the same run."""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import Server  # noqa: E402

N = 2000


def timed(session: requests.Session, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url, timeout=10)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200
    return out


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, Server(f"sqlite:///{tmp}/read.db") as srv:
        s = requests.Session()
        body = {"resourceType": "Patient", "name": [{"family": "Bench"}], "birthDate": "1970-01-01"}
        r = s.post(srv.base + "/fhir/Patient", json=body, headers={"Content-Type": "application/fhir+json"})
        pid = r.json()["id"]
        for _ in range(200):  # warm-up: connections, caches
            s.get(srv.base + f"/fhir/Patient/{pid}")
            s.get(srv.base + "/healthz")
        floor = timed(s, srv.base + "/healthz", N)
        reads = timed(s, srv.base + f"/fhir/Patient/{pid}", N)
        med_floor, med_read = statistics.median(floor), statistics.median(reads)
        print(f"GET /healthz (floor):      p50 {med_floor:.2f} ms  p99 {pct(floor, 0.99):.2f} ms")
        print(f"GET /fhir/Patient/{{id}}:    p50 {med_read:.2f} ms  p99 {pct(reads, 0.99):.2f} ms  "
              f"({med_read / med_floor:.1f}x the floor, {med_read - med_floor:.2f} ms above it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
