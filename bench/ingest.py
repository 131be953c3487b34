"""Ingest benchmark: the Synthea set loaded over HTTP with and without validation, beside the raw limit.

Prints resources/s for each run, peak resident memory of the server, and our rate as a share of the raw
limit (JSON parse + SQLite insert of the same rows and index rows, no HTTP, no validation) measured in
the same run. It asserts nothing about time.
"""
from __future__ import annotations

import argparse
import bz2
import concurrent.futures as cf
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import Server  # noqa: E402


def bundle_files(shared: Path, limit: int | None) -> list[Path]:
    files = sorted((shared / "data" / "synthea").glob("*.json.bz2"))
    info = [f for f in files if "Information" in f.name]
    patients = [f for f in files if "Information" not in f.name]
    return info + (patients[:limit] if limit else patients)


def load_over_http(base: str | list[str], bodies: list[tuple[str, bytes, int]], clients: int, token: str | list[str]
                   ) -> tuple[int, float, int]:
    """Patient bundles from `clients` threads; with several bases (masters), bundle k goes to base k mod n."""
    bases = [base] if isinstance(base, str) else base
    tokens = [token] if isinstance(token, str) else token
    session = requests.Session()
    order = {b[0]: k for k, b in enumerate(bodies)}

    def post(item):
        name, body, n = item
        k = order[name] % len(bases)
        headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {tokens[k]}"}
        r = session.post(bases[k] + "/fhir", data=body, headers=headers, timeout=600)
        if r.status_code != 200:
            return 0, 1
        bad = sum(1 for e in r.json().get("entry", []) if not e["response"]["status"].startswith("2"))
        return n - bad, bad

    started = time.perf_counter()
    ok = failed = 0
    info = [b for b in bodies if "Information" in b[0]]
    rest = [b for b in bodies if "Information" not in b[0]]
    for item in info:  # hospitals and practitioners first: patients reference them conditionally
        n, bad = post(item)
        ok += n
        failed += bad
    with cf.ThreadPoolExecutor(clients) as pool:
        for n, bad in pool.map(post, rest):
            ok += n
            failed += bad
    return ok, time.perf_counter() - started, failed


def raw_limit(bodies: list[tuple[str, bytes, int]]) -> tuple[int, float]:
    """JSON parse + SQLite insert of resources and the same index rows (rows computed beforehand)."""
    from app.store.db import Store
    from app.store.indexing import extract

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/raw.db")  # same schema and indexes
        store.dispose()
        rows_by_bundle = []
        for _, body, _ in bodies:
            doc = orjson.loads(body)
            rows_by_bundle.append([(e["resource"], extract(e["resource"])) for e in doc["entry"]])
        conn = sqlite3.connect(f"{tmp}/raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        from app.store import schema

        sql_idx = {k: f"INSERT INTO {t.name} VALUES ({', '.join('?' * len(t.columns))})"
                   for k, t in schema.INDEX_TABLES.items()}
        n = 0
        started = time.perf_counter()
        for (_, body, _), pre in zip(bodies, rows_by_bundle, strict=True):
            doc = orjson.loads(body)
            conn.execute("BEGIN IMMEDIATE")
            res_rows = []
            idx: dict[str, list] = {k: [] for k in sql_idx}
            for (resource, rows), entry in zip(pre, doc["entry"], strict=True):
                n += 1
                res_id = entry.get("fullUrl", "").rsplit(":", 1)[-1] or str(n)
                res_rows.append((n, resource["resourceType"], res_id, 1, 0.0, 0, orjson.dumps(entry["resource"])))
                for kind in sql_idx:
                    idx[kind].extend((n, resource["resourceType"], *v) for v in getattr(rows, kind))
            conn.executemany("INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?, ?)", res_rows)
            for kind, rows in idx.items():
                if rows:
                    conn.executemany(sql_idx[kind], rows)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return n, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--patients", type=int, default=None, help="load only the first N patient bundles")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--only", choices=["raw", "on", "off"], action="append",
                    help="run only these measurements (default: all)")
    ap.add_argument("--database", help="PostgreSQL URL (emptied before each run) instead of a SQLite file")
    ap.add_argument("--masters", type=int, default=1, help="independent gunicorn masters sharing the load")
    args = ap.parse_args()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"{'PostgreSQL' if args.database else 'SQLite'}, {args.masters} gunicorn master(s)")
    files = bundle_files(Path(args.shared), args.patients)
    bodies = []
    for f in files:
        body = bz2.decompress(f.read_bytes())
        bodies.append((f.name, body, len(orjson.loads(body)["entry"])))
    total = sum(n for _, _, n in bodies)
    print(f"Synthea: {len(bodies)} bundles, {total} resources ({sum(len(b) for _, b, _ in bodies) / 1e6:.0f} MB)")

    only = set(args.only or ["raw", "on", "off"])
    raw_rate = float("nan")
    if "raw" in only:
        n_raw, t_raw = raw_limit(bodies)
        raw_rate = n_raw / t_raw
        print(f"raw limit (parse + SQLite insert, no HTTP):   {raw_rate:9,.0f} resources/s")

    results = {}
    runs = [r for r in (("HTTP, validation on ", "true", "on"), ("HTTP, validation off", "false", "off"))
            if r[2] in only]
    for label, validate, _ in runs:
        if args.database:
            from sqlalchemy import create_engine

            from app.store.schema import metadata

            engine = create_engine(args.database)
            metadata.drop_all(engine)
            engine.dispose()
        with tempfile.TemporaryDirectory() as tmp, Server(args.database or f"sqlite:///{tmp}/bench.db",
                                                         env={"LBP_VALIDATE_WRITES": validate}) as srv:
            others = [Server(args.database or f"sqlite:///{tmp}/bench.db", env={"LBP_VALIDATE_WRITES": validate})
                      for _ in range(args.masters - 1)]
            for other in others:
                other.__enter__()
            token = srv.token()
            ok, elapsed, failed = load_over_http([srv.base, *(o.base for o in others)], bodies, args.clients,
                                                 [token, *(o.token() for o in others)])
            for other in others:
                other.__exit__(None, None, None)
            rate = ok / elapsed
            results[label] = rate
            check = requests.get(srv.base + "/fhir/Patient?_summary=count", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}).json()["total"]
            print(f"{label}: {rate:9,.0f} resources/s  ({ok} loaded, {failed} failed, {elapsed:.1f} s, "
                  f"peak RSS {srv.peak_rss_mb:.0f} MB, {check} patients searchable)  "
                  f"= {rate / raw_rate:.0%} of raw limit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
