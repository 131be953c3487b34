"""The project's conventions, read from data: the pathway variants (`hooks/variants.json`) and the canonical bases.

A variant (a country's or region's pathway) is a code, the canonical of its clinical-protocol
PlanDefinition, the language its artifacts are written in and a label. Adding a region means adding an
entry to `hooks/variants.json` and loading its artifacts; no Python names a variant.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOOKS_DIR = ROOT / "hooks"
VARIANTS_FILE = "variants.json"

# The canonical base of the project's own artifacts, and the CodeSystem that names the pathway's rules.
BASE = "https://lbp-pathway.org/fhir"
RULES_SYSTEM = f"{BASE}/CodeSystem/lbp-rules"

# Languages the patient and clinician pages are written in (app/web/content/*.<lang>.json).
LANGUAGES = ("sv", "da", "en")


@dataclass(frozen=True)
class Variant:
    code: str
    pathway: str  # canonical of the clinical-protocol PlanDefinition
    language: str
    label: str


def parse_variants(raw: Mapping[str, Any]) -> dict[str, Variant]:
    """The variants of a `variants.json` document (`{"variants": {code: {pathway, language, label}}}`)."""
    return {code: Variant(code, v["pathway"], v.get("language", "sv"), v.get("label", code))
            for code, v in (raw.get("variants") or {}).items()}


@functools.cache
def variants(hooks_dir: str | None = None) -> dict[str, Variant]:
    """The variants this server knows, from `<hooks_dir>/variants.json` (default: the project's hooks/)."""
    path = Path(hooks_dir or HOOKS_DIR) / VARIANTS_FILE
    loaded = parse_variants(json.loads(path.read_text(encoding="utf-8")))
    if not loaded:
        raise ValueError(f"{path} names no variant")
    return loaded


def variant_codes() -> tuple[str, ...]:
    """The variant codes, in the order of variants.json."""
    return tuple(variants())
