"""The jti replay check: one transaction per call against grouped commits, 8 concurrent callers.

Both record every jti with a unique insert committed before the caller goes on (a replay is refused by
any worker or host); the grouped one shares a transaction among the callers of a few milliseconds
(`app.store.group_commit`). Prints calls/s and p50/p99 per call for each, and their ratio. Asserts nothing.

    .venv/bin/python bench/jti.py [--calls 2000] [--threads 8] [--database URL]   (default a SQLite file)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.auth.client_jwt import ReplayCache  # noqa: E402
from app.store import schema  # noqa: E402
from app.store.db import Store  # noqa: E402


def one_transaction_per_call(store: Store, key: str, expires: float) -> bool:
    try:
        with store.transaction() as tx:
            tx.conn.execute(insert(schema.client_jti).values(key=key, expires=expires))
    except IntegrityError:
        return False
    return True


def drive(call, calls: int, threads: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        mine = []
        for _ in range(n):
            key = hashlib.sha256(b"bench").hexdigest()[:32] + ":" + uuid.uuid4().hex
            t = time.perf_counter()
            assert call(key, time.time() + 300)
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker, args=(calls // threads,)) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.database or f"sqlite:///{tmp}/jti.db")
        with store.engine.begin() as conn:
            conn.execute(schema.client_jti.delete())
        print(f"{store.dialect}, {args.threads} threads, {args.calls} calls each; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        replay = ReplayCache(store)
        figures = {}
        for name, call in (("one transaction per call", lambda k, e: one_transaction_per_call(store, k, e)),
                           ("grouped commit", lambda k, e: replay.inserts.insert({"key": k, "expires": e}))):
            lat, secs = drive(call, args.calls, args.threads)
            figures[name] = len(lat) / secs
            print(f"{name:<26} {len(lat) / secs:8.0f} calls/s  p50 {statistics.median(lat):6.2f} ms  "
                  f"p99 {sorted(lat)[int(len(lat) * 0.99)]:6.2f} ms")
        print(f"grouped: {replay.inserts.rows} rows in {replay.inserts.batches} transactions; throughput x"
              f"{figures['grouped commit'] / figures['one transaction per call']:.1f} of one transaction per call")
        store.dispose()


if __name__ == "__main__":
    main()
