"""Pid files and /proc: is a pid still one of *this* lab's processes, and stopping them for good."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

Owner = Callable[[list[str]], bool]


def cmdline(pid: int) -> list[str] | None:
    """argv of a live process; None if gone or a zombie (a zombie's cmdline is empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]] or None


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


def live_pid(path: Path, owns: Owner) -> int | None:
    """The pid in `path` if that process still runs and is ours (pids get reused, so check argv)."""
    pid = read_pid(path)
    if pid is None:
        return None
    argv = cmdline(pid)
    return pid if argv and owns(argv) else None


def lab_pids(owns: Owner) -> list[int]:
    """Every live process whose command line belongs to the lab (scans /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = cmdline(int(entry.name))
            if argv and owns(argv):
                found.append(int(entry.name))
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    # Our own children must be waited for, or they linger as zombies.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until the pids are gone; returns those still alive at the deadline."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending:
        for pid in pending:
            _reap(pid)
        pending = [pid for pid in pending if cmdline(pid) is not None]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return pending


def terminate(pids: Iterable[int], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after `timeout` seconds."""
    pids = list(pids)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    leftover = wait_gone(pids, timeout)
    for pid in leftover:
        _signal(pid, signal.SIGKILL)
    wait_gone(leftover, 5.0)
