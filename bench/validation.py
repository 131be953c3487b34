"""Benchmark: validation cost per Synthea resource, by layer, beside the jsonschema package as baseline.

Usage: python bench/validation.py [SYNTHEA_DIR] [--files N] [--baseline N]

Every entry's resource of the first N Synthea transaction Bundles is validated as a transaction
entry (`bundle_type="transaction"`), one core, after a warm-up pass that compiles the types. Prints
milliseconds per resource and resources per second; asserts nothing.
"""
from __future__ import annotations

import argparse
import bz2
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.validation import validate_resource, warm_up  # noqa: E402
from app.validation.compiler import definitions  # noqa: E402
from app.validation.invariants import rule_issues  # noqa: E402
from app.validation.models import model_issues  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea"


def load_resources(directory: Path, files: int) -> list[dict[str, Any]]:
    paths = sorted(p for p in directory.glob("*.json.bz2") if "Information" not in p.name)[:files]
    resources: list[dict[str, Any]] = []
    for path in paths:
        bundle = orjson.loads(bz2.decompress(path.read_bytes()))
        resources.extend(entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry)
    return resources


def per_resource_ms(check: Callable[[dict[str, Any]], Any], resources: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for resource in resources:
        check(resource)
    return (time.perf_counter() - started) * 1000 / len(resources)


def jsonschema_baseline() -> Callable[[dict[str, Any]], Any]:
    from jsonschema import Draft6Validator

    defs = definitions()
    validators: dict[str, Draft6Validator] = {}

    def check(resource: dict[str, Any]) -> list[Any]:
        resource_type = resource["resourceType"]
        validator = validators.get(resource_type)
        if validator is None:
            validator = validators[resource_type] = Draft6Validator(
                {"$ref": f"#/definitions/{resource_type}", "definitions": defs})
        return list(validator.iter_errors(resource))

    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.validation.bench", description=__doc__)
    parser.add_argument("directory", nargs="?", default=str(DEFAULT_DIR))
    parser.add_argument("--files", type=int, default=10, help="patient bundles to read")
    parser.add_argument("--baseline", type=int, default=2000, help="resources for the jsonschema baseline")
    args = parser.parse_args(argv)
    resources = load_resources(Path(args.directory), args.files)
    started = time.perf_counter()
    warm_up(sorted({r["resourceType"] for r in resources}))
    print(f"{len(resources)} resources; schema load and compile of their types: "
          f"{time.perf_counter() - started:.2f} s")

    def layers(check_model: bool, check_schema: bool, check_rules: bool = False) -> Callable[[dict[str, Any]], Any]:
        return lambda r: validate_resource(r, check_model=check_model, check_schema=check_schema,
                                           check_rules=check_rules, bundle_type="transaction")

    started = time.perf_counter()
    for resource in resources[:200]:
        rule_issues(resource, resource["resourceType"])  # compiles the invariants of the types met
    print(f"rule layer: definitions load and invariant compile on first use: {time.perf_counter() - started:.2f} s")
    runs = {
        "own checks only (check_schema=False, check_model=False)": layers(False, False),
        "write: schema + own checks (check_model=False)": layers(False, True),
        "R4B models alone": lambda r: model_issues(r, r["resourceType"]),
        "rule layer alone (invariants, bindings, extensions, ...)": lambda r: rule_issues(r, r["resourceType"]),
        "schema + own checks + R4B models (full before the rules)": layers(True, True),
        "full: schema + own checks + R4B models + rule layer": layers(True, True, True),
    }
    errors = sum(1 for r in resources for i in layers(True, True, True)(r) if i.is_error)
    figures = {name: per_resource_ms(check, resources) for name, check in runs.items()}
    baseline = per_resource_ms(jsonschema_baseline(), resources[: args.baseline])
    for name, ms in figures.items():
        print(f"{name:60s} {ms:7.3f} ms/resource {1000 / ms:9.0f} /s")
    print(f"{'baseline: jsonschema Draft6Validator, same schema':60s} {baseline:7.3f} ms/resource "
          f"{1000 / baseline:9.0f} /s")
    write_ms = figures["write: schema + own checks (check_model=False)"]
    print(f"write level is {baseline / write_ms:.0f}x faster than the baseline; error issues found: {errors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
