"""Conformance run: validate every resource of the official R4 examples package; all should pass.

Usage: python -m app.validation.conformance [PATH_TO_TGZ] [--level write|full] [--show N]

Every `package/*.json` file but `package.json` and `.index.json` is a resource and is validated with
all layers (level `full`) unless told otherwise. A resource passes when it has no error issue.
"""
from __future__ import annotations

import argparse
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from . import VALIDATION_LEVELS, validate_resource

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DEFAULT_TGZ = SHARED_DATA / "hl7.fhir.r4.examples-4.0.1.tgz"
NOT_RESOURCES = frozenset({"package.json", ".index.json"})


def example_files(tgz_path: str | Path):
    """(file name, parsed JSON) for every resource file of the package."""
    with tarfile.open(tgz_path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 2 or parts[0] != "package":
                continue
            name = parts[1]
            if not name.endswith(".json") or name in NOT_RESOURCES:
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                yield name, orjson.loads(handle.read())


def run(tgz_path: str, level: str = "full", max_examples: int = 50) -> dict[str, Any]:
    """Validate every example; counts, per-type failures and up to `max_examples` failures."""
    flags = VALIDATION_LEVELS[level] or {"check_model": False, "check_schema": False, "check_rules": False}
    total = passed = 0
    failures_by_type: Counter[str] = Counter()
    issues_by_code: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name, resource in example_files(tgz_path):
        total += 1
        issues = validate_resource(resource, check_model=flags["check_model"],
                                   check_schema=flags["check_schema"], check_rules=flags["check_rules"])
        errors = [i for i in issues if i.is_error]
        if not errors:
            passed += 1
            continue
        resource_type = resource.get("resourceType", "?") if isinstance(resource, dict) else "?"
        failures_by_type[resource_type] += 1
        issues_by_code.update(i.code for i in errors)
        if len(examples) < max_examples:
            examples.append({
                "file": name,
                "issues": [{"code": i.code, "expression": i.expression, "text": i.text} for i in errors[:5]],
            })
    return {
        "total": total,
        "passed": passed,
        "failed": total - passed,
        "level": level,
        "seconds": round(time.perf_counter() - started, 1),
        "failures_by_type": dict(failures_by_type.most_common()),
        "issues_by_code": dict(issues_by_code.most_common()),
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.validation.conformance", description=__doc__)
    parser.add_argument("tgz", nargs="?", default=str(DEFAULT_TGZ))
    parser.add_argument("--level", choices=["write", "full"], default="full")
    parser.add_argument("--show", type=int, default=20, help="failures to print")
    args = parser.parse_args(argv)
    report = run(args.tgz, args.level, max_examples=args.show)
    print(f"{report['passed']} of {report['total']} official R4 examples valid "
          f"(level {report['level']}, {report['seconds']} s)")
    if report["failed"]:
        print("failures by type:", report["failures_by_type"])
        print("error issues by code:", report["issues_by_code"])
        for example in report["examples"]:
            print(f"  {example['file']}")
            for issue in example["issues"]:
                print(f"    {issue['code']} {issue['expression']} {issue['text']}")
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
