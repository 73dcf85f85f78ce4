"""The vault_* modules' client (module_utils/vault.py): refused before a request leaves when it would be unsafe,
and a Vault that cannot be reached, or whose certificate is not trusted, named with the fix. Real sockets and a
real TLS listener, no mocks."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib
from tests.integration.cluster.conftest import write_pki

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

ADDRESS = "127.99.0.3"


def params(url, **extra):
    return dict({"url": url, "ca_path": None, "validate_certs": True, "timeout": 5}, **extra)


def test_plain_http_is_refused_before_any_request():
    with pytest.raises(vault_lib.VaultFailure, match="is not https: the token and the unseal keys would travel"):
        vault_lib.client(params("http://%s:8200" % ADDRESS))


def test_a_missing_ca_file_names_the_setting(tmp_path):
    with pytest.raises(vault_lib.VaultFailure, match="vault.ca_path .* does not exist"):
        vault_lib.client(params("https://%s:8200" % ADDRESS, ca_path=str(tmp_path / "nope.pem")))


def test_an_unreachable_vault_names_the_fix():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind((ADDRESS, 0))
        port = probe.getsockname()[1]
    url = "https://%s:%d" % (ADDRESS, port)
    with pytest.raises(vault_lib.VaultFailure) as failure:
        vault_lib.seal_status(vault_lib.client(params(url)), url)
    assert str(failure.value).startswith("Vault at %s is unreachable" % url)
    assert "Fix: check that Vault runs and that vault.address (%s) and vault.ca_path" % url in str(failure.value)


def test_a_certificate_from_another_ca_names_vault_ca_path(tmp_path):
    # The API server's PKI helper makes a CA and a server certificate for 127.94.0.1 (its SAN): serve it there.
    write_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    with socket.socket() as listener:
        listener.bind(("127.94.0.1", 0))
        listener.listen(1)
        url = "https://127.94.0.1:%d" % listener.getsockname()[1]

        def serve():
            connection, _peer = listener.accept()
            try:
                context.wrap_socket(connection, server_side=True).close()
            except (ssl.SSLError, OSError):
                connection.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        # The system trust store does not know the test CA.
        with pytest.raises(vault_lib.VaultFailure, match="TLS verification failed .*Fix: set vault.ca_path"):
            vault_lib.seal_status(vault_lib.client(params(url)), url)
        thread.join(timeout=10)
