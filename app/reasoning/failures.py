"""Case features that failed at run time: what failed and why (without patient data), the log line and the counter.

A feature that raises is *unknown* (its value is empty, as if the record did not hold the fact) and
*marked as failed*; the features that read it, directly or not, are evaluated on that unknown value
and marked as failed too, so a rule reading any of them is reported as "could not be evaluated"
instead of being silently left out (docs/fail-safe.md).

Fault injection: a caller may force named features to fail (``evaluate_features(..., fail=...)``,
``patient_context(..., fail_features=...)``, ``apply_plan_definition(..., fail_features=...)``); the
feature then raises :class:`ForcedFailure` in place of its evaluation and takes exactly the path of a
real run-time error.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass

log = logging.getLogger("lbp.reasoning")

# values a FHIRPath error message may quote from the record: strings, reprs of elements, numbers, dates
_QUOTED_VALUE = re.compile(r"'[^']*'|\"[^\"]*\"|\{[^{}]*\}|\[[^\[\]]*\]|@?\b\d[\d.:\-T+Z]*\b")
REASON_MAX = 200


class ForcedFailure(Exception):
    """Raised in place of a case feature's evaluation when the caller forces the feature to fail."""

    def __init__(self) -> None:
        super().__init__("forced to fail (fault injection)")


@dataclass(frozen=True)
class FeatureFailure:
    """One case feature that could not be evaluated.

    `cause` is None for a feature whose own expression raised; for a feature that read a failed one
    it names that feature (the first it read, in declaration order). `reason` never holds patient data.
    """

    library: str  # e.g. "Library/lbp-case-features"
    feature: str
    reason: str
    path: str  # element path of the feature's expression in the Library
    cause: str | None = None

    @property
    def raised(self) -> bool:
        return self.cause is None

    def to_dict(self) -> dict[str, str]:
        out = {"library": self.library, "feature": self.feature, "reason": self.reason, "path": self.path}
        if self.cause is not None:
            out["cause"] = self.cause
        return out


def reason_of(exc: BaseException) -> str:
    """The error text of an evaluation error with every value it might quote from the record removed."""
    if isinstance(exc, ForcedFailure):
        return str(exc)
    text = _QUOTED_VALUE.sub("…", str(exc)).strip()
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"


class FailureCounter:
    """Run-time feature failures since start, per (library, feature): read by metrics, never reset by requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._not_evaluated: Counter[tuple[str, str]] = Counter()

    def feature_failed(self, library: str, feature: str) -> None:
        with self._lock:
            self._counts[(library, feature)] += 1

    def rule_not_evaluated(self, plan: str, action: str) -> None:
        with self._lock:
            self._not_evaluated[(plan, action)] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self) -> dict[str, dict[tuple[str, str], int]]:
        """{"features": {(library, feature): n}, "actions": {(plan, action id): n}}."""
        with self._lock:
            return {"features": dict(self._counts), "actions": dict(self._not_evaluated)}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._not_evaluated.clear()


FAILURES = FailureCounter()


def record_failure(failure: FeatureFailure) -> None:
    """Count a feature whose own expression raised and log it by artifact id and feature name only."""
    FAILURES.feature_failed(failure.library, failure.feature)
    log.warning("case feature failed: %s %s", failure.library, failure.feature)
