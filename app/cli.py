"""Command-line tool: serve, load, validate, export, conformance, report, demo."""
from __future__ import annotations

import argparse
import bz2
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from app import ROOT
from app.conventions import variants


def _app(**config):
    from app import create_app

    return create_app(config)


# ------------------------------------------------------------------ serve

def cmd_serve(args: argparse.Namespace) -> int:
    """Load the artifact folders once, then hand over to gunicorn (which must not reload them per worker)."""
    os.environ.setdefault("PORT", str(args.port))
    app = _app()
    with app.app_context():
        pass
    db = app.config["DATABASE_URL"]
    base = f"http://{args.host}:{os.environ['PORT']}"
    print(f"FHIR server: {base}{app.config['FHIR_BASE_PATH']}  (database: {db.split('@')[-1]})", flush=True)
    if app.extensions["lbp"].auth.disabled:
        print("WARNING: authentication is DISABLED (LBP_AUTH_DISABLED=true)", flush=True)
    else:
        print("Patient data needs an access token. Register a local client and get one:\n"
              "  .venv/bin/lbp client add demo\n"
              f"  {_curl_line('demo', base)}", flush=True)
    app.extensions["lbp"].store.dispose()
    # Fewer malloc arenas: threaded workers otherwise keep a large bundle's memory in per-thread arenas.
    env = dict(os.environ, LBP_LOAD_ARTIFACTS="false")
    env.setdefault("MALLOC_ARENA_MAX", "2")
    argv = [
        sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
        "--bind", f"{args.host}:{os.environ['PORT']}", "app.wsgi:app",
    ]
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover


# ------------------------------------------------------------------ client

def _curl_line(client_id: str, base: str) -> str:
    return (f"curl -s {base}/auth/token -d grant_type=client_credentials -d scope='system/*.cruds' "
            "-d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer "
            f"-d client_assertion=$(.venv/bin/lbp client assertion {client_id} --base {base})")


def cmd_link_revoke(args: argparse.Namespace) -> int:
    from app.auth.links import revoke

    if bool(args.link_id) == bool(args.issuer):
        print("give exactly one of --link-id and --issuer", file=sys.stderr)
        return 2
    app = _app(LOAD_ARTIFACTS=False)
    revoke(app.extensions["lbp"].store, link_id=args.link_id, issuer=args.issuer)
    app.extensions["lbp"].store.dispose()
    print(f"revoked: {'link ' + args.link_id if args.link_id else 'every link minted so far for ' + args.issuer}")
    return 0


def cmd_client_add(args: argparse.Namespace) -> int:
    from app.auth.local import register_client

    app_config = _config_only()
    try:
        pem = register_client(app_config["CLIENTS_FILE"], args.client_id, args.scope, args.key_dir, args.alg)
    except ValueError as exc:
        print(f"client not registered: {exc}", file=sys.stderr)
        return 2
    base = f"http://127.0.0.1:{os.environ.get('PORT', '8080')}"
    print(f"registered client '{args.client_id}' (scopes: {args.scope}); private key: {pem}")
    print("get an access token (valid 5 minutes):")
    print(f"  {_curl_line(args.client_id, base)}")
    return 0


def cmd_client_assertion(args: argparse.Namespace) -> int:
    from app.auth.local import client_assertion

    pem = Path(args.key_dir) / f"{args.client_id}.pem"
    if not pem.exists():
        print(f"lbp client assertion: no key for '{args.client_id}' in {args.key_dir}", file=sys.stderr)
        return 1
    print(client_assertion(args.client_id, pem, args.base.rstrip("/") + "/auth/token"))
    return 0


def _config_only() -> dict:
    """Configuration as create_app would see it, without opening the database."""
    from flask import Flask

    from app import DEFAULTS, _env_overrides

    f = Flask("lbp-config")
    f.config.update(DEFAULTS)
    f.config.update(_env_overrides())
    f.config.from_prefixed_env("LBP")
    return dict(f.config)


# ------------------------------------------------------------------ load

def _bundle_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(x for x in p.iterdir() if x.name.endswith((".json", ".json.bz2")))
            # hospital and practitioner bundles first: patients reference them conditionally
            files.sort(key=lambda x: (0 if "Information" in x.name else 1, x.name))
            out.extend(files)
        elif p.exists():
            out.append(p)
        else:
            raise SystemExit(f"lbp load: {p}: no such file or directory")
    return out


