"""Where the lab finds the Go tools `make tools` built: TURNKEY_<NAME> from the environment, else the line
tools/build recorded in the tools cache's tools.env (docs/tools.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .state import LabError

TOOLS_ENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "turnkey-cluster" / "tools" / "tools.env"


def variable(name: str) -> str:
    """The environment variable (and tools.env key) of a tool: kube-apiserver -> TURNKEY_KUBE_APISERVER."""
    return "TURNKEY_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def recorded() -> dict[str, str]:
    """tools.env's TURNKEY_<NAME>=path lines; {} before the first build."""
    found = {}
    if TOOLS_ENV.is_file():
        for line in TOOLS_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                found[key.strip()] = value.strip()
    return found


def tool_path(name: str) -> str:
    """The tool's path (a binary, or a folder tools/build made), which must exist and be executable."""
    key = variable(name)
    path = os.environ.get(key) or recorded().get(key)
    if not path:
        raise LabError(f"lab: no {name} binary ({key} unset and not in {TOOLS_ENV}); run `make tools`")
    if not os.access(path, os.X_OK):
        raise LabError(f"lab: {name} is not at {path} ({key}); run `make tools`")
    return path
