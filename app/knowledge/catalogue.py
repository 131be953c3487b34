"""Rule catalogue: every rule id, the artifacts implementing it, its source sentence, and every assumption."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.conventions import BASE, RULES_SYSTEM

ASSUMPTION = f"{BASE}/StructureDefinition/assumption"
CITATION_EN = f"{BASE}/StructureDefinition/citation-en"
ARTIFACT_FOLDERS = ("valuesets", "questionnaires", "plandefinitions")
RULES_FILE = Path("valuesets") / "CodeSystem-lbp-rules.json"
OUTPUT = Path("docs") / "catalogue.md"


def _artifacts(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for folder in ARTIFACT_FOLDERS:
        for path in sorted((root / folder).glob("*.json")):
            resource = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(resource, dict) and "resourceType" in resource:
                yield f"{resource['resourceType']}/{resource.get('id', path.stem)}", resource


def _walk(node: Any, path: str, action: str | None) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """Every object in a resource with its element path and the id of the PlanDefinition action holding it."""
    if isinstance(node, dict):
        yield path, action, node
        for key, value in node.items():
            element = key[1:] if key.startswith("_") else key
            yield from _walk(value, f"{path}.{element}", action)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            inner = action
            if path.endswith(".action") and isinstance(value, dict) and value.get("id"):
                inner = f"{action}/{value['id']}" if action else value["id"]
            yield from _walk(value, f"{path}[{i}]", inner)


def _rule_definitions(root: Path) -> list[dict[str, Any]]:
    """Rule concepts from the lbp-rules CodeSystem: code, display, source, computable, reason."""
    path = root / RULES_FILE
    if not path.exists():
        return []
    cs = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for concept in cs.get("concept", []):
        props: dict[str, Any] = {}
        for prop in concept.get("property", []):
            value = next((v for k, v in prop.items() if k.startswith("value")), None)
            props[prop.get("code")] = value
        out.append(
            {
                "code": concept["code"],
                "display": concept.get("display", ""),
                "source": props.get("source", ""),
                "computable": props.get("computable", True) is not False,
                "reason": props.get("not-computable-reason", ""),
            }
        )
    return out


def collect(root: Path) -> dict[str, Any]:
    """What the catalogue shows, as data: implementers and citations per rule, and every assumption."""
    implementers: dict[str, set[str]] = {}
    sources: dict[str, list[tuple[str, str, str]]] = {}
    assumptions: list[tuple[str, str, str]] = []
    rules_file_key = None
    for key, resource in _artifacts(root):
        if resource.get("url") == RULES_SYSTEM:
            rules_file_key = key
            continue
        rtype = resource["resourceType"]
        for path, action, obj in _walk(resource, rtype, None):
            if obj.get("system") == RULES_SYSTEM and obj.get("code"):
                implementers.setdefault(obj["code"], set()).add(f"{key}#{action}" if action else key)
            if obj.get("type") == "citation" and obj.get("label") and obj.get("citation"):
                english = next(
                    (
                        e.get("valueString", "")
                        for e in (obj.get("_citation") or {}).get("extension", [])
                        if e.get("url") == CITATION_EN
                    ),
                    "",
                )
                entry = (obj.get("display", ""), obj["citation"], english)
                if entry not in sources.setdefault(obj["label"], []):
                    sources[obj["label"]].append(entry)
            for ext in obj.get("extension", []) or []:
                if isinstance(ext, dict) and ext.get("url") == ASSUMPTION:
                    assumptions.append((key, path, ext.get("valueString", "")))
    return {
        "implementers": implementers,
        "sources": sources,
        "assumptions": assumptions,
        "rules_file": rules_file_key,
    }


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def build_catalogue(root: Path) -> str:
    """The Markdown catalogue of the artifacts under `root` (the project directory)."""
    root = Path(root)
    data = collect(root)
    rules = _rule_definitions(root)
    if not rules:  # no rule CodeSystem yet: list the ids the artifacts cite
        rules = [
            {"code": c, "display": "", "source": "", "computable": True, "reason": ""}
            for c in sorted(set(data["implementers"]) | set(data["sources"]))
        ]
    lines = [
        "# Rule catalogue",
        "",
        "Generated by `python -m app.knowledge.catalogue` from `valuesets/`, `questionnaires/` and "
        "`plandefinitions/`; do not edit by hand. For every rule id of the CodeSystem `lbp-rules`: the "
        "artifacts that cite it (`Type/id`, with `#action` for PlanDefinition actions), and the source "
        "sentences the artifacts quote. Then every `assumption` extension, and the rules that are "
        "deliberately not computable.",
        "",
        "## Rules",
        "",
    ]
    for rule in rules:
        code = rule["code"]
        head = f"### {code}"
        if rule["display"]:
            head += f" — {_md(rule['display'])}"
        if rule["source"]:
            head += f" ({rule['source']})"
        lines += [head, ""]
        if not rule["computable"]:
            lines += [f"Not computable: {_md(rule['reason'])}", ""]
        found = sorted(data["implementers"].get(code, ()))
        if found:
            lines.append("Implemented by:")
            lines += [f"- `{item}`" for item in found]
        else:
            lines.append("Implemented by: —")
        lines.append("")
        for display, original, english in data["sources"].get(code, []):
            lines.append(f"> {_md(original)}")
            if english:
                lines.append(">")
                lines.append(f"> *{_md(english)}*")
            lines.append(">")
            lines.append(f"> — {_md(display)}")
            lines.append("")
    lines += ["## Assumptions", "", "| Artifact | Element | Assumption |", "| --- | --- | --- |"]
    for key, path, text in sorted(data["assumptions"]):
        lines.append(f"| `{key}` | `{path}` | {_md(text)} |")
    lines += ["", "## Rules not computable", "", "| Rule | Reason |", "| --- | --- |"]
    for rule in rules:
        if not rule["computable"]:
            lines.append(f"| {rule['code']} | {_md(rule['reason'])} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[2]
    (root / OUTPUT).write_text(build_catalogue(root), encoding="utf-8")
    print(f"wrote {root / OUTPUT}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
