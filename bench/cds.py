"""CDS Hooks benchmark: order-sign latency and throughput under gunicorn with 8 concurrent clients.

Measured in one run against one server:
- the floor: `POST /cds-services/_floor` returning `{"cards": []}` (enabled by LBP_CDS_BENCH_FLOOR; no JWT,
  no reasoning) — what any call through this stack costs;
- order-sign with full prefetch and a signed ES384 JWT per call (verification + jti in the database);
- order-sign with no prefetch: the service fetches every template (one FHIR batch) from a second gunicorn
  serving the FHIR API on the same database (a separate process, as an EHR's FHIR server would be).
Prints p50/p95/p99, calls per second, the server's CPU time per call (its processes' user + system time over
the scenario; the FHIR server's own on a line of its own), and our p50/p99 and calls/s as multiples of the
floor's. Asserts nothing.

    .venv/bin/python bench/cds.py [--calls 1500] [--clients 8] [--workers N] [--threads 4]
                                  [--database postgresql+psycopg://… --masters 2 [--beside-sqlite]]

With --database (PostgreSQL; emptied first) and --masters 2 the same calls go to two independent gunicorn
masters on one database (each client process to one of them), as two hosts behind a load balancer; with
--beside-sqlite a SQLite run with one master comes first and a table puts the two side by side.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import Server  # noqa: E402
from tests.cds.conftest import ISSUER, Keys, full_prefetch, hook_request, mint  # noqa: E402
from tests.cds.patients import DATA, TODAY  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


def _client(job: tuple[str, int, str, list[bytes], list[str] | None]) -> tuple[list[float], int]:
    """One client process: its share of the calls over one keep-alive connection (http.client: the client's
    own cost per call is a fraction of requests', so the figures are the server's)."""
    import http.client

    host, port, path, payloads, tokens = job
    conn = http.client.HTTPConnection(host, port, timeout=30)
    latencies, failures = [], 0
    for i, payload in enumerate(payloads):
        headers = {"Content-Type": "application/json"}
        if tokens is not None:
            headers["Authorization"] = f"Bearer {tokens[i]}"
        t = time.perf_counter()
        conn.request("POST", path, body=payload, headers=headers)
        r = conn.getresponse()
        r.read()
        latencies.append((time.perf_counter() - t) * 1000)
        failures += r.status != 200
    conn.close()
    return latencies, failures


def run(url: str | list[str], bodies: list[dict], tokens: list[str] | None,
        clients: int) -> tuple[list[float], float, int]:
    """`clients` client processes send their shares concurrently (client k to url k mod len(urls)); returns
    latencies (ms), seconds, failures."""
    from concurrent.futures import ProcessPoolExecutor
    from urllib.parse import urlsplit

    urls = [url] if isinstance(url, str) else url
    share = len(bodies) // clients
    payloads = [json.dumps(b).encode() for b in bodies]
    jobs = [(urlsplit(urls[k % len(urls)]).hostname, urlsplit(urls[k % len(urls)]).port,
             urlsplit(urls[k % len(urls)]).path, payloads[k * share:(k + 1) * share],
             tokens[k * share:(k + 1) * share] if tokens is not None else None) for k in range(clients)]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(clients, mp_context=ctx) as pool:
        list(pool.map(_client, [(j[0], j[1], "/healthz", [], None) for j in jobs]))  # processes up
        started = time.perf_counter()
        results = list(pool.map(_client, jobs))
        seconds = time.perf_counter() - started
    latencies = [x for lat, _ in results for x in lat]
    return latencies, seconds, sum(f for _, f in results)


def report(name: str, lat: list[float], seconds: float, failures: int, floor: tuple[float, float, float] | None,
           cpu_ms: float) -> tuple[float, float, float]:
    """Prints one scenario's line; returns (p50, p99, calls/s) for the ratios of the next ones."""
    p50, p95, p99 = pct(lat, 0.50), pct(lat, 0.95), pct(lat, 0.99)
    rate = len(lat) / seconds
    line = (f"{name:<34} n={len(lat):5d}  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  p99 {p99:7.2f} ms  "
            f"mean {statistics.fmean(lat):6.2f} ms  {rate:7.1f} calls/s  server CPU {cpu_ms:5.2f} ms/call  "
            f"failures {failures}")
    if floor:
        line += f"  | x floor: p50 {p50 / floor[0]:.1f}  p99 {p99 / floor[1]:.1f}  calls/s {rate / floor[2]:.2f}"
    print(line, flush=True)
    return p50, p99, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=max(2, multiprocessing.cpu_count()))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database", help="SQLAlchemy URL (PostgreSQL), emptied first; default a SQLite file")
    parser.add_argument("--masters", type=int, default=1, help="independent gunicorn masters on the database")
    parser.add_argument("--beside-sqlite", action="store_true",
                        help="with --database: a SQLite run with one master first, then both side by side")
    args = parser.parse_args()
    if args.beside_sqlite and args.database:
        sqlite = measure(args, None, 1)
        other = measure(args, args.database, args.masters)
        print(f"\n{'':<34} {'SQLite, 1 master':>34}   {f'PostgreSQL, {args.masters} masters':>34}")
        for name in sqlite:
            cells = [f"p50 {r[0]:6.1f}  p99 {r[1]:6.1f}  {r[2]:6.0f}/s" for r in (sqlite[name], other[name])]
            print(f"{name:<34} {cells[0]:>34}   {cells[1]:>34}")
        return
    measure(args, args.database, args.masters)


