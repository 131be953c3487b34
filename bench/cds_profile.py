"""Where the time of one CDS call goes: order-sign with a signed JWT, profiled in process.

Runs one of the bench's calls (bench/cds.py; --scenario) through the Flask test client, single-threaded,
with cProfile (or --timers: a timer around each part, no profiler), and prints the time per call of each
part of the stack (JWT check, jti insert, request JSON, request checks, prefetch, `$apply` and case
features, cards, response JSON) as inclusive milliseconds per call, then the top functions by own time.
Asserts nothing.

    .venv/bin/python bench/cds_profile.py [--calls 300] [--top 30] [--timers] [--no-profile]
                                          [--scenario prefetch|fetched|fhir-batch] [--cumulative REGEX]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cds.conftest import ISSUER, Keys, full_prefetch, hook_request, mint  # noqa: E402
from tests.cds.patients import DATA, TODAY  # noqa: E402

# (label, module file suffix, function name): inclusive time per call of these, read from the profile
PARTS = [
    ("whole call (test client, JWT minting included)", "flask/app.py", "wsgi_app"),
    ("JWT check (verify)", "app/cds/auth.py", "verify"),
    ("  signature and claims (jwt.decode)", "jwt/api_jwt.py", "decode"),
    ("  key from JWK (jwk_key)", "app/auth/client_jwt.py", "jwk_key"),
    ("  jti insert (wait for grouped commit)", "app/auth/client_jwt.py", "remember"),
    ("request JSON (get_json)", "werkzeug/wrappers/request.py", "get_json"),
    ("request JSON (orjson)", "app/cds/__init__.py", "_request_json"),
    ("request checks (check_hook_request)", "app/cds/requests.py", "check_hook_request"),
    ("prefetch (resolve)", "app/cds/prefetch.py", "resolve"),
    ("$apply (apply_plan_definition)", "app/reasoning/apply.py", "apply_plan_definition"),
    ("cards (cards_from)", "app/cds/cards.py", "cards_from"),
    ("  $populate for missing fields", "app/cds/service.py", "_missing_fields"),
    ("questionnaire links (make_token)", "app/auth/links.py", "make_token"),
    ("remember cards (queue)", "app/cds/service.py", "remember_cards"),
    ("response JSON (_json)", "app/cds/__init__.py", "_json"),
    ("metrics (observe_cards)", "app/metrics.py", "observe_cards"),
]


def timed(calls: int, call) -> list[tuple[str, float]]:
    """Wraps each part's function (where it is looked up at call time) with a timer; ms per call of each."""
    import importlib
    import sys as _sys

    totals: dict[str, float] = {}
    patched: list[tuple[object, str, object]] = []
    for label, suffix, name in PARTS[1:]:
        module_name = suffix.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        module = _sys.modules.get(module_name) or importlib.import_module(module_name)
        owners = [module] if hasattr(module, name) else []
        owners += [v for v in vars(module).values() if isinstance(v, type) and name in vars(v)]
        if not owners:
            continue
        original = getattr(owners[0], name)
        # and every module that imported the function by name
        owners[1:] = [m for m in list(_sys.modules.values()) if m is not module and getattr(m, name, None) is original]
        for owner in owners:

            def wrapper(*a, __original=original, __label=label, **k):
                t = time.perf_counter()
                try:
                    return __original(*a, **k)
                finally:
                    totals[__label] = totals.get(__label, 0.0) + time.perf_counter() - t

            patched.append((owner, name, original))
            setattr(owner, name, wrapper)
    try:
        started = time.perf_counter()
        for _ in range(calls):
            call()
        totals[PARTS[0][0]] = time.perf_counter() - started
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)
    return [(label, totals.get(label, 0.0) * 1000 / calls) for label, _, _ in PARTS]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--scenario", choices=["prefetch", "fetched", "fhir-batch"], default="prefetch",
                        help="prefetch: full prefetch; fetched: the CDS side of fetching from a FHIR server "
                             "(served by other threads, not profiled); fhir-batch: the FHIR server's side")
    parser.add_argument("--cumulative", help="also list functions by inclusive time whose path matches this regex")
    parser.add_argument("--database", help="SQLAlchemy URL (PostgreSQL), emptied first; default a SQLite file")
    parser.add_argument("--callees", help="also list what the functions matching this regex call")
    parser.add_argument("--timers", action="store_true", help="time the parts with wrappers instead of cProfile")
    parser.add_argument("--no-profile", action="store_true", help="wall time per call only")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lbp-cds-profile-"))
    keys = Keys()
    public = "http://cds.bench.test"
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(tmp / "metrics"))
    (tmp / "metrics").mkdir(exist_ok=True)
    from app import create_app
    from app.auth.local import register_client

    clients = tmp / "clients.json"
    register_client(clients, "bench", "system/*.cruds", tmp / "keys")
    if args.database:  # emptied first
        from sqlalchemy import create_engine

        import app.cds.tables  # noqa: F401  (its tables are on the metadata, dropped too)
        from app.store.schema import metadata

        engine = create_engine(args.database)
        metadata.drop_all(engine)
        engine.dispose()
    app = create_app({"DATABASE_URL": args.database or f"sqlite:///{tmp / 'cds.db'}", "VALIDATE_WRITES": False,
                      "CLIENTS_FILE": str(clients), "CDS_TODAY": TODAY.isoformat(), "CDS_PUBLIC_BASE_URL": public,
                      "CDS_TRUSTED_ISSUERS": [{"iss": ISSUER, "jwks": keys.jwks()}],
                      "CDS_TRUSTED_ISSUERS_FILE": None, "LOAD_ARTIFACTS": True,
                      "CDS_ALLOW_LOCAL_FHIR_SERVER": True})
    client = app.test_client()
    token = app.extensions["lbp"].auth.tokens.mint("bench", "system/*.cruds")
    for path in sorted(DATA.glob("Bundle-patient-*.json")):
        r = client.post("/fhir", data=path.read_bytes(), headers={
            "Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.get_data(as_text=True)[:300]
    path = "/cds-services/lbp-order-sign-se"
    if args.scenario == "prefetch":
        body = json.dumps(hook_request("order-sign", "clean", ["opioid", "mri"],
                                       prefetch=full_prefetch("clean"))).encode()
    elif args.scenario == "fetched":  # the FHIR server in this process's other threads: not in the profile
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        read_token = app.extensions["lbp"].auth.tokens.mint("bench", "system/*.rs")
        body = json.dumps(hook_request(
            "order-sign", "clean", ["opioid", "mri"], prefetch=None,
            fhirServer=f"http://127.0.0.1:{server.server_port}/fhir",
            fhirAuthorization={"access_token": read_token, "token_type": "Bearer", "expires_in": 300,
                               "scope": "system/*.rs", "subject": "cds"})).encode()
    else:  # fhir-batch: what the FHIR server does for one fetched call (the batch of every template)
        from app.cds.prefetch import fill

        service = app.extensions["lbp_cds"].registry.services(app.extensions["lbp"].knowledge.base, "se")[
            "lbp-order-sign-se"]
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": fill(t, {"patientId": "clean"})}} for t in service.prefetch.values()]}
        body = json.dumps(batch).encode()
        path = "/fhir"
        read_token = app.extensions["lbp"].auth.tokens.mint("bench", "system/*.rs")

    def call() -> None:
        if args.scenario == "fhir-batch":
            r = client.post(path, data=body, headers={"Content-Type": "application/fhir+json",
                                                      "Authorization": f"Bearer {read_token}"})
        else:
            r = client.post(path, data=body, headers={"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {mint(keys, public + path)}"})
        assert r.status_code == 200, r.get_data(as_text=True)[:500]

    for _ in range(30):
        call()
    tokens_ms = time.process_time()
    for _ in range(args.calls if args.scenario != "fhir-batch" else 0):
        mint(keys, public + path)
    tokens_ms = (time.process_time() - tokens_ms) * 1000 / args.calls
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.calls):
        call()
    wall = (time.perf_counter() - started) * 1000 / args.calls
    cpu = (time.process_time() - cpu) * 1000 / args.calls
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.calls} calls unprofiled "
          f"(test client; minting the JWT, {tokens_ms:.2f} ms, taken off): {wall - tokens_ms:.2f} ms wall, "
          f"{cpu - tokens_ms:.2f} ms CPU per call")
    if args.timers:
        print("\ninclusive ms per call, timed without the profiler (nested rows are inside the row above):")
        for label, total in timed(args.calls, call):
            print(f"  {label:<44} {total:7.3f}")
    if args.no_profile or args.timers:
        return
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.calls):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw = stats.stats  # type: ignore[attr-defined]
    print("\ninclusive ms per call (profiled, so inflated about 2x; compare rows, not absolutes):")
    for label, suffix, name in PARTS:
        total = sum(v[3] for (file, _, fn), v in raw.items() if fn == name and file.endswith(suffix))
        print(f"  {label:<44} {total * 1000 / args.calls:7.2f}")
    print()
    stats.sort_stats("tottime").print_stats(args.top)
    if args.cumulative:
        stats.sort_stats("cumulative").print_stats(args.cumulative)
    if args.callees:
        stats.sort_stats("cumulative").print_callees(args.callees)


if __name__ == "__main__":
    main()