def _read_json(path: Path) -> bytes:
    data = path.read_bytes()
    return bz2.decompress(data) if path.name.endswith(".bz2") else data


def _as_bundle(body: bytes) -> tuple[bytes, int]:
    doc = orjson.loads(body)
    if doc.get("resourceType") == "Bundle" and doc.get("type") in ("transaction", "batch"):
        return body, len(doc.get("entry") or [])
    # a single resource or a collection: load as a transaction of upserts
    resources = [e["resource"] for e in doc.get("entry", [])] if doc.get("resourceType") == "Bundle" else [doc]
    entries = []
    for r in resources:
        if r.get("id"):
            entries.append({"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}})
        else:
            entries.append({"resource": r, "request": {"method": "POST", "url": r["resourceType"]}})
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}), len(entries)


def _progress(done: int, total: int, resources: int, started: float) -> None:
    stream = sys.stderr
    width = 30
    filled = int(width * done / total) if total else width
    rate = resources / max(time.perf_counter() - started, 1e-9)
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files  {resources} resources  "
                 f"{rate:,.0f}/s")
    stream.flush()


def cmd_load(args: argparse.Namespace) -> int:
    files = _bundle_files(args.paths)
    headers = {"Content-Type": "application/fhir+json"}
    if args.url and args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    if args.url:
        import requests

        session = requests.Session()

        def post(body: bytes):
            r = session.post(args.url.rstrip("/"), data=body, headers=headers, timeout=600)
            return r.status_code, r.content
    else:
        config = {"LOAD_ARTIFACTS": False}
        if args.no_validate:
            config["VALIDATE_WRITES"] = False
        app = _app(**config)
        # The operator on this machine writes with a token of its own, so the audit trail names it.
        with app.app_context():
            token = app.extensions["lbp"].auth.tokens.mint("lbp-cli (local operator)", "system/*.cruds", 3600)
        headers["Authorization"] = f"Bearer {token}"
        client = app.test_client()

        def post(body: bytes):
            r = client.post("/fhir", data=body, headers=headers)
            return r.status_code, r.data

    started = time.perf_counter()
    resources = 0
    failures: list[str] = []
    for i, path in enumerate(files, 1):
        try:
            body, n = _as_bundle(_read_json(path))
        except (OSError, ValueError) as exc:
            failures.append(f"{path.name}: cannot read ({exc})")
            continue
        status, content = post(body)
        if status >= 300:
            failures.append(f"{path.name}: HTTP {status}: {_outcome_text(content)}")
        else:
            errors = _batch_errors(content)
            failures.extend(f"{path.name}: {e}" for e in errors)
            resources += n - len(errors)
        if not args.quiet:
            _progress(i, len(files), resources, started)
    elapsed = time.perf_counter() - started
    if not args.quiet:
        sys.stderr.write("\n")
    for f in failures:
        print(f"failed: {f}", file=sys.stderr)
    print(f"resources: {resources}  seconds: {elapsed:.1f}  resources/s: {resources / max(elapsed, 1e-9):,.0f}  "
          f"failures: {len(failures)}")
    return 1 if failures else 0


def _outcome_text(content: bytes) -> str:
    try:
        oo = orjson.loads(content)
        issue = oo["issue"][0]
        return f"{issue['details']['text']} at {', '.join(issue.get('expression', []))}"
    except (ValueError, KeyError, IndexError, TypeError):
        return content[:200].decode(errors="replace")


def _batch_errors(content: bytes) -> list[str]:
    try:
        doc = orjson.loads(content)
    except ValueError:
        return []
    out = []
    for i, e in enumerate(doc.get("entry") or []):
        resp = e.get("response") or {}
        if not str(resp.get("status", "200")).startswith("2"):
            out.append(f"entry {i}: {resp.get('status')}: {_outcome_text(orjson.dumps(resp.get('outcome', {})))}")
    return out


# ------------------------------------------------------------------ validate

def _resources_in(path: Path) -> Iterator[tuple[str, dict]]:
    doc = orjson.loads(_read_json(path))
    yield (str(path), doc)