def measure(args: argparse.Namespace, database: str | None, masters: int) -> dict[str, tuple[float, float, float]]:
    """One run over one database: the floor and both order-sign scenarios; (p50, p99, calls/s) of each."""
    keys = Keys()
    tmp = Path(tempfile.mkdtemp(prefix="lbp-cds-bench-"))
    issuers = tmp / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": keys.jwks()}]}))
    db = database or f"sqlite:///{tmp / 'cds.db'}"
    if database:
        from sqlalchemy import create_engine

        import app.cds.tables  # noqa: F401  (its tables are on the metadata, dropped too)
        from app.store.schema import metadata

        engine = create_engine(database)
        metadata.drop_all(engine)
        engine.dispose()
    public = "http://cds.bench.test"  # one audience for every master, as behind a load balancer
    env = {"LBP_CDS_TRUSTED_ISSUERS_FILE": str(issuers), "LBP_CDS_BENCH_FLOOR": "true",
           "LBP_CDS_ALLOW_LOCAL_FHIR_SERVER": "true",  # the fhirServer below is this machine
           "LBP_CDS_TODAY": TODAY.isoformat(), "LBP_VALIDATE_WRITES": "false", "LBP_CDS_PUBLIC_BASE_URL": public}
    print(f"database: {db.split('://')[0]}, {masters} gunicorn master(s); "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    with Server(db, workers=args.workers, threads=args.threads, env=env, load_artifacts=True) as srv:
        others = [Server(db, workers=args.workers, threads=args.threads, env=env) for _ in range(masters - 1)]
        for other in others:
            other.__enter__()
        fhir_token = srv.token("system/*.cruds")
        for path in sorted(DATA.glob("Bundle-patient-*.json")):
            r = requests.post(srv.base + "/fhir", data=path.read_bytes(), timeout=60, headers={
                "Content-Type": "application/fhir+json", "Authorization": f"Bearer {fhir_token}"})
            r.raise_for_status()
        read_token = srv.token("system/*.rs")
        # the FHIR server the service fetches from: its own gunicorn on the same database
        fhir_srv = Server(db, workers=1, threads=args.threads, env=env)
        fhir_srv.__enter__()
        path = "/cds-services/lbp-order-sign-se"
        sign = [srv.base + path, *(o.base + path for o in others)]
        floor_urls = [srv.base + "/cds-services/_floor", *(o.base + "/cds-services/_floor" for o in others)]
        n = args.calls - args.calls % args.clients
        print(f"gunicorn {args.workers} workers x {args.threads} threads, {args.clients} concurrent clients, "
              f"{n} calls per scenario, {multiprocessing.cpu_count()} CPUs (clients share them)", flush=True)

        def prefetched() -> dict:
            return hook_request("order-sign", "clean", ["opioid", "mri"], prefetch=full_prefetch("clean"))

        def fetched() -> dict:
            return hook_request("order-sign", "clean", ["opioid", "mri"], prefetch=None,
                                fhirServer=fhir_srv.base + "/fhir",
                                fhirAuthorization={"access_token": read_token, "token_type": "Bearer",
                                                   "expires_in": 300, "scope": "system/*.rs", "subject": "cds"})

        # warm every worker (knowledge snapshot, compiled expressions, terminology index)
        warm = [prefetched() for _ in range(40)] + [fetched() for _ in range(40)]
        run(sign, warm, [mint(keys, public + path) for _ in warm], args.clients)

        servers = [srv, *others]

        def measured(urls: list[str], bodies: list[dict], tokens: list[str] | None):
            cpu, fhir_cpu = sum(s.cpu_seconds() for s in servers), fhir_srv.cpu_seconds()
            lat, secs, fail = run(urls, bodies, tokens, args.clients)
            cpu, fhir_cpu = sum(s.cpu_seconds() for s in servers) - cpu, fhir_srv.cpu_seconds() - fhir_cpu
            if fhir_cpu * 1000 / len(bodies) > 0.05:
                print(f"  (the FHIR server answering the fetches: {fhir_cpu * 1000 / len(bodies):.2f} ms CPU per call)")
            return lat, secs, fail, cpu * 1000 / len(bodies)

        floor_lat, floor_s, floor_fail, cpu = measured(floor_urls, [{} for _ in range(n)], None)
        floor = report("floor {\"cards\": []}", floor_lat, floor_s, floor_fail, None, cpu)
        results = {"floor": floor}

        tokens = [mint(keys, public + path) for _ in range(n)]
        lat, secs, fail, cpu = measured(sign, [prefetched() for _ in range(n)], tokens)
        results["order-sign, full prefetch"] = report("order-sign, full prefetch, JWT", lat, secs, fail, floor, cpu)

        m = max(args.clients, n // 2)
        m -= m % args.clients
        tokens = [mint(keys, public + path) for _ in range(m)]
        lat, secs, fail, cpu = measured(sign, [fetched() for _ in range(m)], tokens)
        results["order-sign, fetched"] = report("order-sign, fetched from FHIR, JWT", lat, secs, fail, floor, cpu)
        print("targets: prefetch p99 <= 25 ms and >= 500 calls/s; fetched p99 <= 60 ms", flush=True)
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        fhir_srv.__exit__(None, None, None)
        for other in others:
            other.__exit__(None, None, None)
    return results


if __name__ == "__main__":
    main()
