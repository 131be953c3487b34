"""Ingest benchmark: the Synthea set loaded over HTTP with and without validation, beside the raw limit.

Prints resources/s for each run, peak resident memory of the server, and our rate as a share of the raw
limit (JSON parse + SQLite insert of the same rows and index rows, no HTTP, no validation) measured in
the same run. With --postgres URL, the same over PostgreSQL with two gunicorn masters (--pg-masters), each
beside PostgreSQL's own raw limit. It asserts nothing about time. --patients N loads a subset.
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


def raw_limit_postgres(bodies: list[tuple[str, bytes, int]], url: str) -> tuple[int, float]:
    """The raw limit on PostgreSQL: JSON parse + one COPY per table per bundle (as the store writes), one
    transaction per bundle, index rows computed beforehand. No HTTP."""
    import psycopg
    from sqlalchemy import create_engine

    from app.store import schema
    from app.store.indexing import extract

    engine = create_engine(url)
    schema.metadata.drop_all(engine)
    schema.metadata.create_all(engine)
    engine.dispose()
    rows_by_bundle = [[extract(e["resource"]) for e in orjson.loads(body)["entry"]] for _, body, _ in bodies]
    n = 0
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        started = time.perf_counter()
        for (_, body, _), pre in zip(bodies, rows_by_bundle, strict=True):
            doc = orjson.loads(body)
            res_rows = []
            idx: dict[str, list] = {k: [] for k in schema.INDEX_TABLES}
            for rows, entry in zip(pre, doc["entry"], strict=True):
                n += 1
                resource = entry["resource"]
                res_id = entry.get("fullUrl", "").rsplit(":", 1)[-1] or str(n)
                res_rows.append((n, resource["resourceType"], res_id, 1, 0.0, False, orjson.dumps(resource).decode()))
                for kind in idx:
                    idx[kind].extend((n, resource["resourceType"], *v) for v in getattr(rows, kind))
            with conn.transaction(), conn.cursor() as cur:
                tables = [(schema.resources, res_rows), *((schema.INDEX_TABLES[k], r) for k, r in idx.items())]
                for table, rows in tables:
                    if rows:
                        with cur.copy(f"COPY {table.name} FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
        elapsed = time.perf_counter() - started
    engine = create_engine(url)
    schema.metadata.drop_all(engine)
    engine.dispose()
    return n, elapsed


def http_runs(bodies: list[tuple[str, bytes, int]], only: set[str], database: str | None, masters: int,
              clients: int, raw_rate: float, engine_name: str) -> None:
    """Loads over HTTP (validation on, then off) into a fresh database and prints each rate beside `raw_rate`."""
    runs = [r for r in (("validation on ", "true", "on"), ("validation off", "false", "off")) if r[2] in only]
    for label, validate, _ in runs:
        if database:
            from sqlalchemy import create_engine

            from app.store.schema import metadata

            engine = create_engine(database)
            metadata.drop_all(engine)
            engine.dispose()
        with tempfile.TemporaryDirectory() as tmp, Server(database or f"sqlite:///{tmp}/bench.db",
                                                         env={"LBP_VALIDATE_WRITES": validate}) as srv:
            others = [Server(database or f"sqlite:///{tmp}/bench.db", env={"LBP_VALIDATE_WRITES": validate})
                      for _ in range(masters - 1)]
            for other in others:
                other.__enter__()
            token = srv.token()
            ok, elapsed, failed = load_over_http([srv.base, *(o.base for o in others)], bodies, clients,
                                                 [token, *(o.token() for o in others)])
            for other in others:
                other.__exit__(None, None, None)
            rate = ok / elapsed
            check = requests.get(srv.base + "/fhir/Patient?_summary=count", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}).json()["total"]
            print(f"{engine_name:10s} HTTP, {label}: {rate:9,.0f} resources/s = {rate / raw_rate:4.0%} of raw limit "
                  f"({ok} loaded, {failed} failed, {elapsed:.1f} s, {check} patients searchable; "
                  f"peak of the first master: RSS {srv.peak_rss_mb:.0f} MB, PSS {srv.peak_pss_mb:.0f} MB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--patients", type=int, default=None, help="load only the first N patient bundles")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--only", choices=["raw", "on", "off"], action="append",
                    help="run only these measurements (default: all)")
    ap.add_argument("--database", help="PostgreSQL URL (emptied before each run) instead of a SQLite file")
    ap.add_argument("--masters", type=int, default=1, help="independent gunicorn masters sharing the load")
    ap.add_argument("--postgres", metavar="URL",
                    help="after the SQLite figures, the same measurements over this PostgreSQL database (emptied "
                         "before each run) with --pg-masters masters")
    ap.add_argument("--pg-masters", type=int, default=2)
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
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    raw_rate = float("nan")
    if "raw" in only:
        if args.database:
            n_raw, t_raw = raw_limit_postgres(bodies, args.database)
        else:
            n_raw, t_raw = raw_limit(bodies)
        raw_rate = n_raw / t_raw
        engine_name = "PostgreSQL" if args.database else "SQLite"
        print(f"{engine_name:10s} raw limit (parse + insert, no HTTP): {raw_rate:9,.0f} resources/s")
    http_runs(bodies, only, args.database, args.masters, args.clients, raw_rate,
              "PostgreSQL" if args.database else "SQLite")
    if args.postgres:
        pg_raw = float("nan")
        if "raw" in only:
            n_raw, t_raw = raw_limit_postgres(bodies, args.postgres)
            pg_raw = n_raw / t_raw
            print(f"{'PostgreSQL':10s} raw limit (parse + insert, no HTTP): {pg_raw:9,.0f} resources/s")
        print(f"PostgreSQL: {args.pg_masters} gunicorn masters sharing the load")
        http_runs(bodies, only, args.postgres, args.pg_masters, args.clients, pg_raw, "PostgreSQL")
    print(f"load average at start {load}, at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
