"""`lbp cds`: a command-line CDS Hooks client, so that the first hook call is one command.

`lbp cds trust-test-issuer` makes a local test issuer: an ES384 key (also registered as a SMART client, whose
tokens go in `fhirAuthorization`) and its public JWK in the trusted-issuers file, which the server re-reads
without a restart. `lbp cds call HOOK --patient ID` signs the call's JWT the way CDS Hooks 2.0 asks (ES384,
`kid` naming the issuer's configured key, `aud` the URL called, `exp` within five minutes, a fresh `jti`),
sends the service's prefetch templates fetched from this server's FHIR API (as an EHR does; `--no-prefetch`
lets the service fetch them from `fhirServer` itself), and prints the cards.
"""
from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

TEST_ISSUER = "lbp-test-issuer"
SYSTEMS = {"loinc": "http://loinc.org", "snomed": "http://snomed.info/sct", "atc": "http://www.whocc.no/atc",
           "icd10": "http://hl7.org/fhir/sid/icd-10"}
HOOKS = ("patient-view", "order-select", "order-sign")


def add_commands(sub: Any, key_dir: str) -> None:
    p = sub.add_parser("cds", help="CDS Hooks client: trust a local test issuer, call a hook and print the cards")
    csub = p.add_subparsers(dest="cds_command", required=True, metavar="SUBCOMMAND")

    t = csub.add_parser("trust-test-issuer", help="create a test issuer key and trust it (no restart needed)")
    t.add_argument("--iss", default=TEST_ISSUER, help="the issuer name (JWT iss; also its SMART client id)")
    t.add_argument("--variant", help="the variant this issuer's generic calls get (default: the server's)")
    t.add_argument("--scope", default="system/*.rs",
                   help="FHIR scopes of the issuer's SMART client, used for fhirAuthorization (default: %(default)s)")
    t.add_argument("--issuers-file", help="trusted-issuers file (default: the server's LBP_CDS_TRUSTED_ISSUERS_FILE)")
    t.add_argument("--key-dir", default=key_dir, help="folder of the private keys")
    t.set_defaults(func=cmd_trust_test_issuer)

    c = csub.add_parser("call", help="call a hook for a patient and print the cards")
    c.add_argument("hook", choices=HOOKS, help="the hook to call")
    c.add_argument("--patient", required=True, help="the patient's id on this server")
    c.add_argument("--order", action="append", default=[], metavar="[MedicationRequest:]SYSTEM|CODE",
                   help="a draft order (repeatable), e.g. loinc|24968-0 (lumbar MRI) or atc|N02AA01; SYSTEM is "
                        "a URL or one of " + ", ".join(SYSTEMS))
    c.add_argument("--variant", help="call the variant's service (lbp-HOOK-VARIANT) instead of the generic one")
    c.add_argument("--iss", default=TEST_ISSUER, help="the issuer to sign as (its key in --key-dir)")
    c.add_argument("--base", help="server base URL (default: the running server's)")
    c.add_argument("--key-dir", default=key_dir, help="folder of the private keys")
    c.add_argument("--json", action="store_true", help="print the response JSON instead of a summary")
    c.add_argument("--no-prefetch", action="store_true",
                   help="send no prefetch: the service fetches everything from fhirServer itself")
    c.set_defaults(func=cmd_call)


def _key(key_dir: str, name: str) -> tuple[Any, str, str]:
    from cryptography.hazmat.primitives import serialization

    from app.cli import CLIError

    pem = Path(key_dir) / f"{name}.pem"
    kid_file = pem.with_suffix(".kid")
    if not pem.exists() or not kid_file.exists():
        raise CLIError(f"no key for issuer '{name}' in {key_dir}; create one with: lbp cds trust-test-issuer")
    kid, alg = kid_file.read_text().split()
    return serialization.load_pem_private_key(pem.read_bytes(), password=None), kid, alg


def cmd_trust_test_issuer(args: argparse.Namespace) -> int:
    from app.auth.clients import ClientRegistry
    from app.auth.local import public_jwk, register_client
    from app.cli import _config_only

    config = _config_only()
    path = Path(args.issuers_file or config.get("CDS_TRUSTED_ISSUERS_FILE") or "var/cds-issuers.json")
    if ClientRegistry(config["CLIENTS_FILE"]).get(args.iss) is None or not (Path(args.key_dir) /
                                                                           f"{args.iss}.pem").exists():
        register_client(config["CLIENTS_FILE"], args.iss, args.scope, args.key_dir, "ES384")
    key, kid, alg = _key(args.key_dir, args.iss)
    entry: dict[str, Any] = {"iss": args.iss, "jwks": {"keys": [public_jwk(key, alg, kid)]}}
    if args.variant:
        entry["variant"] = args.variant
    existing: list[dict[str, Any]] = []
    if path.exists():
        raw = json.loads(path.read_text(encoding="utf-8"))
        existing = raw.get("issuers", []) if isinstance(raw, dict) else raw
    issuers = [e for e in existing if e.get("iss") != args.iss] + [entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"issuers": issuers}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # one rename: the server never reads a half-written file
    print(f"trusted CDS issuer '{args.iss}' (ES384, kid {kid}) in {path}; the server re-reads it, no restart needed")
    print(f"call a hook: .venv/bin/lbp cds call patient-view --patient PATIENT_ID --iss {args.iss}")
    return 0


