"""The Go tools `make tools` built (tools/build records them in ~/.cache/turnkey-cluster/tools/tools.env),
for tests that run them. A variable set in the environment wins; a missing tool fails the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TOOLS_ENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "turnkey-cluster/tools/tools.env"


def built_tools(*names: str) -> dict[str, str]:
    """{TURNKEY_<TOOL>: path} for the names asked for, e.g. built_tools("TURNKEY_KUBECTL")."""
    found = {}
    if TOOLS_ENV.is_file():
        for line in TOOLS_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                found[key.strip()] = value.strip()
    found.update({name: os.environ[name] for name in names if os.environ.get(name)})
    missing = [name for name in names if not found.get(name) or not Path(found[name]).exists()]
    if missing:
        pytest.fail("missing tools %s; run `make tools`" % ", ".join(missing), pytrace=False)
    return {name: found[name] for name in names}
