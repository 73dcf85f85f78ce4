"""The one detached process that runs the lab's components.

It starts every component's process, restarts one that exits (bounded exponential backoff, counted),
keeps calling each component's reconcile() (e.g. unseal OpenBao again after a restart), publishes
run/status.json, and on SIGTERM stops its children (SIGTERM, then SIGKILL) and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import procs
from .components import Component, Health
from .state import Lab, LabError, write_json

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0
STABLE_AFTER = 30.0  # a process that ran this long before exiting starts the backoff over
STOP_TIMEOUT = 10.0  # per child, SIGTERM -> SIGKILL
TICK = 0.1
CHECK_HEALTHY = 5.0  # seconds between reconcile() calls once healthy
CHECK_UNHEALTHY = 0.1

log = logging.getLogger("turnkey_lab.supervisor")


def is_supervisor(lab: Lab, argv: list[str]) -> bool:
    return "_supervise" in argv and lab.owns(argv)


def spawn(lab: Lab, profile: str, names: list[str]) -> subprocess.Popen:
    """Start a detached supervisor (own session: survives the shell, gets no terminal signals)."""
    command = [sys.executable, "-m", "turnkey_lab", "--state-dir", str(lab.root), "--net", lab.net,
               "_supervise", "--profile", profile, "--components", ",".join(names)]
    env = dict(os.environ)
    # The package need not be installed: the child imports it from where this copy lives.
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    lab.logs.mkdir(parents=True, exist_ok=True)
    with open(lab.supervisor_log, "ab") as out:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=lab.root,
                                env=env, start_new_session=True)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies, even by SIGKILL (no orphans)."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Child:
    """Bookkeeping for one component's process."""

    def __init__(self, component: Component):
        self.component = component
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.failures = 0  # exits in a row, drives the backoff
        self.started = 0.0
        self.next_start = 0.0
        self.next_check = 0.0
        self.health = Health(False, "not started")
        self.last_exit: int | None = None

    def snapshot(self) -> dict:
        return {"pid": self.proc.pid if self.proc else None, "healthy": self.health.healthy,
                "detail": self.health.detail, "restarts": self.restarts, "last_exit": self.last_exit}


class Supervisor:
    def __init__(self, lab: Lab, profile: str, components: list[Component]):
        self.lab = lab
        self.profile = profile
        self.children = [Child(c) for c in components]
        self.stopping = False
        self._published: dict | None = None

    def _on_signal(self, signum, _frame) -> None:
        log.info("got %s, stopping", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        other = procs.live_pid(self.lab.supervisor_pid, lambda argv: is_supervisor(self.lab, argv))
        if other and other != os.getpid():
            log.error("another supervisor (pid %d) already runs this lab", other)
            return 1
        procs.write_pid(self.lab.supervisor_pid, os.getpid())
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        log.info("supervisor pid %d, profile %s, net %s.0.0/16, components %s", os.getpid(), self.profile,
                 self.lab.net, ", ".join(c.component.name for c in self.children))
        try:
            while not self.stopping:
                for child in self.children:
                    self._tick(child)
                self._publish()
                time.sleep(TICK)
        finally:
            self._stop_all()
            for path in (self.lab.status, self.lab.supervisor_pid):
                path.unlink(missing_ok=True)
            log.info("supervisor stopped")
        return 0

    def _tick(self, child: Child) -> None:
        now = time.monotonic()
        name = child.component.name
        if child.proc is None:
            if now >= child.next_start:
                self._start(child, now)
            return
        code = child.proc.poll()
        if code is not None:
            child.proc = None
            child.component.pid_file.unlink(missing_ok=True)
            self._crashed(child, now, f"exited with code {code}", code)
            return
        if now >= child.next_check:
            try:
                health = child.component.reconcile()
            # Whatever a component raises (a bug, a refused request) must not take the supervisor down.
            except Exception as exc:  # noqa: BLE001
                health = Health(False, f"{type(exc).__name__}: {exc}"[:300])
            if health != child.health:
                log.log(logging.INFO if health.healthy else logging.WARNING, "%s %s: %s", name,
                        "healthy" if health.healthy else "not healthy", health.detail)
            child.health = health
            child.next_check = now + (CHECK_HEALTHY if health.healthy else CHECK_UNHEALTHY)

    def _start(self, child: Child, now: float) -> None:
        component = child.component
        component.log_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(component.log_file, "ab") as out:
                child.proc = subprocess.Popen(component.command(), stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT, cwd=component.cwd,
                                              env=component.environment(),
                                              # The supervisor is single-threaded, so preexec_fn is safe.
                                              preexec_fn=_die_with_parent)  # noqa: PLW1509
        except (OSError, subprocess.SubprocessError, LabError) as exc:  # e.g. no binary: back off, as a crash
            self._crashed(child, now, f"could not start: {exc}", None)
            return
        procs.write_pid(component.pid_file, child.proc.pid)
        child.started = now
        child.next_check = now
        child.health = Health(False, "starting")
        log.info("%s started, pid %d", component.name, child.proc.pid)

    def _crashed(self, child: Child, now: float, why: str, code: int | None) -> None:
        ran = now - child.started if child.started else 0.0
        child.failures = 1 if ran >= STABLE_AFTER else child.failures + 1
        delay = min(BACKOFF_FIRST * 2 ** (child.failures - 1), BACKOFF_MAX)
        child.restarts += 1
        child.last_exit = code
        child.next_start = now + delay
        child.health = Health(False, why)
        log.warning("%s %s after %.1f s; restart %d in %.1f s",
                    child.component.name, why, ran, child.restarts, delay)

    def _publish(self) -> None:
        status = {"pid": os.getpid(), "profile": self.profile, "net": self.lab.net,
                  "components": {c.component.name: c.snapshot() for c in self.children}}
        if status != self._published:
            write_json(self.lab.status, status)
            self._published = status

    def _stop_all(self) -> None:
        running = [c for c in self.children if c.proc is not None]
        for child in running:
            log.info("stopping %s pid %d", child.component.name, child.proc.pid)
        procs.terminate([c.proc.pid for c in running], STOP_TIMEOUT)
        for child in running:
            child.proc.wait()
            child.component.pid_file.unlink(missing_ok=True)
            child.proc = None


def main(lab: Lab, profile: str, components: list[Component]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    return Supervisor(lab, profile, components).run()
