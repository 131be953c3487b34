"""Fixtures for the validation tests: small resources from tests/data/validation, fresh per test."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "validation"
_CACHE: dict[str, dict[str, Any]] = {}


def load(name: str) -> dict[str, Any]:
    if name not in _CACHE:
        _CACHE[name] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(_CACHE[name])


@pytest.fixture
def patient() -> dict[str, Any]:
    return load("patient")


@pytest.fixture
def observation() -> dict[str, Any]:
    return load("observation")


@pytest.fixture
def transaction() -> dict[str, Any]:
    return load("transaction")


@pytest.fixture
def medicinal_product() -> dict[str, Any]:
    return load("medicinalproduct")


def errors(issues) -> list[tuple[str, str]]:
    """(code, expression) of every error issue."""
    return [(i.code, e) for i in issues if i.is_error for e in i.expression]


def make_package(directory: Path, files: dict[str, Any]) -> Path:
    """A .tgz laid out as an NPM FHIR package: every file under package/."""
    import io
    import tarfile

    path = directory / "package.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
