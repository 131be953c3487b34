"""Database failures an operator must recognise: a full disk and a read-only database, named in words."""
from __future__ import annotations

# (fragment of the driver's message, lower case) -> (HTTP status, cause). SQLite and PostgreSQL wordings.
_CAUSES: tuple[tuple[str, int, str], ...] = (
    ("database or disk is full", 507, "the database's disk is full"),
    ("no space left on device", 507, "the database's disk is full"),
    ("could not extend file", 507, "the database's disk is full"),
    ("disk quota exceeded", 507, "the database's disk is full"),
    ("attempt to write a readonly database", 503, "the database is read-only"),
    ("read-only transaction", 503, "the database is read-only"),
    ("read-only file system", 503, "the database is read-only"),
    ("unable to open database file", 503, "the database file cannot be opened (read-only or missing)"),
    ("disk i/o error", 503, "the database's disk failed (I/O error)"),
)


def storage_cause(exc: BaseException) -> tuple[int, str] | None:
    """(status, cause) when `exc` is a full disk or a read-only database, else None. Reads no patient data:
    only the driver's own error wording is matched, and only the fixed cause text is ever shown or logged."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        text = str(getattr(current, "orig", None) or current).lower()
        for fragment, status, cause in _CAUSES:
            if fragment in text:
                return status, cause
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def describe(exc: BaseException) -> str:
    found = storage_cause(exc)
    return found[1] if found else type(exc).__name__