def cmd_validate(args: argparse.Namespace) -> int:
    from app.validation import validate_resource

    files: list[Path] = []
    for p in map(Path, args.paths):
        files.extend(sorted(p.rglob("*.json")) if p.is_dir() else [p])
    errors = warnings = 0
    resources = []
    for path in files:
        try:
            items = list(_resources_in(path))
        except (OSError, ValueError) as exc:
            print(f"{path}: error: not readable JSON ({exc})")
            errors += 1
            continue
        for name, resource in items:
            resources.append(resource)
            issues = validate_resource(resource, check_rules=True)
            for issue in issues:
                where = ", ".join(issue.expression) or resource.get("resourceType", "?")
                print(f"{name}: {issue.severity}: {where}: {issue.text}")
                errors += issue.is_error
                warnings += issue.severity == "warning"
    from app.knowledge.check import check_artifacts

    for finding in check_artifacts(resources):  # the static analysis of every FHIRPath, in its place
        print(f"{finding.artifact}: {finding.severity}: {finding.element}: {finding.message}: {finding.expression}")
        errors += finding.severity == "error"
        warnings += finding.severity == "warning"
    print(f"{len(files)} files, {errors} errors, {warnings} warnings")
    return 1 if errors else 0


# ------------------------------------------------------------------ export

VARIANT_PATHWAYS = {code: variant.pathway for code, variant in variants().items()}


def export_bundle(app, variant: str | None = None) -> dict:
    """A transaction Bundle (PUT entries) of the stored artifacts, or of one variant's closure."""
    from app.knowledge.export import knowledge_bundle

    with app.app_context():
        return knowledge_bundle(app.extensions["lbp"], VARIANT_PATHWAYS.get(variant) if variant else None)


