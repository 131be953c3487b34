"""Registered system clients (id, JWKS or JWKS URL, allowed scopes), read from a JSON file in configuration."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client_jwt import JWKSCache, JWTRefused, jwk_key

_KTY = {"ES384": "EC", "RS384": "RSA"}


@dataclass
class Client:
    client_id: str
    scope: str
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None

    def key_for(self, kid: str | None, alg: str, jwks: JWKSCache) -> Any:
        """The registered key for `kid` (any, when the assertion names none) that suits `alg`, or None."""

        def suits(jwk: dict[str, Any]) -> bool:
            return ((kid is None or jwk.get("kid") == kid) and jwk.get("kty") == _KTY.get(alg)
                    and jwk.get("alg", alg) == alg)

        if self.jwks is not None:
            found = next((k for k in self.jwks.get("keys") or [] if suits(k)), None)
        elif self.jwks_uri:
            try:
                found = jwks.find(self.jwks_uri, suits)  # an unknown kid refetches the JWKS once
            except JWTRefused:
                found = None
        else:
            found = None
        return jwk_key(found, alg) if found is not None else None


class ClientRegistry:
    """Clients from `path` (re-read when the file changes), so that `lbp client add` needs no restart."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._mtime = -1.0
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._clients, self._mtime = {}, -1.0
            return
        if mtime == self._mtime:
            return
        with self._lock:
            data = json.loads(self.path.read_text())
            self._clients = {
                c["client_id"]: Client(c["client_id"], c.get("scope", ""), c.get("jwks"), c.get("jwks_uri"))
                for c in data.get("clients", [])
            }
            self._mtime = mtime

    def get(self, client_id: str) -> Client | None:
        self._load()
        return self._clients.get(client_id)

    def add(self, client_id: str, scope: str, jwks: dict[str, Any] | None = None, jwks_uri: str | None = None) -> None:
        from .scopes import granular

        if granular(scope):
            raise ValueError(f"granular scopes are not supported (they would be widened to the whole type): "
                             f"{' '.join(granular(scope))}")
        data = json.loads(self.path.read_text()) if self.path.exists() else {"clients": []}
        data["clients"] = [c for c in data["clients"] if c["client_id"] != client_id]
        entry: dict[str, Any] = {"client_id": client_id, "scope": scope}
        if jwks is not None:
            entry["jwks"] = jwks
        if jwks_uri:
            entry["jwks_uri"] = jwks_uri
        data["clients"].append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)
        self._mtime = -1.0
