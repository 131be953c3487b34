"""docs/coverage.md: its summary table counts its rows, and every element not ✔ has its reason in the catalogue."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from app.knowledge.catalogue import NOT_COMPUTABLE_ELEMENTS

COVERAGE = Path(__file__).resolve().parents[2] / "docs" / "coverage.md"
SEEDS = ("SE", "SK", "BU", "DK", "X")


def _rows() -> list[list[str]]:
    out = []
    for line in COVERAGE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in SEEDS and not cells[1].isdigit():
            out.append(cells)
    return out


def test_the_summary_counts_the_rows():
    counted = {seed: Counter(row[-1] for row in _rows() if row[0] == seed) for seed in SEEDS}
    text = COVERAGE.read_text(encoding="utf-8")
    for seed in SEEDS:
        c = counted[seed]
        expected = f"| {seed} | {sum(c.values())} | {c['✔']} | {c['~']} | {c['✘']} |"
        assert expected in text, expected
    assert len(_rows()) == 137
    assert all(row[-1] in ("✔", "~", "✘") for row in _rows())


def test_the_share_computed_is_at_least_85_percent():
    marks = Counter(row[-1] for row in _rows())
    assert marks["✔"] / sum(marks.values()) >= 0.85
    assert re.search(rf"\*\*{marks['✔']} \(\d+ %\)\*\*", COVERAGE.read_text(encoding="utf-8"))


def test_every_element_not_computed_says_why_in_the_catalogue():
    reasons = {element_id for element_id, _, _ in NOT_COMPUTABLE_ELEMENTS}
    missing = [row[1] for row in _rows() if row[-1] != "✔" and row[1] not in reasons]
    assert missing == [], f"no reason in the catalogue for {missing}"
