"""The command-line tool: load, validate, export."""
from __future__ import annotations

import bz2
import json

import pytest

from app.cli import main


@pytest.fixture
def env_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("LBP_LOAD_ARTIFACTS", "false")
    return url


def _tx(n: int, prefix: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{prefix}-{i}", "resource": {"resourceType": "Patient", "gender": "female"},
         "request": {"method": "POST", "url": "Patient"}} for i in range(n)]}


def test_load_files_folders_and_bz2_prints_summary(env_db, tmp_path, capsys):
    folder = tmp_path / "bundles"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(_tx(3, "a")))
    (folder / "b.json.bz2").write_bytes(bz2.compress(json.dumps(_tx(2, "b")).encode()))
    single = tmp_path / "Patient-x.json"
    single.write_text(json.dumps({"resourceType": "Patient", "id": "x"}))
    assert main(["load", str(folder), str(single)]) == 0
    out = capsys.readouterr()
    assert "resources: 6" in out.out and "failures: 0" in out.out and "resources/s" in out.out
    assert "3/3 files" in out.err  # the progress bar


def test_load_reports_failures_with_nonzero_exit(env_db, tmp_path, capsys):
    bad = _tx(1, "c")
    bad["entry"][0]["resource"]["gender"] = "sometimes"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["load", "--quiet", str(tmp_path / "bad.json")]) == 1
    out = capsys.readouterr()
    assert "failures: 1" in out.out and "bad.json: HTTP 400" in out.err


def test_validate_is_lint_like_and_exits_1_on_errors(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"resourceType": "Patient", "birthDate": "1970-01-01"}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceType": "Patient", "birthDate": "1 Jan 1970"}))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: error: Patient.birthDate" in out
    assert "2 files, 1 errors" in out.replace("errors,", "errors")


def test_export_writes_a_transaction_bundle_of_artifacts(env_db, tmp_path, capsys):
    cs = {"resourceType": "CodeSystem", "id": "demo", "url": "https://example.org/CodeSystem/demo",
          "status": "active", "content": "complete", "concept": [{"code": "a"}]}
    (tmp_path / "CodeSystem-demo.json").write_text(json.dumps(cs))
    assert main(["load", "--quiet", str(tmp_path / "CodeSystem-demo.json")]) == 0
    out_file = tmp_path / "export.json"
    assert main(["export", "-o", str(out_file)]) == 0
    bundle = json.loads(out_file.read_text())
    assert bundle["type"] == "transaction"
    assert [e["request"]["url"] for e in bundle["entry"]] == ["CodeSystem/demo"]
