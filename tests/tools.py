"""The Go tools `make tools` built (tools/build records them in ~/.cache/turnkey-cluster/tools/tools.env),
for tests that run them. A variable set in the environment wins; a missing tool fails the test."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from turnkey_lab.tools_env import TOOLS_ENV, recorded

__all__ = ["TOOLS_ENV", "built_tools", "building_beside", "wait_for_the_build"]


def built_tools(*names: str) -> dict[str, str]:
    """{TURNKEY_<TOOL>: path} for the names asked for, e.g. built_tools("TURNKEY_KUBECTL")."""
    found = recorded()
    found.update({name: os.environ[name] for name in names if os.environ.get(name)})
    missing = [name for name in names if not found.get(name) or not Path(found[name]).exists()]
    if missing:
        pytest.fail("missing tools %s; run `make tools`" % ", ".join(missing), pytrace=False)
    return {name: found[name] for name in names}


# `make test` on a machine without the tools builds them beside the suite and says so in this variable (the build's
# log): the tests marked `toolfree` run first, every other test waits here for the build (docs/testing.md).
BUILD_LOG_VARIABLE = "TURNKEY_TOOLS_BUILD_LOG"
_build_done = False


def building_beside() -> bool:
    return bool(os.environ.get(BUILD_LOG_VARIABLE))


def wait_for_the_build() -> None:
    """Blocks until tools/build, which holds its lock file exclusively while it builds, has finished."""
    global _build_done  # noqa: PLW0603 - once per worker process
    if _build_done or not building_beside():
        return
    lock = TOOLS_ENV.parent / ".lock"
    if lock.exists():
        with open(lock) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                print("\nwaiting for tools/build (log: %s)" % os.environ[BUILD_LOG_VARIABLE], flush=True)
                fcntl.flock(handle, fcntl.LOCK_SH)
    _build_done = True
