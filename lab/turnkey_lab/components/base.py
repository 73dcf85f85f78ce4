"""The interface every lab component implements. Adding a twin = one subclass + one line in the registry.

Who calls what:
  `lab up` (CLI process)  -> prepare()                         once per `up`, before the supervisor starts
  supervisor              -> command(), environment(), cwd     to (re)start the process
                          -> reconcile()                       repeatedly while the process runs
  `lab up` / `lab status` -> health(), endpoint()              live probes, read-only
  `lab reset`             -> wipe()
  `lab env`               -> shell_env()
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .. import pki
from ..state import Lab

PROFILES = ("fast", "realistic")


@dataclass
class Health:
    healthy: bool
    detail: str = ""


class Component:
    # Set by every subclass.
    name: ClassVar[str]
    host: ClassVar[str]  # address inside the lab net: "0.2" -> <net>.0.2
    port: ClassVar[int]
    # Other ports the process binds on the same IP (checked free before start).
    extra_ports: ClassVar[tuple[int, ...]] = ()
    scheme: ClassVar[str] = "https"
    # How long `lab up` waits for this component to become healthy, per profile.
    startup_timeout: ClassVar[float] = 60.0

    def __init__(self, lab: Lab, profile: str = "realistic"):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}")
        self.lab = lab
        self.profile = profile

    # -- where things are ---------------------------------------------------------------------------
    @property
    def ip(self) -> str:
        return self.lab.ip(self.host)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.extra_ports)

    @property
    def data_dir(self) -> Path:
        """Everything this component keeps between restarts; `lab reset` removes it."""
        return self.lab.components / self.name

    @property
    def log_file(self) -> Path:
        return self.lab.logs / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.lab.run / f"{self.name}.pid"

    @property
    def tls_files(self) -> tuple[Path, Path]:
        return self.lab.pki / f"{self.name}.pem", self.lab.pki / f"{self.name}-key.pem"

    # -- hooks --------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Write what the process needs (certificate, config). Idempotent; runs before every `lab up`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        pki.ensure_server_cert(self.lab, self.name, self.ip)

    def command(self) -> list[str]:
        """argv of the long-running process. It must name the state folder (pid checks rely on it)."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def cwd(self) -> Path:
        return self.data_dir

    def reconcile(self) -> Health:
        """Called by the supervisor while the process runs: drive it to healthy (e.g. init, unseal).

        Must return quickly (short network timeouts); raise with a readable message on trouble.
        """
        return self.health()

    def health(self) -> Health:
        """A live, read-only probe of the running service."""
        raise NotImplementedError

    def endpoint(self) -> dict:
        """This component's entry in endpoints.json (no secrets)."""
        return {"url": self.url, "ip": self.ip, "port": self.port}

    def shell_env(self) -> dict[str, str]:
        """Shell-ready (already quoted) values `lab env` exports. Never literal secrets."""
        return {}

    def wipe(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def quote(value: object) -> str:
        return shlex.quote(str(value))

    def credential_in_shell(self, field: str) -> str:
        """A shell word that reads this component's `field` from the 0600 credentials file when the shell
        evaluates it (`lab env` exports it), so the secret itself is never printed."""
        read = "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])"
        argv = (sys.executable, "-c", read, self.lab.credentials, self.name, field)
        return '"$(' + " ".join(self.quote(a) for a in argv) + ')"'
