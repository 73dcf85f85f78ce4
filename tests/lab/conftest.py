"""Helpers for the lab tests: run the real `lab` CLI against an isolated state folder and loopback net."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB_SRC = REPO / "lab"
# Tests import the package from the source tree, installed or not.
if str(LAB_SRC) not in sys.path:
    sys.path.insert(0, str(LAB_SRC))


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """The first truthy value of predicate() within timeout, else an AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


class LabHandle:
    """One isolated lab: its own state folder and its own 127.N.0.0/16, so it can run beside a developer's."""

    def __init__(self, root: Path, net: str):
        self.root = root
        self.net = net
        self.outputs: list[str] = []  # every stdout/stderr, to prove no secret is ever printed

    def run(self, *args: str, ok: bool = True, extra_env: dict | None = None):
        """`lab <args>` in a subprocess; with ok=True, a non-zero exit fails the test."""
        env = {**os.environ, "TURNKEY_LAB_DIR": str(self.root), "TURNKEY_LAB_NET": self.net,
               "PYTHONPATH": os.pathsep.join(filter(None, (str(LAB_SRC), os.environ.get("PYTHONPATH"))))}
        env.update(extra_env or {})
        result = subprocess.run([sys.executable, "-m", "turnkey_lab", *args], env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        self.outputs += [result.stdout, result.stderr]
        if ok:
            assert result.returncode == 0, f"lab {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def status(self) -> dict:
        return json.loads(self.run("status", "--json", ok=False).stdout)

    def json(self, name: str) -> dict:
        return json.loads((self.root / name).read_text())

    def processes(self) -> list[int]:
        """Live processes whose command line names the state folder (how `lab down` is judged)."""
        from turnkey_lab import procs
        from turnkey_lab.state import Lab

        return procs.lab_pids(Lab.at(self.root, self.net).owns)

    def kill_everything(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def isolated_labs(tmp_path_factory):
    """A factory for isolated labs; each is brought down (and anything left killed) on leaving."""
    labs: list[LabHandle] = []

    def make(net: str) -> LabHandle:
        handle = LabHandle(tmp_path_factory.mktemp("lab") / "state", net)
        labs.append(handle)
        return handle

    try:
        yield make
    finally:
        for handle in labs:
            handle.run("down", ok=False)
            handle.kill_everything()


@pytest.fixture
def make_lab(tmp_path_factory):
    """Factory for isolated labs, each brought down after the test."""
    with isolated_labs(tmp_path_factory) as make:
        yield make
