"""Registering a local system client: key pair, JWKS in the clients file, and signed client assertions."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .clients import ClientRegistry
from .tokens import ASSERTION_TYPE


def generate_key(alg: str = "ES384"):
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "RS384":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported algorithm {alg}")


def public_jwk(key, alg: str, kid: str) -> dict:
    algo = jwt.algorithms.ECAlgorithm if alg == "ES384" else jwt.algorithms.RSAAlgorithm
    jwk = algo.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


def register_client(clients_file: str | Path, client_id: str, scope: str, key_dir: str | Path,
                    alg: str = "ES384") -> Path:
    """Writes `<key_dir>/<client_id>.pem` (private key, mode 600) and registers its public JWKS."""
    from .scopes import granular

    if granular(scope):
        raise ValueError(f"granular scopes are not supported (they would be widened to the whole type): "
                         f"{' '.join(granular(scope))}")
    key = generate_key(alg)
    kid = uuid.uuid4().hex[:16]
    key_dir = Path(key_dir)
    key_dir.mkdir(parents=True, exist_ok=True)
    pem_path = key_dir / f"{client_id}.pem"
    pem_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pem_path.chmod(0o600)
    (key_dir / f"{client_id}.kid").write_text(f"{kid} {alg}\n")
    ClientRegistry(clients_file).add(client_id, scope, jwks={"keys": [public_jwk(key, alg, kid)]})
    return pem_path


def client_assertion(client_id: str, pem_path: str | Path, token_url: str, *, lifetime: int = 240) -> str:
    pem_path = Path(pem_path)
    kid, alg = pem_path.with_suffix(".kid").read_text().split()
    key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"{pem_path}: an EC or RSA private key is needed to sign a client assertion")
    now = int(time.time())
    return jwt.encode({"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + lifetime, "iat": now,
                       "jti": uuid.uuid4().hex}, key, algorithm=alg, headers={"kid": kid})


def token_request(client_id: str, pem_path: str | Path, token_url: str, scope: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(client_id, pem_path, token_url)}