def cmd_export(args: argparse.Namespace) -> int:
    bundle = export_bundle(_app(), args.variant)
    data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2)
    if args.output:
        Path(args.output).write_bytes(data + b"\n")
        print(f"wrote {len(bundle['entry'])} resources to {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data + b"\n")
    return 0


# ------------------------------------------------------------------ conformance

def cmd_conformance(args: argparse.Namespace) -> int:
    from app.validation import conformance

    return conformance.main([args.package])


# ------------------------------------------------------------------ report, demo

def cmd_report(args: argparse.Namespace) -> int:
    """Every indicator of a variant over the stored records: a table on stdout and an HTML page."""
    from app.measures.report import build_report, parse_period, render_report
    from app.measures.store_cohort import cohort_records

    try:
        period = parse_period(args.period)
    except ValueError as exc:
        print(f"lbp report: --period: {exc}", file=sys.stderr)
        return 2
    from app.measures.report import table_text

    app = _app()
    lbp = app.extensions["lbp"]
    with app.app_context():
        result = build_report(lbp.knowledge.base, cohort_records(lbp.store), variant=args.variant, period=period,
                              lang=args.lang)
        html = render_report(lbp.knowledge.base, result, variant=args.variant, period=period)
    print(table_text(result.rows, variant=args.variant, period=period, as_of=result.evaluator.as_of))
    for issue in result.issues():
        print(f"problem: {issue}", file=sys.stderr)
    output = Path(args.output or f"report-{args.variant}-{period.start}-{period.end}.html")
    output.write_text(html, encoding="utf-8")
    print(f"\npage: {output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A deterministic demo cohort: to a file (-o), to a running server (--url), or into the local database."""
    from app.measures.demo import demo_cohort, transaction_bundles

    resources = demo_cohort(args.variant, args.patients, args.seed, year=args.year)
    bundles = transaction_bundles(resources)
    if args.output:
        with open(args.output, "wb") as out:
            out.write(orjson.dumps({"resourceType": "Bundle", "type": "transaction",
                                    "entry": [e for b in bundles for e in b["entry"]]}))
        print(f"{len(resources)} resources ({args.patients} patients, variant {args.variant}, seed {args.seed}) "
              f"written to {args.output}; load them with: lbp load {args.output}")
        return 0
    headers = {"Content-Type": "application/fhir+json"}
    if args.url:
        import requests

        if args.token:
            headers["Authorization"] = f"Bearer {args.token}"
        session = requests.Session()

        def post(body: bytes):
            r = session.post(args.url.rstrip("/"), data=body, headers=headers, timeout=600)
            return r.status_code, r.content
    else:
        app = _app()
        with app.app_context():
            token = app.extensions["lbp"].auth.tokens.mint("lbp-cli (local operator)", "system/*.cruds", 3600)
        headers["Authorization"] = f"Bearer {token}"
        client = app.test_client()

        def post(body: bytes):
            r = client.post("/fhir", data=body, headers=headers)
            return r.status_code, r.data

    for bundle in bundles:
        status, content = post(orjson.dumps(bundle))
        errors = _batch_errors(content) if status < 300 else [f"HTTP {status}: {_outcome_text(content)}"]
        if errors:
            for e in errors:
                print(f"failed: {e}", file=sys.stderr)
            return 1
    print(f"loaded {len(resources)} resources: {args.patients} patients, variant {args.variant}, seed {args.seed}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lbp", description="Low back pain pathway FHIR server")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="load the artifact folders and start the server (gunicorn)")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("load", help="load Bundles or resources (files, folders, .json.bz2)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--url", help="FHIR base of a running server (default: write to the database directly "
                                 "through the same code path)")
    p.add_argument("--token", default=os.environ.get("LBP_TOKEN"), help="access token for --url (or LBP_TOKEN)")
    p.add_argument("--no-validate", action="store_true", help="skip validation (bulk loads of trusted data)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("client", help="register local system clients (SMART Backend Services)")
    csub = p.add_subparsers(dest="client_command", required=True)
    key_dir = str(ROOT / "var" / "keys")
    c = csub.add_parser("add", help="generate a key pair, register the public key, print how to get a token")
    c.add_argument("client_id")
    c.add_argument("--scope", default="system/*.cruds")
    c.add_argument("--alg", choices=["ES384", "RS384"], default="ES384")
    c.add_argument("--key-dir", default=key_dir)
    c.set_defaults(func=cmd_client_add)
    c = csub.add_parser("assertion", help="print a signed client assertion (JWT, 4 minutes) for the token endpoint")
    c.add_argument("client_id")
    c.add_argument("--base", default=f"http://127.0.0.1:{os.environ.get('PORT', '8080')}")
    c.add_argument("--key-dir", default=key_dir)
    c.set_defaults(func=cmd_client_assertion)

    p = sub.add_parser("link", help="patient questionnaire links")
    lsub = p.add_subparsers(dest="link_command", required=True)
    c = lsub.add_parser("revoke", help="revoke one link (--link-id) or every link minted for a CDS issuer (--issuer)")
    c.add_argument("--link-id", help="the link's id (the jti in its token; the agent's patient-link:<id>)")
    c.add_argument("--issuer", help="a CDS client's JWT iss: every link minted for its calls so far")
    c.set_defaults(func=cmd_link_revoke)

    p = sub.add_parser("validate", help="validate resource files; exit status 1 on errors")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("export", help="a Bundle of the stored knowledge artifacts")
    p.add_argument("--variant", choices=sorted(VARIANT_PATHWAYS))
    p.add_argument("-o", "--output")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="the indicators of a variant: a table and an HTML page with monthly plots")
    p.add_argument("--variant", required=True)
    p.add_argument("--period", required=True, help="START/END, e.g. 2026-01-01/2026-12-31")
    p.add_argument("-o", "--output", help="HTML file (default report-<variant>-<start>-<end>.html)")
    p.add_argument("--lang", default="en", choices=["en", "sv", "da"], help="language of the indicator titles")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="a deterministic demo cohort of pathway patients")
    p.add_argument("--variant", required=True, choices=["se", "skane", "midtjylland"])
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--year", type=int, default=2026, help="the year the new visits fall in")
    p.add_argument("-o", "--output", help="write a transaction Bundle to this file instead of loading it")
    p.add_argument("--url", help="FHIR base of a running server (default: the local database)")
    p.add_argument("--token", default=os.environ.get("LBP_TOKEN"), help="access token for --url (or LBP_TOKEN)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("conformance", help="validate every official R4 example")
    p.add_argument("package", nargs="?", default=str(ROOT.parent / "shared" / "data" /
                                                      "hl7.fhir.r4.examples-4.0.1.tgz"))
    p.set_defaults(func=cmd_conformance)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
