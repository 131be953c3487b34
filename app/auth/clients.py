"""Registered system clients (id, JWKS or JWKS URL, allowed scopes), read from a JSON file in configuration."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests

JWKS_CACHE_SECONDS = 300
_KTY = {"ES384": "EC", "RS384": "RSA"}


@dataclass
class Client:
    client_id: str
    scope: str
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    _fetched: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)

    def _keys(self, refresh: bool = False) -> list[dict[str, Any]]:
        if self.jwks is not None:
            return list(self.jwks.get("keys") or [])
        if not self.jwks_uri:
            return []
        now = time.time()
        if refresh or self._fetched is None or now - self._fetched[0] > JWKS_CACHE_SECONDS:
            try:
                r = requests.get(self.jwks_uri, timeout=3)
                r.raise_for_status()
                self._fetched = (now, r.json())
            except (requests.RequestException, ValueError):
                if self._fetched is None:
                    return []
        assert self._fetched is not None
        return list(self._fetched[1].get("keys") or [])

    def key_for(self, kid: str | None, alg: str) -> Any:
        for refresh in (False, True):  # an unknown kid refreshes a JWKS URL once
            for jwk in self._keys(refresh):
                if kid is not None and jwk.get("kid") != kid:
                    continue
                if jwk.get("kty") != _KTY.get(alg) or jwk.get("alg", alg) != alg:
                    continue
                return jwt.PyJWK(jwk, algorithm=alg).key
            if self.jwks is not None:
                break
        return None


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
