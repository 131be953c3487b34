"""Fixtures of the generated tests: the shipped artifacts loaded once, the CDS application, and the figures."""

from __future__ import annotations

import pytest

from tests.cds.conftest import cds, cds_app, jwks_host, keys  # noqa: F401  (fixtures, shared with tests/cds)
from tests.proof import figures
from tests.proof.model import Model, model


@pytest.fixture(scope="session")
def proof_model() -> Model:
    return model()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not figures.CASES:
        return
    terminalreporter.section("generated proof cases")
    for family, n in sorted(figures.CASES.items()):
        terminalreporter.write_line(f"{family:58} {n:7d}")
    terminalreporter.write_line(f"{'total':58} {sum(figures.CASES.values()):7d}")
