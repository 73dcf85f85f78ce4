"""Signed tokens (JWS, with PyJWT) and the JWKS of an OAuth2 provider.

As Authentik: a provider with a signing key signs RS256 with it (its JWKS publishes the key, `kid` per
keypair); a provider without one signs HS256 with its client secret (and publishes no key).
"""

from __future__ import annotations

import base64
import hashlib

import jwt
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from . import crypto


def _pair(data: dict, provider: dict) -> dict | None:
    return data.get("keypairs", {}).get(provider.get("signing_key") or "")


def sign(data: dict, provider: dict, claims: dict) -> str:
    pair = _pair(data, provider)
    if pair is None:
        return jwt.encode(claims, provider["client_secret"], algorithm="HS256")
    return jwt.encode(claims, crypto.private_key(pair), algorithm="RS256", headers={"kid": crypto.kid(pair)})


def algorithm(data: dict, provider: dict) -> str:
    return "HS256" if _pair(data, provider) is None else "RS256"


def jwks(data: dict, provider: dict) -> dict:
    pair = _pair(data, provider)
    if pair is None:
        return {"keys": []}
    cert = crypto.certificate(pair)
    der = cert.public_bytes(serialization.Encoding.DER)
    key = RSAAlgorithm.to_jwk(cert.public_key(), as_dict=True)
    sha1 = hashlib.sha1(der, usedforsecurity=False).digest()
    return {"keys": [{**key, "kid": crypto.kid(pair), "alg": "RS256", "use": "sig",
                      "x5c": [base64.b64encode(der).decode()], "x5t": _b64url(sha1),
                      "x5t#S256": _b64url(hashlib.sha256(der).digest())}]}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def at_hash(access_token: str) -> str:
    """OIDC's at_hash for RS256/HS256: the left half of the token's SHA-256, base64url."""
    return _b64url(hashlib.sha256(access_token.encode()).digest()[:16])


def pkce_s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode()).digest())
