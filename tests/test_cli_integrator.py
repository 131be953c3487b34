"""The integrator's command line against a running server: client add / token, the CDS client (trust a test issuer,
call a hook, see the cards), load with an expired or renewed token, one-line errors, help on every option."""
from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from app.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PATIENTS = ROOT / "tests" / "data" / "patients"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The application with its artifacts on a real HTTP port; the CLI finds its files through LBP_* variables."""
    from app import create_app

    tmp = tmp_path_factory.mktemp("cli")
    env = {"LBP_CLIENTS_FILE": str(tmp / "clients.json"), "LBP_CDS_TRUSTED_ISSUERS_FILE": str(tmp / "issuers.json"),
           "DATABASE_URL": f"sqlite:///{tmp / 'cli.db'}"}
    saved = {k: os.environ.get(k) for k in [*env, "PORT"]}
    os.environ.update(env)
    app = create_app({"TESTING": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    # the audience of client and CDS JWTs is the configured public URL, never the Host header (docs/security.md)
    app.config["PUBLIC_BASE_URL"] = base
    app.config["CDS_ALLOW_LOCAL_FHIR_SERVER"] = True  # the FHIR server the hooks fetch from is this local one
    os.environ.pop("PORT", None)
    yield {"base": base, "app": app, "keys": str(tmp / "keys"), "tmp": tmp}
    server.shutdown()
    server.server_close()
    app.extensions["lbp"].store.dispose()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_client_add_prints_a_recipe_for_the_given_port_and_scope_and_refuses_to_replace(served, capsys):
    base, keys = served["base"], served["keys"]
    scope = "system/Patient.rs system/Observation.rs"
    code, out, _ = _run(["client", "add", "reader", "--scope", scope, "--base", base, "--key-dir", keys], capsys)
    assert code == 0
    assert f"lbp token reader --base {base}" in out and f"scope='{scope}'" in out
    assert f"curl -s {base}/auth/token" in out
    kid = (Path(keys) / "reader.kid").read_text()
    code, _, err = _run(["client", "add", "reader", "--key-dir", keys], capsys)
    assert code == 1 and "already exists" in err and "--rotate" in err and len(err.strip().splitlines()) == 1
    assert (Path(keys) / "reader.kid").read_text() == kid  # untouched
    code, out, _ = _run(["client", "add", "reader", "--scope", scope, "--rotate", "--key-dir", keys,
                         "--base", base], capsys)
    assert code == 0 and "rotated" in out and (Path(keys) / "reader.kid").read_text() != kid


def test_token_prints_a_working_access_token(served, capsys):
    base, keys = served["base"], served["keys"]
    _run(["client", "add", "loader", "--key-dir", keys, "--base", base], capsys)
    code, out, _ = _run(["token", "loader", "--base", base, "--key-dir", keys, "--scope", "system/Patient.rs"], capsys)
    assert code == 0
    token = out.strip()
    r = requests.get(f"{base}/fhir/Patient", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200
    code, _, err = _run(["token", "nobody", "--base", base, "--key-dir", keys], capsys)
    assert code == 1 and "lbp client add nobody" in err


def test_first_hook_call_is_one_command_after_trusting_the_test_issuer(served, capsys):
    base, keys = served["base"], served["keys"]
    code, _, err = _run(["load", "--url", f"{base}/fhir", "--client", "loader", "--key-dir", keys, str(PATIENTS)],
                        capsys)
    assert code == 0, err
    code, out, err = _run(["cds", "call", "patient-view", "--patient", "red-flag", "--base", base,
                           "--key-dir", keys], capsys)
    assert code == 1 and "lbp cds trust-test-issuer" in err  # no test issuer yet: says how to make one
    code, out, err = _run(["cds", "call", "patient-view", "--patient", "red-flag", "--base", base,
                           "--key-dir", keys, "--iss", "loader"], capsys)  # a key the server does not trust
    assert code == 1 and "refused the call (401)" in err and "trust-test-issuer" in err
    code, out, _ = _run(["cds", "trust-test-issuer", "--key-dir", keys], capsys)
    assert code == 0 and "no restart needed" in out
    code, out, err = _run(["cds", "call", "patient-view", "--patient", "red-flag", "--base", base,
                           "--key-dir", keys, "--variant", "se"], capsys)
    assert code == 0, err
    assert "lbp-patient-view-se:" in out and "(rule RF4)" in out and "[warning]" in out
    # the same cards when the service fetches the record from fhirServer itself
    code, fetched, err = _run(["cds", "call", "patient-view", "--patient", "red-flag", "--base", base,
                               "--key-dir", keys, "--variant", "se", "--no-prefetch"], capsys)
    assert code == 0, err
    assert fetched == out
    code, _, err = _run(["cds", "call", "patient-view", "--patient", "nobody", "--base", base, "--key-dir", keys,
                         "--variant", "se"], capsys)
    assert code == 1 and "Patient/nobody: not found" in err and len(err.strip().splitlines()) == 1
    code, out, err = _run(["cds", "call", "order-sign", "--patient", "red-flag", "--order", "loinc|24968-0",
                           "--base", base, "--key-dir", keys, "--variant", "se", "--json"], capsys)
    assert code == 0, err
    assert isinstance(json.loads(out)["cards"], list)


def test_load_stops_on_a_refused_token_and_says_what_to_do(served, capsys, tmp_path):
    base = served["base"]
    with served["app"].app_context():
        expired = served["app"].extensions["lbp"].auth.tokens.mint("loader", "system/*.cruds", -60)
    code, out, err = _run(["load", "--url", f"{base}/fhir", "--token", expired, str(PATIENTS)], capsys)
    assert code == 2
    assert "stopped after 0 of 5 files" in err and "--client" in err and expired not in err
    assert err.count("failed:") == 0  # not one failure per remaining file


def test_progress_in_a_log_has_no_carriage_returns_and_gives_rate_and_eta(served, capsys):
    base, keys = served["base"], served["keys"]
    code, out, err = _run(["load", "--url", f"{base}/fhir", "--client", "loader", "--key-dir", keys,
                           str(PATIENTS)], capsys)
    assert code == 0
    assert "\r" not in err
    assert "5/5 files" in err and "/s" in err and "ETA" in err and "resources" in err


def test_server_down_is_one_line(capsys):
    code, _, err = _run(["load", "--url", "http://127.0.0.1:9/fhir", "--token", "x", str(PATIENTS)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Is the server running" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(requests.ConnectionError):
        main(["--debug", "load", "--url", "http://127.0.0.1:9/fhir", "--token", "x", str(PATIENTS)])


def test_conformance_without_the_package_is_one_line(capsys, tmp_path):
    code, _, err = _run(["conformance", str(tmp_path / "missing.tgz")], capsys)
    assert code == 1 and "no such file" in err and "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("lbp ")


def test_every_option_has_help():
    missing = []

    def walk(parser: argparse.ArgumentParser, where: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{where} {name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "lbp")
    assert missing == []
