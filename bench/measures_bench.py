"""Cost of evaluating every Measure of one variant over a generated cohort, beside reading the same records.

Loads a demo cohort (`app.measures.demo`, default 10,000 patients) into a fresh SQLite database (or the
database given with --database, which is emptied first) from a child process, then in the same run measures
  1. reading every patient's record from the store (the baseline: what any evaluation must pay), and
  2. reading and evaluating all Measures of the variant in one pass (what `lbp report` does: each case
     feature computed when a criterion first reads it),
  3. the same with every case feature a Measure may read computed up front for each patient (the eager
     baseline; --no-eager leaves it out),
and prints patients per second per core (the process is single-threaded), the time of the evaluation
alone, its ratio to the read, and the peak resident memory. Prints figures, asserts nothing.

    .venv/bin/python bench/measures_bench.py [--patients 10000] [--variant skane] [--database URL]
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from app.measures import engine  # noqa: E402
from app.measures.demo import demo_cohort, transaction_bundles  # noqa: E402
from app.measures.store_cohort import cohort_records  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_cohort(url: str, variant: str, patients: int, seed: int) -> None:
    app = create_app({"DATABASE_URL": url, "AUTH_DISABLED": True, "VALIDATE_WRITES": False})
    client = app.test_client()
    for bundle in transaction_bundles(demo_cohort(variant, patients, seed), per_bundle=5000):
        r = client.post("/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"})
        if r.status_code != 200:
            raise SystemExit(f"load failed: HTTP {r.status_code}")
    app.extensions["lbp"].store.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--variant", default="skane", choices=["se", "skane"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-eager", action="store_true", help="leave out the eager baseline (3.)")
    parser.add_argument("--database", help="SQLAlchemy URL (emptied first); default a temporary SQLite file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{tmp}/bench.db"
        if args.database:
            from sqlalchemy import create_engine

            from app.store.schema import metadata

            eng = create_engine(url)
            metadata.drop_all(eng)
            eng.dispose()
        # The cohort is generated and loaded in a child process, so that the peak memory measured here is
        # the evaluation's, not the loader's.
        started = time.perf_counter()
        child = multiprocessing.get_context("fork").Process(target=load_cohort,
                                                            args=(url, args.variant, args.patients, args.seed))
        child.start()
        child.join()
        if child.exitcode != 0:
            print("loading the cohort failed", file=sys.stderr)
            return 1
        app = create_app({"DATABASE_URL": url, "AUTH_DISABLED": True, "VALIDATE_WRITES": False})
        lbp = app.extensions["lbp"]
        print(f"cohort: {args.patients} patients, variant {args.variant} "
              f"(generated and loaded in {time.perf_counter() - started:.1f} s)")
        rss_before = rss_mb()

        kb = lbp.knowledge.base
        measures = engine.measures_for_variant(kb, args.variant)
        period = engine.Period(date(2026, 1, 1), date(2026, 12, 31))
        as_of = date(2026, 12, 31)

        # 1. baseline: read every record
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        read = sum(len(record) for record in cohort_records(lbp.store))
        t_read = time.perf_counter() - t0
        cpu_read = time.process_time() - cpu0

        # 2. read and evaluate every Measure of the variant in one pass
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        evaluator, accs = engine.evaluate_measures(kb, measures, cohort_records(lbp.store), period,
                                                   variant=args.variant, as_of=as_of)
        t_total = time.perf_counter() - t0
        cpu_total = time.process_time() - cpu0
        t_eval = max(t_total - t_read, 1e-9)
        counted = len({pid for acc in accs for pid in acc.subjects})

        # 3. baseline: the same, every feature a Measure may read computed up front
        cpu_eager = None
        if not args.no_eager:
            cpu0 = time.process_time()
            eager, eager_accs = engine.evaluate_measures(kb, measures, cohort_records(lbp.store), period,
                                                         variant=args.variant, as_of=as_of, eager_features=True)
            cpu_eager = max(time.process_time() - cpu0 - cpu_read, 1e-9)
            same = [a.groups.keys() == b.groups.keys() and all(
                a.groups[g].overall.counts == b.groups[g].overall.counts for g in a.groups)
                for a, b in zip(accs, eager_accs, strict=True)]
        lbp.store.dispose()

    n = args.patients
    cpu_eval = max(cpu_total - cpu_read, 1e-9)
    # Per core = per CPU second of this (single-threaded) process: on a shared machine the wall clock also
    # counts the time other processes held the core.
    print(f"measures: {len(measures)} ({sum(len(a.measure.groups) for a in accs)} groups), "
          f"up to {len(evaluator.only)} case features per patient ({len(evaluator.placing)} to place a patient); "
          f"{counted} patients counted in an indicator")
    print(f"{'':22} {'wall s':>8} {'cpu s':>8} {'patients/s per core (cpu)':>27}")
    print(f"{'read records':22} {t_read:8.2f} {cpu_read:8.2f} {n / cpu_read:27,.0f}   ({read} resources)")
    print(f"{'read + evaluate':22} {t_total:8.2f} {cpu_total:8.2f} {n / cpu_total:27,.0f}")
    print(f"{'evaluate alone':22} {t_eval:8.2f} {cpu_eval:8.2f} {n / cpu_eval:27,.0f}")
    print(f"evaluate / read (cpu): {cpu_eval / cpu_read:.1f} x; case features computed: "
          f"{evaluator.features_evaluated / n:.1f} per patient on average")
    if cpu_eager is not None:
        print(f"{'eager evaluate alone':22} {'':8} {cpu_eager:8.2f} {n / cpu_eager:27,.0f}   "
              f"({eager.features_evaluated / n:.1f} features per patient; populations equal: {all(same)})")
        print(f"on demand / eager (cpu): {cpu_eval / cpu_eager:.2f}; speed-up {cpu_eager / cpu_eval:.1f} x")
    print(f"target 2,000 patients/s per core: {'met' if n / cpu_eval >= 2000 else 'NOT met'} "
          f"({n / cpu_eval / 2000:.2f} of target)")
    print(f"peak resident memory: {rss_mb():.0f} MB (target < 500 MB; {rss_before:.0f} MB before evaluating: "
          "the application with its knowledge loaded)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
