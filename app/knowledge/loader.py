"""Loads the project's artifact folders (valuesets/, questionnaires/, plandefinitions/) into the store at start-up."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from app.errors import FHIRError
from app.records import admit, upsert_all

log = logging.getLogger("lbp")


@dataclass
class LoadReport:
    loaded: int = 0
    unchanged: int = 0
    failures: list[str] = field(default_factory=list)


def artifact_files(dirs: list[str]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_dir():
            files.extend(sorted(p.glob("*.json")))
    return files


def register_shipped_extensions(dirs: list[str]) -> list[str]:
    """Register the extension StructureDefinitions of the artifact folders (files `StructureDefinition-*.json`)
    with the validator, so that it checks the project's extensions as it checks core ones; their URLs."""
    from app.validation import register_extension_definitions

    definitions = []
    for d in dirs:
        for path in sorted(Path(d).glob("StructureDefinition-*.json")) if Path(d).is_dir() else []:
            try:
                definitions.append(orjson.loads(path.read_bytes()))
            except orjson.JSONDecodeError:
                continue  # reported by load_directories as not JSON
    return register_extension_definitions(definitions)


def _same(stored: dict, resource: dict) -> bool:
    a = {k: v for k, v in stored.items() if k != "meta"}
    b = {k: v for k, v in resource.items() if k != "meta"}
    return a == b


def load_directories(lbp: Any, dirs: list[str], *, validate: bool = True) -> LoadReport:
    """Upsert every artifact whose content changed; an invalid file is reported and skipped."""
    from flask import current_app

    report = LoadReport()
    ready: list[dict] = []
    with current_app.app_context() if _has_app() else _app_context(lbp):
        for path in artifact_files(dirs):
            try:
                resource = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                report.failures.append(f"{path.name}: not JSON ({exc})")
                continue
            if not isinstance(resource, dict) or not resource.get("id"):
                report.failures.append(f"{path.name}: not a resource with an id")
                continue
            current = lbp.store.read(resource.get("resourceType", ""), resource["id"])
            if current is not None and not current.deleted and _same(current.resource(), resource):
                report.unchanged += 1
                continue
            try:
                admit(resource, require_id=True, validate=validate)
            except FHIRError as err:
                where = "; ".join(f"{i.text} at {', '.join(i.expression)}" for i in err.issues[:3])
                report.failures.append(f"{path.name}: {where}")
                continue
            ready.append(resource)
        if ready:
            report.loaded = len(upsert_all(ready))
        lbp.knowledge.refresh(force=True)
    return report


def _has_app() -> bool:
    from flask import has_app_context

    return has_app_context()


def _app_context(lbp: Any):
    return lbp.app.app_context()
