"""The shipped R4 core definitions: origin and checksum recorded, content as the rule layer needs it."""
from __future__ import annotations

import gzip
import hashlib
import re

from app.validation.definitions import DEFINITIONS_PATH, core


def test_the_file_matches_the_checksum_in_its_readme():
    readme = (DEFINITIONS_PATH.parent / "README.md").read_text(encoding="utf-8")
    recorded = re.search(r"sha256 of the JSON[^`]*`([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256(gzip.decompress(DEFINITIONS_PATH.read_bytes())).hexdigest() == recorded


def test_origin_is_the_official_r4_package():
    origin = core().origin
    assert (origin["package"], origin["version"]) == ("hl7.fhir.r4.examples", "4.0.1")
    assert re.fullmatch(r"[0-9a-f]{64}", origin["sha256"])


def test_content():
    defs = core()
    keys = {c[0] for c in defs.constraints}
    assert {"ras-2", "sdf-20", "per-1", "txt-1", "dom-3", "que-1", "bdl-7"} <= keys
    assert defs.bindings["Condition.clinicalStatus"][0] == "required"
    assert defs.extensions["http://hl7.org/fhir/StructureDefinition/patient-birthPlace"]["value"] == ["Address"]
    assert defs.type_chain("Age") == ["Age", "Quantity", "Element"]
