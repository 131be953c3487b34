"""Errors as data: one exception family mapped to HTTP status and an OperationOutcome in one place."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# FHIR issue-type code (http://hl7.org/fhir/R4/valueset-issue-type.html) -> HTTP status
CATEGORY_STATUS = {
    "invalid": 400,
    "structure": 400,
    "required": 400,
    "value": 400,
    "invariant": 400,
    "not-supported": 400,
    "processing": 422,
    "business-rule": 422,
    "code-invalid": 400,
    "not-found": 404,
    "deleted": 410,
    "conflict": 409,
    "duplicate": 409,
    "multiple-matches": 412,
    "precondition": 412,
    "too-costly": 413,
    "too-long": 413,
    "security": 403,
    "login": 401,
    "forbidden": 403,
    "unsupported-media": 415,
    "exception": 500,
    "timeout": 504,
    "informational": 200,
}


@dataclass
class Issue:
    """One OperationOutcome.issue; `expression` is the FHIRPath of the offending element."""

    severity: str  # fatal | error | warning | information
    code: str  # issue-type code
    text: str
    expression: list[str] = field(default_factory=list)
    diagnostics: str | None = None

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "details": {"text": self.text}}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    if not issues:
        issues = [Issue("information", "informational", "All OK")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


class FHIRError(Exception):
    """A request that cannot be served; carries its issue(s) and the HTTP status they map to."""

    def __init__(
        self,
        code: str,
        text: str,
        expression: str | list[str] | None = None,
        *,
        status: int | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(text)
        if isinstance(expression, str):
            expression = [expression]
        self.issues = issues or [Issue("error", code, text, expression or [])]
        self.code = code
        self.status = status or CATEGORY_STATUS.get(code, 400)
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def invalid(text: str, expression: str | list[str] | None = None) -> FHIRError:
    return FHIRError("invalid", text, expression)


def not_found(text: str, expression: str | list[str] | None = None) -> FHIRError:
    return FHIRError("not-found", text, expression)
