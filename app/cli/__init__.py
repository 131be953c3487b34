"""Command-line tool: serve, load, token, client, cds, validate, export, report, demo, conformance.

Errors are one line (the cause and what to do); `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import bz2
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    _remember_base(base)
    print(f"FHIR server: {base}{app.config['FHIR_BASE_PATH']}  (database: {db.split('@')[-1]})", flush=True)
    if app.extensions["lbp"].auth.disabled:
        print("WARNING: authentication is DISABLED (LBP_AUTH_DISABLED=true)", flush=True)
    else:
        print("Patient data needs an access token. Register a local client and get one:\n"
              "  .venv/bin/lbp client add demo\n"
              "  .venv/bin/lbp token demo", flush=True)
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

class CLIError(Exception):
    """A failure the user can act on: printed as one line, exit status `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


BASE_FILE = ROOT / "var" / "server-base"


def _remember_base(base: str) -> None:
    """Where `lbp serve` listens, so that printed recipes and `lbp token` name the running port."""
    try:
        BASE_FILE.parent.mkdir(parents=True, exist_ok=True)
        BASE_FILE.write_text(base + "\n")
    except OSError:
        pass


def default_base() -> str:
    """The running server's base: PORT if set, else what `lbp serve` last recorded, else port 8080."""
    if os.environ.get("PORT"):
        return f"http://127.0.0.1:{os.environ['PORT']}"
    try:
        recorded = BASE_FILE.read_text().strip()
    except OSError:
        recorded = ""
    return recorded or "http://127.0.0.1:8080"


def _curl_line(client_id: str, base: str, scope: str) -> str:
    return (f"curl -s {base}/auth/token -d grant_type=client_credentials -d scope='{scope}' "
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
    from app.auth.clients import ClientRegistry
    from app.auth.local import register_client

    app_config = _config_only()
    exists = ClientRegistry(app_config["CLIENTS_FILE"]).get(args.client_id) is not None or \
        (Path(args.key_dir) / f"{args.client_id}.pem").exists()
    if exists and not args.rotate:
        raise CLIError(f"client '{args.client_id}' already exists; replacing its key breaks whatever trusts the "
                       f"old one. Use --rotate to replace it, or choose another name")
    try:
        pem = register_client(app_config["CLIENTS_FILE"], args.client_id, args.scope, args.key_dir, args.alg)
    except ValueError as exc:
        raise CLIError(f"client not registered: {exc}") from None
    base = args.base or default_base()
    action = "rotated the key of" if exists else "registered"
    print(f"{action} client '{args.client_id}' (scopes: {args.scope}); private key: {pem}")
    print(f"get an access token for {base} (valid 5 minutes):")
    print(f"  .venv/bin/lbp token {args.client_id} --base {base}")
    print("or with curl:")
    print(f"  {_curl_line(args.client_id, base, args.scope)}")
    return 0


def fetch_token(client_id: str, key_dir: str | Path, base: str, scope: str | None = None) -> dict:
    """A fresh access token from the server's token endpoint (SMART Backend Services, signed assertion)."""
    import requests

    from app.auth.clients import ClientRegistry
    from app.auth.local import token_request

    pem = Path(key_dir) / f"{client_id}.pem"
    if not pem.exists():
        raise CLIError(f"no key for client '{client_id}' in {key_dir}; register it with: lbp client add {client_id}")
    if scope is None:
        registered = ClientRegistry(_config_only()["CLIENTS_FILE"]).get(client_id)
        scope = registered.scope if registered is not None else "system/*.rs"
    url = base.rstrip("/") + "/auth/token"
    r = requests.post(url, data=token_request(client_id, pem, url, scope), timeout=30)
    if r.status_code != 200:
        try:
            detail = r.json().get("error_description") or r.json().get("error")
        except ValueError:
            detail = r.text[:200]
        raise CLIError(f"the token endpoint {url} refused: HTTP {r.status_code}: {detail}")
    return r.json()


def cmd_token(args: argparse.Namespace) -> int:
    answer = fetch_token(args.client_id, args.key_dir, args.base or default_base(), args.scope)
    print(answer["access_token"])
    if sys.stderr.isatty():
        print(f"(scopes: {answer.get('scope')}; expires in {answer.get('expires_in')} s)", file=sys.stderr)
    return 0


def cmd_client_assertion(args: argparse.Namespace) -> int:
    from app.auth.local import client_assertion

    pem = Path(args.key_dir) / f"{args.client_id}.pem"
    if not pem.exists():
        raise CLIError(f"no key for '{args.client_id}' in {args.key_dir}; register it with: "
                       f"lbp client add {args.client_id}")
    print(client_assertion(args.client_id, pem, (args.base or default_base()).rstrip("/") + "/auth/token"))
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


class Progress:
    """Resources loaded, with rate and ETA: a tqdm bar on a terminal, plain lines (no `\\r`) in a log."""

    LINE_EVERY = 5.0  # seconds between lines when not on a terminal

    def __init__(self, files: int, total: int, quiet: bool):
        self.files, self.total, self.quiet = files, total, quiet
        self.started = time.perf_counter()
        self.last_line = 0.0
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="res", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    def update(self, done_files: int, resources: int, added: int) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{done_files}/{self.files} files")
            self.bar.update(added)
            return
        now = time.perf_counter()
        if done_files < self.files and now - self.last_line < self.LINE_EVERY:
            return
        self.last_line = now
        elapsed = now - self.started
        rate = resources / max(elapsed, 1e-9)
        left = (self.total - resources) / rate if rate > 0 and self.total >= resources else 0.0
        print(f"loaded {done_files}/{self.files} files, {resources:,}/{self.total:,} resources, {rate:,.0f}/s, "
              f"elapsed {elapsed:,.0f} s, ETA {left:,.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _count(path: Path) -> int:
    try:
        return _as_bundle(_read_json(path))[1]
    except (OSError, ValueError):
        return 0


def _local_poster(headers: dict[str, str], **config: Any) -> Any:
    """POST to this machine's database through the application in process. The operator writes with a token of
    its own, so the audit trail names it."""
    app = _app(**config)
    with app.app_context():
        token = app.extensions["lbp"].auth.tokens.mint("lbp-cli (local operator)", "system/*.cruds", 3600)
    headers["Authorization"] = f"Bearer {token}"
    client = app.test_client()

    def post(body: bytes) -> tuple[int, bytes]:
        r = client.post("/fhir", data=body, headers=headers)
        return r.status_code, r.data

    return post


def cmd_load(args: argparse.Namespace) -> int:
    files = _bundle_files(args.paths)
    headers = {"Content-Type": "application/fhir+json"}
    if args.url and args.client and not args.token:
        args.token = _client_token(args)
    if args.url and args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    if args.url:
        import requests

        session = requests.Session()

        def post(body: bytes):
            r = session.post(args.url.rstrip("/"), data=body, headers=headers, timeout=600)
            if r.status_code == 401 and args.client:  # the token ran out mid-load: a fresh one, the file again
                headers["Authorization"] = f"Bearer {_client_token(args)}"
                r = session.post(args.url.rstrip("/"), data=body, headers=headers, timeout=600)
            return r.status_code, r.content
    else:
        config = {"LOAD_ARTIFACTS": False}
        if args.no_validate:
            config["VALIDATE_WRITES"] = False
        post = _local_poster(headers, **config)

    started = time.perf_counter()
    progress = Progress(len(files), 0 if args.quiet else sum(_count(p) for p in files), args.quiet)
    resources = 0
    failures: list[str] = []
    stopped = None
    for i, path in enumerate(files, 1):
        try:
            body, n = _as_bundle(_read_json(path))
        except (OSError, ValueError) as exc:
            failures.append(f"{path.name}: cannot read ({exc})")
            continue
        status, content = post(body)
        added = 0
        if status in (401, 403) and args.url:
            # every further file would fail the same way: stop here and say how to go on
            stopped = (f"stopped after {i - 1} of {len(files)} files: the server refused the access token "
                       f"(HTTP {status}: {_outcome_text(content)}). Get a new one with `lbp token CLIENT`, or let "
                       "the load renew it: --client CLIENT")
            break
        if status >= 300:
            failures.append(f"{path.name}: HTTP {status}: {_outcome_text(content)}")
        else:
            errors = _batch_errors(content)
            failures.extend(f"{path.name}: {e}" for e in errors)
            added = n - len(errors)
            resources += added
        progress.update(i, resources, added)
    progress.close()
    elapsed = time.perf_counter() - started
    for f in failures:
        print(f"failed: {f}", file=sys.stderr)
    if stopped:
        print(f"resources: {resources}  seconds: {elapsed:.1f}  failures: {len(failures)}")
        raise CLIError(stopped, code=2)
    print(f"resources: {resources}  seconds: {elapsed:.1f}  resources/s: {resources / max(elapsed, 1e-9):,.0f}  "
          f"failures: {len(failures)}")
    return 1 if failures else 0


def _client_token(args: argparse.Namespace) -> str:
    base = args.url.rstrip("/").rsplit("/fhir", 1)[0]
    return str(fetch_token(args.client, args.key_dir, base)["access_token"])


def _outcome_text(content: bytes) -> str:
    try:
        oo = orjson.loads(content)
        issue = oo["issue"][0]
        return f"{issue['details']['text']} at {', '.join(issue.get('expression', []))}"
    except (ValueError, KeyError, IndexError, TypeError):
        text = content[:200].decode(errors="replace")
        return "(an HTML page: is the URL the FHIR base, ending in /fhir?)" if text.lstrip().startswith("<") else text


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


WARNING_EXAMPLES = 3  # locations shown per kind of warning, unless --all-warnings


def _warning_kind(message: str) -> str:
    """A warning's message without what varies between its occurrences (quoted values, numbers), to group by."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|(?<![\w-])\d+(\.\d+)?\b", "…", message)


def cmd_validate(args: argparse.Namespace) -> int:
    """Errors in full, one line each; warnings grouped by kind with a count and the first few locations."""
    from app.validation import register_extension_definitions, validate_resource

    files: list[Path] = []
    for p in map(Path, args.paths):
        files.extend(sorted(p.rglob("*.json")) if p.is_dir() else [p])
    errors = 0
    warnings: dict[str, list[str]] = {}
    resources = []
    for path in files:
        try:
            items = list(_resources_in(path))
        except (OSError, ValueError) as exc:
            print(f"{path}: error: not readable JSON ({exc})")
            errors += 1
            continue
        resources.extend(items)
    # the extension definitions among the files first: the other files' extensions are checked against them
    register_extension_definitions(r for _, r in resources)

    def report(severity: str, name: str, where: str, message: str) -> None:
        nonlocal errors
        if severity in ("error", "fatal"):
            print(f"{name}: {severity}: {where}: {message}")
            errors += 1
        elif severity == "warning":
            warnings.setdefault(message if args.all_warnings else _warning_kind(message), []).append(
                f"{name}: {where}" + (f": {message}" if not args.all_warnings else ""))

    for name, resource in resources:
        for issue in validate_resource(resource, check_rules=True):
            report(issue.severity, name, ", ".join(issue.expression) or resource.get("resourceType", "?"), issue.text)
    from app.knowledge.check import check_artifacts

    for finding in check_artifacts([r for _, r in resources]):  # the static analysis of every FHIRPath
        report(finding.severity, finding.artifact, finding.element, f"{finding.message}: {finding.expression}")
    total = sum(len(v) for v in warnings.values())
    for kind, places in sorted(warnings.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if args.all_warnings:
            for place in places:
                print(f"{place}: warning: {kind}")
            continue
        print(f"warning ({len(places)}x): {kind}")
        for place in places[:WARNING_EXAMPLES]:
            print(f"    {place}")
        if len(places) > WARNING_EXAMPLES:
            print(f"    … {len(places) - WARNING_EXAMPLES} more (--all-warnings lists every one)")
    print(f"{len(files)} files, {errors} errors, {total} warnings")
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

    if not Path(args.package).exists():
        raise CLIError(f"{args.package}: no such file; give the path of hl7.fhir.r4.examples-4.0.1.tgz "
                       "(the official R4 examples package)")
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
        post = _local_poster(headers)

    for bundle in bundles:
        status, content = post(orjson.dumps(bundle))
        errors = _batch_errors(content) if status < 300 else [f"HTTP {status}: {_outcome_text(content)}"]
        if errors:
            for e in errors:
                print(f"failed: {e}", file=sys.stderr)
            return 1
    print(f"loaded {len(resources)} resources: {args.patients} patients, variant {args.variant}, seed {args.seed}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lbp-pathway")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from app.cli import cds as cli_cds

    parser = argparse.ArgumentParser(prog="lbp", description="Low back pain pathway FHIR server")
    parser.add_argument("--version", action="version", version=f"lbp {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    key_dir = str(ROOT / "var" / "keys")

    p = sub.add_parser("serve", help="load the artifact folders and start the server (gunicorn)")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                   help="address to listen on (default: HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")),
                   help="port to listen on (default: PORT or 8080)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("load", help="load Bundles or resources (files, folders, .json.bz2)")
    p.add_argument("paths", nargs="+", help="files or folders of FHIR JSON (Bundles or single resources)")
    p.add_argument("--url", help="FHIR base of a running server, e.g. http://127.0.0.1:8080/fhir (default: write "
                                 "to the database directly through the same code path)")
    p.add_argument("--token", default=os.environ.get("LBP_TOKEN"), help="access token for --url (or LBP_TOKEN)")
    p.add_argument("--client", help="registered client to get (and renew) the access token with, for --url")
    p.add_argument("--key-dir", default=key_dir, help="folder of the clients' private keys")
    p.add_argument("--no-validate", action="store_true", help="skip validation (bulk loads of trusted data)")
    p.add_argument("--quiet", action="store_true", help="no progress output, only the summary")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("token", help="print a fresh access token for a registered client")
    p.add_argument("client_id", metavar="CLIENT", help="the client registered with `lbp client add`")
    p.add_argument("--scope", help="scopes to ask for (default: all the client is registered for)")
    p.add_argument("--base", help="server base URL (default: the running server's, as `lbp serve` recorded it)")
    p.add_argument("--key-dir", default=key_dir, help="folder of the clients' private keys")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("client", help="register local system clients (SMART Backend Services)")
    csub = p.add_subparsers(dest="client_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("add", help="generate a key pair, register the public key, print how to get a token")
    c.add_argument("client_id", metavar="CLIENT", help="a name for the client")
    c.add_argument("--scope", default="system/*.cruds", help="scopes the client may ask for (default: %(default)s)")
    c.add_argument("--alg", choices=["ES384", "RS384"], default="ES384", help="signing algorithm of the key")
    c.add_argument("--key-dir", default=key_dir, help="folder for the private key (mode 600)")
    c.add_argument("--rotate", action="store_true", help="replace the key of an existing client")
    c.add_argument("--base", help="server base URL for the printed recipe (default: the running server's)")
    c.set_defaults(func=cmd_client_add)
    c = csub.add_parser("assertion", help="print a signed client assertion (JWT, 4 minutes) for the token endpoint")
    c.add_argument("client_id", metavar="CLIENT", help="the registered client")
    c.add_argument("--base", help="server base URL (the assertion's audience is its /auth/token)")
    c.add_argument("--key-dir", default=key_dir, help="folder of the clients' private keys")
    c.set_defaults(func=cmd_client_assertion)

    p = sub.add_parser("link", help="patient questionnaire links")
    lsub = p.add_subparsers(dest="link_command", required=True)
    c = lsub.add_parser("revoke", help="revoke one link (--link-id) or every link minted for a CDS issuer (--issuer)")
    c.add_argument("--link-id", help="the link's id (the jti in its token; the agent's patient-link:<id>)")
    c.add_argument("--issuer", help="a CDS client's JWT iss: every link minted for its calls so far")
    c.set_defaults(func=cmd_link_revoke)

    cli_cds.add_commands(sub, key_dir)

    p = sub.add_parser("validate", help="validate resource files; exit status 1 on errors")
    p.add_argument("paths", nargs="+", help="files or folders of FHIR JSON")
    p.add_argument("--all-warnings", action="store_true", help="list every warning, not a few per kind")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("export", help="a Bundle of the stored knowledge artifacts")
    p.add_argument("--variant", choices=sorted(VARIANT_PATHWAYS), help="only this variant's artifacts")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="the indicators of a variant: a table and an HTML page with monthly plots")
    p.add_argument("--variant", required=True, help="the variant whose indicators to compute")
    p.add_argument("--period", required=True, help="START/END, e.g. 2026-01-01/2026-12-31")
    p.add_argument("-o", "--output", help="HTML file (default report-<variant>-<start>-<end>.html)")
    p.add_argument("--lang", default="en", choices=["en", "sv", "da"], help="language of the indicator titles")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="a deterministic demo cohort of pathway patients")
    p.add_argument("--variant", required=True, choices=["se", "skane", "midtjylland"],
                   help="the variant whose pathway the patients follow")
    p.add_argument("--patients", type=int, default=1000, help="how many patients (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same cohort")
    p.add_argument("--year", type=int, default=2026, help="the year the new visits fall in")
    p.add_argument("-o", "--output", help="write a transaction Bundle to this file instead of loading it")
    p.add_argument("--url", help="FHIR base of a running server (default: the local database)")
    p.add_argument("--token", default=os.environ.get("LBP_TOKEN"), help="access token for --url (or LBP_TOKEN)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("conformance", help="validate every official R4 example")
    p.add_argument("package", nargs="?", default=str(ROOT.parent / "shared" / "data" /
                                                      "hl7.fhir.r4.examples-4.0.1.tgz"),
                   help="path of hl7.fhir.r4.examples-4.0.1.tgz")
    p.set_defaults(func=cmd_conformance)
    return parser


def _one_line(exc: BaseException, args: argparse.Namespace) -> str:
    """The cause of a failure, and what to do, in one line."""
    import requests

    if isinstance(exc, CLIError):
        return str(exc)
    if isinstance(exc, requests.ConnectionError):
        target = exc.request.url if exc.request is not None else "the server"
        cause = "the name does not resolve" if "NameResolution" in str(exc) or "Name or service" in str(exc) \
            else "connection refused"
        return f"cannot reach {target}: {cause}. Is the server running (make run), and is the URL right?"
    if isinstance(exc, requests.Timeout):
        return "the server did not answer in time; try again, or check its log"
    if isinstance(exc, requests.RequestException):
        return f"HTTP request failed: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: no such file or directory"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    return f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("lbp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"lbp {args.command}: {_one_line(exc, args)}", file=sys.stderr)
        return exc.code if isinstance(exc, CLIError) else 1


if __name__ == "__main__":
    raise SystemExit(main())
