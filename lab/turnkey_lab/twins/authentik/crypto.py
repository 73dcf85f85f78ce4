"""crypto/certificatekeypairs: what a fresh Authentik holds (a self-signed RSA certificate and the internal
JWT one), with real keys: OAuth2 providers sign their ID tokens with them."""

from __future__ import annotations

import datetime
import hashlib
import uuid
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .resources import Kind

if TYPE_CHECKING:
    from .twin import Call

SELF_SIGNED = "authentik Self-signed Certificate"


def generate(name: str, managed: str | None = None, bits: int = 4096) -> dict:
    """A stored keypair: an RSA key and a self-signed certificate valid a year, as Authentik's generator makes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authentik Self-signed Certificate"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "authentik"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Self-signed")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("*")]), critical=False)
            .sign(key, hashes.SHA256()))
    return {"pk": str(uuid.uuid4()), "name": name, "managed": managed,
            "certificate_data": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "key_data": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()}


def certificate(pair: dict) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair["certificate_data"].encode())


def private_key(pair: dict):
    return serialization.load_pem_private_key(pair["key_data"].encode(), password=None)


def kid(pair: dict) -> str:
    """Authentik's `kid` of a keypair: the md5 of its uuid's hex (the twin's reading of its source)."""
    return hashlib.md5(pair["pk"].replace("-", "").encode(), usedforsecurity=False).hexdigest()


def serialize(call: Call, pair: dict) -> dict:
    cert = certificate(pair)
    der = cert.public_bytes(serialization.Encoding.DER)
    base = f"/api/v3/crypto/certificatekeypairs/{pair['pk']}"
    return {"pk": pair["pk"], "name": pair["name"],
            "fingerprint_sha256": ":".join(f"{b:02x}" for b in hashlib.sha256(der).digest()),
            "fingerprint_sha1": ":".join(f"{b:02x}" for b in hashlib.sha1(der, usedforsecurity=False).digest()),
            "cert_expiry": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
            "cert_subject": cert.subject.rfc4514_string(), "private_key_available": bool(pair.get("key_data")),
            "key_type": "rsa", "certificate_download_url": f"{base}/view_certificate/?download",
            "private_key_download_url": f"{base}/view_private_key/?download", "managed": pair["managed"]}


KEYPAIRS = Kind(
    key="keypairs", path="/crypto/certificatekeypairs/", param="kp_uuid", verbose="Certificate-Key Pair",
    fields=lambda: {"name": ""}, serialize=serialize, read_only=True, search=("name",),
    exact=("name", "managed", "key_type"),
    filters={"has_key": lambda call, p, raw: p["private_key_available"] == (raw.lower() in ("true", "1"))},
)
