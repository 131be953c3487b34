"""The conformance run over a package of examples (here a small one made by the test)."""
from __future__ import annotations

from app.validation import conformance

from .conftest import load, make_package


def _package(tmp_path):
    broken = load("observation")
    broken["status"] = "done"
    return make_package(tmp_path, {
        "package.json": {"name": "example", "version": "0.0.1"},
        ".index.json": {"index-version": 1, "files": []},
        "Patient-lbp-patient-1.json": load("patient"),
        "Observation-broken.json": broken,
        "Bundle-transaction.json": load("transaction"),
        "other/ignored.json": {"not": "a resource"},
    })


def test_run_counts_every_resource_and_its_failures(tmp_path):
    report = conformance.run(str(_package(tmp_path)))
    assert (report["total"], report["passed"], report["failed"]) == (3, 2, 1)
    assert report["failures_by_type"] == {"Observation": 1}
    assert report["examples"] == [{"file": "Observation-broken.json", "issues": [
        {"code": "code-invalid", "expression": ["Observation.status"],
         "text": report["examples"][0]["issues"][0]["text"]}]}]


def test_main_prints_a_summary_and_fails_when_an_example_fails(tmp_path, capsys):
    assert conformance.main([str(_package(tmp_path)), "--level", "write"]) == 1
    out = capsys.readouterr().out
    assert "2 of 3 official R4 examples valid" in out
    assert "Observation-broken.json" in out


def test_main_succeeds_when_all_examples_pass(tmp_path, capsys):
    package = make_package(tmp_path, {"package.json": {}, "Patient-a.json": load("patient")})
    assert conformance.main([str(package)]) == 0
    assert "1 of 1" in capsys.readouterr().out
