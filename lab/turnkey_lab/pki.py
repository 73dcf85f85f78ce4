"""The lab CA (made once, kept across resets) and the server certificates it issues to components."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .state import Lab, write_file

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = datetime.timedelta(days=30)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _key_usage(key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_cert_sign=key_cert_sign, crl_sign=crl_sign,
                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                         key_agreement=False, encipher_only=False, decipher_only=False)


def _load(cert_path: Path, key_path: Path):
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return cert, key


def ca_key_path(lab: Lab) -> Path:
    return lab.pki / "ca-key.pem"


def ensure_ca(lab: Lab):
    """(cert, key) of the lab CA, created on first use. Never replaced: clients pin it."""
    key_path = ca_key_path(lab)
    if lab.ca_cert.exists() and key_path.exists():
        return _load(lab.ca_cert, key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    # A random suffix: two labs' CAs in one trust bundle must not share a subject.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"turnkey lab CA {secrets.token_hex(4)}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    lab.pki.mkdir(parents=True, exist_ok=True)
    lab.pki.chmod(0o755)
    write_file(key_path, _key_pem(key), mode=0o600)
    write_file(lab.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _is_current(cert: x509.Certificate, ca: x509.Certificate, ip: str, dns: list[str]) -> bool:
    """Same SANs, issued by this CA, not about to expire: otherwise the cert is issued again."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return (cert.issuer == ca.subject
            and sorted(str(a) for a in sans.get_values_for_type(x509.IPAddress)) == [ip]
            and sorted(sans.get_values_for_type(x509.DNSName)) == sorted(dns)
            and cert.not_valid_after_utc - _now() > RENEW_BEFORE)


def ensure_server_cert(lab: Lab, name: str, ip: str,
                       dns: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path]:
    """Paths (cert, key) of a server certificate for one component, valid for its IP and `dns`."""
    ca_cert, ca_key = ensure_ca(lab)
    cert_path, key_path = lab.pki / f"{name}.pem", lab.pki / f"{name}-key.pem"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if _is_current(cert, ca_cert, ip, list(dns)):
            return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.lab")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip)), *(x509.DNSName(d) for d in dns)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), mode=0o600)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
