"""Regenerate search_parameters.json from the official FHIR R4 package (hl7.fhir.r4.examples or core)."""
from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

OUT = Path(__file__).with_name("search_parameters.json")


def build(tgz_path: str) -> list[dict]:
    params = []
    with tarfile.open(tgz_path) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not (name.startswith("SearchParameter-") and name.endswith(".json")):
                continue
            data = tar.extractfile(member)
            if data is None:
                continue
            sp = json.load(data)
            if sp.get("resourceType") != "SearchParameter" or not sp.get("expression"):
                continue
            if sp.get("id", "").startswith("example"):
                # the package's illustrations (e.g. a Condition `subject` that targets Organization) would
                # replace the core definitions of the same code
                continue
            params.append(
                {
                    "code": sp["code"],
                    "type": sp["type"],
                    "base": sp["base"],
                    "expression": sp["expression"],
                    "target": sp.get("target", []),
                    "url": sp["url"],
                    "description": sp.get("description", "")[:200],
                }
            )
    params.sort(key=lambda p: p["url"])
    return params


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tgz = argv[0] if argv else "../shared/data/hl7.fhir.r4.examples-4.0.1.tgz"
    params = build(tgz)
    OUT.write_text(json.dumps(params, indent=0, ensure_ascii=False) + "\n")
    print(f"wrote {len(params)} search parameters to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
