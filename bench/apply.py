"""$apply over HTTP: PlanDefinition/$apply of each variant's pathway for a loaded patient, beside a read.

Median and p99 of `GET /fhir/PlanDefinition/<pathway>/$apply?subject=Patient/<id>` against the real server
(gunicorn), with a plain read of the same patient measured in the same run as the baseline.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import Client, Server  # noqa: E402

N = 300
PATIENT = ROOT / "tests" / "data" / "patients" / "no-improvement.json"


def timed(client: Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        status, body = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        assert status == 200, body[:300]
    return out


def typical_record() -> dict:
    """The no-improvement reference patient, grown to about 50 resources with visits and pain ratings."""
    bundle = json.loads(PATIENT.read_text())
    pid = bundle["entry"][0]["resource"]["id"]
    for i in range(22):
        day = f"2026-{9 + i // 10:02d}-{1 + (i % 10) * 2:02d}"
        enc = {"resourceType": "Encounter", "id": f"bench-enc-{i}", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": {"reference": f"Patient/{pid}"}, "period": {"start": day, "end": day}}
        obs = {"resourceType": "Observation", "id": f"bench-nrs-{i}", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
               "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": day, "valueInteger": 7}
        for r in (enc, obs):
            request = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
            bundle["entry"].append({"resource": r, "request": request})
    return bundle


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, Server(f"sqlite:///{tmp}/apply.db",
                                                      load_artifacts=True) as srv:
        s = requests.Session()
        token = srv.token()
        s.headers["Authorization"] = f"Bearer {token}"
        c = Client(srv.port, token)
        bundle = typical_record()
        r = s.post(srv.base + "/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"})
        r.raise_for_status()
        pid = bundle["entry"][0]["resource"]["id"]
        print(f"patient {pid}: {len(bundle['entry'])} resources")
        read = timed(c, f"/fhir/Patient/{pid}", N)
        print(f"read Patient (baseline):        p50 {statistics.median(read):6.2f} ms")
        for variant in ("se", "skane", "midtjylland"):
            url = f"/fhir/PlanDefinition/lbp-pathway-{variant}/$apply?subject=Patient/{pid}"
            timed(c, url, 20)  # warm-up: this worker's knowledge and caches
            xs = timed(c, url, N)
            p99 = sorted(xs)[int(len(xs) * 0.99) - 1]
            print(f"$apply lbp-pathway-{variant:<12} p50 {statistics.median(xs):6.2f} ms  p99 {p99:6.2f} ms  "
                  f"({statistics.median(xs) / statistics.median(read):.1f}x the read)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
