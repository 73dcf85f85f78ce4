"""The lab's pieces that need no running process: net, state files, PKI, the component registry."""

from __future__ import annotations

import ipaddress
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from turnkey_lab import components, pki
from turnkey_lab.cli import main
from turnkey_lab.state import Lab, LabError, ensure_vault_password, parse_net, write_json

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)


def test_net_is_a_loopback_slash_16():
    assert parse_net("127.77") == "127.77"
    for bad in ("10.0", "127.256", "127.1.2", "127", ""):
        with pytest.raises(LabError):
            parse_net(bad)


def test_bad_net_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--net", "192.168", "status"])
    assert exit_info.value.code == 2
    assert "127.N" in capsys.readouterr().err


def test_a_lab_owns_only_command_lines_naming_its_folder(tmp_path):
    lab = Lab.at(tmp_path / "lab")
    assert lab.owns(["bao", "server", f"-config={tmp_path}/lab/components/openbao/config.hcl"])
    assert lab.owns(["python", "-m", "turnkey_lab", "--state-dir", str(tmp_path / "lab"), "_supervise"])
    assert not lab.owns(["bao", "server", f"-config={tmp_path}/lab2/config.hcl"])  # a sibling lab


def test_vault_password_is_created_once_and_never_overwritten(tmp_path):
    lab = Lab.at(tmp_path)
    assert ensure_vault_password(lab) is True
    first = lab.vault_password.read_text()
    assert len(first.strip()) >= 32 and stat.S_IMODE(lab.vault_password.stat().st_mode) == 0o600
    assert ensure_vault_password(lab) is False
    assert lab.vault_password.read_text() == first


def test_secret_files_are_written_0600_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        write_json(tmp_path / "credentials.json", {"x": "y"}, mode=0o600)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600


def test_server_cert_is_signed_by_the_lab_ca_for_its_ip_and_localhost(tmp_path):
    lab = Lab.at(tmp_path, "127.77")
    cert_path, key_path = pki.ensure_server_cert(lab, "openbao", "127.77.0.2")
    ca = x509.load_pem_x509_certificate(lab.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.77.0.2")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    for secret in (key_path, tmp_path / "pki" / "ca-key.pem"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_certs_follow_the_ip_but_the_ca_stays(tmp_path):
    lab = Lab.at(tmp_path)
    first = pki.ensure_server_cert(lab, "openbao", "127.77.0.2")[0]
    ca, cert = lab.ca_cert.read_bytes(), first.read_bytes()
    pki.ensure_server_cert(lab, "openbao", "127.77.0.2")
    assert first.read_bytes() == cert  # still valid: not issued again
    pki.ensure_server_cert(lab, "openbao", "127.78.0.2")
    assert first.read_bytes() != cert and lab.ca_cert.read_bytes() == ca


def test_registry_components_have_distinct_names_and_addresses(tmp_path):
    lab = Lab.at(tmp_path, "127.77")
    built = components.build(lab, "realistic")
    assert [c.name for c in built] == components.names()
    assert len({c.name for c in built}) == len(built)
    sockets = [(c.ip, port) for c in built for port in c.ports]
    assert len(set(sockets)) == len(sockets)
    assert all(socket[0].startswith("127.77.") for socket in sockets)
    with pytest.raises(LabError, match="unknown component"):
        components.build(lab, "fast", ["nope"])
