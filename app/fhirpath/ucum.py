"""A small UCUM subset for comparing and multiplying quantities: mass, length, time, volume, amount, with prefixes.

A unit is read as a product of atoms with optional metric prefix and integer exponent, joined by
`.` and `/` (`mg`, `cm2`, `g/m`, `mmol/L`, `kg.m/s2`, `[in_i]`, `1`). It is converted to a factor
and a dimension vector over the base units, so `4 'g' = 4000 'mg'` and `1 'cm'.comparable(1 '[in_i]')`
hold. Units outside the subset (or annotations `{…}`) are not convertible: quantities in them compare
only with the very same unit. The calendar keywords (`year`, `month`, `week`, `day` …) are FHIRPath's,
not UCUM's: `mo` and `a` are UCUM's mean month and year, which no calendar duration equals.
Figures from the UCUM specification (https://ucum.org/ucum), base units g, m, s, mol, K.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

# dimension order: mass, length, time, amount of substance, temperature
Dimension = tuple[int, int, int, int, int]
_NONE: Dimension = (0, 0, 0, 0, 0)

_ATOMS: dict[str, tuple[Decimal, Dimension, bool]] = {
    # atom: (factor to base units, dimension, takes a metric prefix)
    "g": (Decimal(1), (1, 0, 0, 0, 0), True),
    "m": (Decimal(1), (0, 1, 0, 0, 0), True),
    "s": (Decimal(1), (0, 0, 1, 0, 0), True),
    "mol": (Decimal(1), (0, 0, 0, 1, 0), True),
    "K": (Decimal(1), (0, 0, 0, 0, 1), True),
    "l": (Decimal("0.001"), (0, 3, 0, 0, 0), True),
    "L": (Decimal("0.001"), (0, 3, 0, 0, 0), True),
    "min": (Decimal(60), (0, 0, 1, 0, 0), False),
    "h": (Decimal(3600), (0, 0, 1, 0, 0), False),
    "d": (Decimal(86400), (0, 0, 1, 0, 0), False),
    "wk": (Decimal(604800), (0, 0, 1, 0, 0), False),
    "mo": (Decimal("2629800"), (0, 0, 1, 0, 0), False),  # mean Julian month
    "a": (Decimal("31557600"), (0, 0, 1, 0, 0), False),  # mean Julian year
    "[in_i]": (Decimal("0.0254"), (0, 1, 0, 0, 0), False),
    "[ft_i]": (Decimal("0.3048"), (0, 1, 0, 0, 0), False),
    "[lb_av]": (Decimal("453.59237"), (1, 0, 0, 0, 0), False),
    "[oz_av]": (Decimal("28.349523125"), (1, 0, 0, 0, 0), False),
    "1": (Decimal(1), _NONE, False),
    "%": (Decimal("0.01"), _NONE, False),
}
_PREFIXES = {
    "k": Decimal(1000),
    "h": Decimal(100),
    "da": Decimal(10),
    "d": Decimal("0.1"),
    "c": Decimal("0.01"),
    "m": Decimal("0.001"),
    "u": Decimal("0.000001"),
    "n": Decimal("0.000000001"),
    "p": Decimal("0.000000000001"),
}
# the calendar keywords of FHIRPath as durations (only the definite ones compare with UCUM)
CALENDAR_SECONDS = {
    "week": Decimal(604800),
    "day": Decimal(86400),
    "hour": Decimal(3600),
    "minute": Decimal(60),
    "second": Decimal(1),
    "millisecond": Decimal("0.001"),
}
_TERM = re.compile(r"^(\[[^\]]+\]|[A-Za-z%]+|1)(-?\d+)?$")


def _atom(text: str) -> tuple[Decimal, Dimension] | None:
    match = _TERM.match(text)
    if not match:
        return None
    symbol, power = match.group(1), int(match.group(2) or 1)
    found: tuple[Decimal, Dimension] | None = None
    if symbol in _ATOMS:
        factor, dim, _ = _ATOMS[symbol]
        found = (factor, dim)
    else:
        for prefix, scale in _PREFIXES.items():
            rest = symbol[len(prefix):]
            if symbol.startswith(prefix) and rest in _ATOMS and _ATOMS[rest][2]:
                factor, dim, _ = _ATOMS[rest]
                found = (factor * scale, dim)
                break
    if found is None:
        return None
    factor, dim = found
    return factor**power, tuple(d * power for d in dim)  # type: ignore[return-value]


@cache
def parse(unit: str) -> tuple[Decimal, Dimension] | None:
    """(factor to base units, dimension) of a UCUM unit in the subset; None when outside it."""
    if not unit or "{" in unit:
        return None
    factor = Decimal(1)
    dim = list(_NONE)
    for i, part in enumerate(re.split(r"(?=[./])", unit)):
        sign = 1
        if part.startswith("/"):
            sign, part = -1, part[1:]
        elif part.startswith("."):
            part = part[1:]
        elif i > 0:
            return None
        term = _atom(part)
        if term is None:
            return None
        factor = factor * term[0] if sign > 0 else factor / term[0]
        dim = [d + sign * t for d, t in zip(dim, term[1], strict=True)]
    return factor, tuple(dim)  # type: ignore[return-value]


def canonical(value: Decimal, unit: str) -> tuple[Decimal, Dimension] | None:
    """The value in base units and the unit's dimension (calendar keywords of definite length included)."""
    if unit in CALENDAR_SECONDS:
        return value * CALENDAR_SECONDS[unit], (0, 0, 1, 0, 0)
    parsed = parse(unit)
    if parsed is None:
        return None
    return value * parsed[0], parsed[1]


def unit_of(dim: Dimension) -> str:
    """A UCUM unit in base units for a dimension (the unit of a product or quotient)."""
    names = ("g", "m", "s", "mol", "K")
    up = [f"{n}{p if p != 1 else ''}" for n, p in zip(names, dim, strict=True) if p > 0]
    down = [f"{n}{-p if p != -1 else ''}" for n, p in zip(names, dim, strict=True) if p < 0]
    text = ".".join(up) or "1"
    return text + "".join("/" + d for d in down)
