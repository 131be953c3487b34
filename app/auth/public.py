"""The absolute URLs this server is reached at: the only accepted `aud` of client assertions and CDS Hooks JWTs.

A JWT's audience says which server it was made for. Taking that from the request's Host header would let
a JWT made for another server be replayed here with a forged Host, so the audiences come from
configuration only: `LBP_PUBLIC_BASE_URL` (one URL, or several separated by spaces or commas) and, for the
CDS service, `LBP_CDS_PUBLIC_BASE_URL`. With neither set, the bind address (`HOST`, `PORT`) is the base;
in production mode (`LBP_PRODUCTION=true`) a missing public URL refuses start-up.
"""
from __future__ import annotations

import os
import re
from typing import Any

from flask import Flask, current_app

TEST_CLIENT_BASE = "http://localhost"  # Flask's test client; accepted only when TESTING is on


class ConfigurationError(RuntimeError):
    """The server cannot start safely with this configuration."""


def _split(value: Any) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else re.split(r"[\s,]+", str(value))
    return [str(v).strip().rstrip("/") for v in items if str(v).strip()]


def bind_base() -> str:
    host = os.environ.get("HOST", "127.0.0.1")
    return f"http://{host}:{os.environ.get('PORT', '8080')}"


def configured_bases(app: Flask, *, cds: bool = False) -> list[str]:
    """The configured public bases (CDS first when asked for), then the bind address when none is configured."""
    out = _split(app.config.get("CDS_PUBLIC_BASE_URL")) if cds else []
    out += [b for b in _split(app.config.get("PUBLIC_BASE_URL")) if b not in out]
    if not out:
        out.append(bind_base())
    if app.config.get("TESTING") and TEST_CLIENT_BASE not in out:
        out.append(TEST_CLIENT_BASE)
    return out


def public_bases(*, cds: bool = False) -> list[str]:
    return configured_bases(current_app, cds=cds)


def check_configuration(app: Flask) -> None:
    """Production mode needs a public URL: the bind address of a server behind a proxy is not its name."""
    if app.config.get("PRODUCTION") and not _split(app.config.get("PUBLIC_BASE_URL")):
        raise ConfigurationError("LBP_PUBLIC_BASE_URL is not set; in production mode the server's public URL "
                                 "must be configured (it is the audience every client JWT must name)")


def primary_base(value: Any) -> str | None:
    """The first configured base of a PUBLIC_BASE_URL-style setting (for links), or None."""
    bases = _split(value)
    return bases[0] if bases else None