def _order(spec: str, patient: str, n: int) -> dict[str, Any]:
    from app.cli import CLIError

    kind, _, rest = spec.partition(":") if spec.split(":", 1)[0] in ("MedicationRequest", "ServiceRequest") \
        else ("", "", spec)
    system, sep, code = rest.rpartition("|")
    if not sep or not code:
        raise CLIError(f"--order {spec!r}: give SYSTEM|CODE, e.g. loinc|24968-0")
    system = SYSTEMS.get(system.lower(), system)
    kind = kind or ("MedicationRequest" if system == SYSTEMS["atc"] else "ServiceRequest")
    order: dict[str, Any] = {"resourceType": kind, "id": f"draft-{n}", "status": "draft", "intent": "order",
                             "subject": {"reference": f"Patient/{patient}"}}
    concept = {"coding": [{"system": system, "code": code}]}
    order["medicationCodeableConcept" if kind == "MedicationRequest" else "code"] = concept
    return order


def hook_jwt(key: Any, kid: str, alg: str, iss: str, url: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"iss": iss, "sub": iss, "aud": url, "exp": now + 240, "iat": now, "jti": uuid.uuid4().hex},
                      key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def _refused_text(url: str, iss: str, response: Any) -> str:
    reason = ""
    try:
        reason = f" ({response.json().get('error_description')})"
    except ValueError:
        pass
    return (f"{url} refused the call (401){reason}: is issuer '{iss}' trusted? Run `lbp cds trust-test-issuer`; "
            "LBP_CDS_DEBUG_REFUSALS=true makes the server say why")


def _prefetch(base: str, service: str, key: Any, kid: str, alg: str, iss: str, context: dict[str, Any],
              access_token: str) -> dict[str, Any]:
    """The service's prefetch templates (from discovery) fetched by the client, as an EHR or the sandbox does."""
    import re

    import requests

    from app.cli import CLIError

    discovery_url = f"{base}/cds-services"
    r = requests.get(discovery_url, timeout=60,
                     headers={"Authorization": f"Bearer {hook_jwt(key, kid, alg, iss, discovery_url)}"})
    if r.status_code == 401:
        raise CLIError(_refused_text(discovery_url, iss, r))
    if r.status_code != 200:
        raise CLIError(f"{discovery_url}: HTTP {r.status_code}")
    found = next((s for s in r.json().get("services", []) if s.get("id") == service), None)
    if found is None:
        raise CLIError(f"no CDS service '{service}' at {discovery_url}")
    out: dict[str, Any] = {}
    for name, template in (found.get("prefetch") or {}).items():
        query = re.sub(r"\{\{context\.(\w+)\}\}", lambda m: str(context.get(m.group(1), "")), template)
        got = requests.get(f"{base}/fhir/{query}", timeout=60, headers={
            "Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"})
        if got.status_code == 200:
            out[name] = got.json()
        elif got.status_code == 404 and "?" not in query:
            raise CLIError(f"{query}: not found on {base}/fhir")
        # anything else is left out: the service fetches it from fhirServer, or answers 412 saying why
    return out


def cmd_call(args: argparse.Namespace) -> int:
    import requests

    from app.cli import CLIError, default_base, fetch_token

    base = (args.base or default_base()).rstrip("/")
    service = f"lbp-{args.hook}" + (f"-{args.variant}" if args.variant else "")
    url = f"{base}/cds-services/{service}"
    key, kid, alg = _key(args.key_dir, args.iss)
    token = fetch_token(args.iss, args.key_dir, base)
    context: dict[str, Any] = {"userId": "Practitioner/lbp-cli", "patientId": args.patient}
    orders = [_order(spec, args.patient, i) for i, spec in enumerate(args.order, 1)]
    if args.hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": o} for o in orders]}
    if args.hook == "order-select":
        context["selections"] = [f"{o['resourceType']}/{o['id']}" for o in orders]
    body = {"hook": args.hook, "hookInstance": str(uuid.uuid4()), "context": context, "fhirServer": f"{base}/fhir",
            "fhirAuthorization": {"access_token": token["access_token"], "token_type": "Bearer",
                                  "expires_in": token.get("expires_in", 300), "scope": token.get("scope", ""),
                                  "subject": args.iss}}
    if not args.no_prefetch:
        body["prefetch"] = _prefetch(base, service, key, kid, alg, args.iss, context, token["access_token"])
    r = requests.post(url, json=body, timeout=60,
                      headers={"Authorization": f"Bearer {hook_jwt(key, kid, alg, args.iss, url)}"})
    if r.status_code == 401:
        raise CLIError(_refused_text(url, args.iss, r))
    if r.status_code != 200:
        try:
            text = "; ".join(i["details"]["text"] for i in r.json().get("issue", []))
        except (ValueError, KeyError, TypeError):
            text = r.text[:300]
        raise CLIError(f"{url}: HTTP {r.status_code}: {text}")
    answer = r.json()
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    cards = answer.get("cards", [])
    print(f"{service}: {len(cards)} card(s) for Patient/{args.patient}")
    for card in cards:
        topic = ((card.get("source") or {}).get("topic") or {}).get("code")
        print(f"- [{card.get('indicator')}] {card.get('summary')}" + (f"  (rule {topic})" if topic else ""))
        for link in card.get("links", []) or []:
            print(f"    link: {link.get('label')}: {link.get('url')}")
        for suggestion in card.get("suggestions", []) or []:
            print(f"    suggestion: {suggestion.get('label')}")
    return 0
