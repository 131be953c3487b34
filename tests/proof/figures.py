"""The number of generated cases each family ran, printed at the end of the test session (tests/proof/conftest.py)."""

from __future__ import annotations

from collections import Counter

CASES: Counter[str] = Counter()


def count(family: str, n: int = 1) -> None:
    CASES[family] += n
