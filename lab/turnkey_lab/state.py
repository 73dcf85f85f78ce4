"""The lab's state folder: where each file lives, and how files are written (atomically, right modes)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_NET = "127.10"
NET_ENV = "TURNKEY_LAB_NET"
DIR_ENV = "TURNKEY_LAB_DIR"
_NET = re.compile(r"^127\.(\d{1,3})$")


class LabError(Exception):
    """A failure the CLI reports as one clear message (no traceback)."""


def parse_net(value: str) -> str:
    """'127.N': the first two octets of the /16 the lab's components listen in (always loopback)."""
    match = _NET.match(value.strip())
    if not match or int(match.group(1)) > 255:
        raise LabError(f"lab net {value!r} is not of the form 127.N (0 <= N <= 255)")
    return value.strip()


@dataclass(frozen=True)
class Lab:
    """One lab instance: a state folder plus the loopback /16 its components listen in."""

    root: Path
    net: str = DEFAULT_NET

    @classmethod
    def at(cls, root: str | os.PathLike, net: str = DEFAULT_NET) -> Lab:
        # Absolute, so the path found in our processes' command lines identifies this lab.
        return cls(Path(os.path.abspath(os.path.expanduser(root))), parse_net(net))

    # Persistent: kept by `lab reset`.
    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.pem"

    @property
    def vault_password(self) -> Path:
        return self.root / "vault-password"

    # Disposable: removed by `lab reset`.
    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def components(self) -> Path:
        return self.root / "components"

    @property
    def endpoints(self) -> Path:
        return self.root / "endpoints.json"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def config(self) -> Path:
        """What the last `lab up` asked for (net, profile, components), so later commands find it."""
        return self.root / "lab.json"

    @property
    def supervisor_pid(self) -> Path:
        return self.run / "supervisor.pid"

    @property
    def status(self) -> Path:
        """Written by the supervisor: per component pid, restarts, health, last error."""
        return self.run / "status.json"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def ip(self, host: str) -> str:
        return f"{self.net}.{host}"

    def owns(self, argv: list[str]) -> bool:
        """Whether a command line belongs to this lab: every lab process names the state folder."""
        root = str(self.root)
        return any(arg == root or root + os.sep in arg for arg in argv)


def write_file(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Atomic replace; the temp file is created with `mode`, so a secret is never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: object, mode: int = 0o644) -> None:
    write_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path, default: object = None) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def ensure_vault_password(lab: Lab) -> bool:
    """Create the lab inventory's ansible-vault password once; never overwrite it. True if created."""
    lab.root.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two concurrent `lab up` can't both write (and one silently replace) the password.
        fd = os.open(lab.vault_password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return True


def save_credentials(lab: Lab, component: str, values: dict) -> None:
    """Merge one component's secrets into credentials.json (0600). Only the supervisor writes it."""
    current = read_json(lab.credentials, {}) or {}
    current[component] = values
    write_json(lab.credentials, current, mode=0o600)


def credentials(lab: Lab, component: str) -> dict:
    return (read_json(lab.credentials, {}) or {}).get(component, {})
