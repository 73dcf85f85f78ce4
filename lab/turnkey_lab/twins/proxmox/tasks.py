"""Proxmox worker tasks (UPIDs, status, log) and the file locks tasks take.

A task runs in a thread; its record (status `running` -> `stopped`, `exitstatus` "OK" or the error, the
log lines) is in the twin's state, so finished tasks survive a restart. Locks behave like Proxmox's
flock()s with a timeout: the loser fails with "can't lock file '<path>' - got timeout".
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from collections.abc import Callable

from ..faults import Faults, Latency
from ..store import Store

KEEP_TASKS = 500


class TaskError(Exception):
    """A task failure; the message becomes the task's exitstatus (and the log's "TASK ERROR: ...")."""


def make_upid(node: str, pid: int, pstart: int, starttime: int, kind: str, ident: str, user: str) -> str:
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{ident}:{user}:"


def parse_upid(upid: str) -> dict | None:
    parts = upid.split(":")
    if len(parts) != 9 or parts[0] != "UPID":
        return None
    try:
        return {"node": parts[1], "pid": int(parts[2], 16), "pstart": int(parts[3], 16),
                "starttime": int(parts[4], 16), "type": parts[5], "id": parts[6], "user": parts[7]}
    except ValueError:
        return None


class Locks:
    """Named locks with Proxmox's timeout message. `lock_timeout` faults make one acquisition fail."""

    def __init__(self, faults: Faults, latency: Latency):
        self.faults = faults
        self.latency = latency
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def hold(self, path: str, timeout_op: str):
        """Context manager for the lock file `path`; waits up to the profile's `timeout_op` seconds."""
        with self._guard:
            lock = self._locks.setdefault(path, threading.Lock())
        return _Held(lock, path, self.latency.seconds(timeout_op) / self.faults.slow_factor(), self.faults)


class _Held:
    def __init__(self, lock: threading.Lock, path: str, timeout: float, faults: Faults):
        self.lock, self.path, self.timeout, self.faults = lock, path, timeout, faults

    def __enter__(self):
        if self.faults.take("lock_timeout", self.path) or not self.lock.acquire(timeout=self.timeout):
            raise TaskError(f"can't lock file '{self.path}' - got timeout")
        return self

    def __exit__(self, *exc):
        self.lock.release()


class TaskLog:
    """What a worker writes to; lines show up in GET .../tasks/{upid}/log while it runs."""

    def __init__(self, store: Store, upid: str):
        self.store = store
        self.upid = upid

    def __call__(self, line: str) -> None:
        with self.store.change() as data:
            data["tasks"][self.upid]["log"].append(line)


class Tasks:
    def __init__(self, store: Store, node: str, faults: Faults, latency: Latency):
        self.store = store
        self.node = node
        self.faults = faults
        self.latency = latency
        self._pids = itertools.count(os.getpid() * 16 % 0x3FFFFF + 1000)
        with store.change() as data:
            data.setdefault("tasks", {})
            for task in data["tasks"].values():
                if task["status"] == "running":  # the twin stopped under it
                    task.update(status="stopped", exitstatus="unexpected status", endtime=int(time.time()))

    def start(self, kind: str, ident: str, user: str, worker: Callable[[TaskLog], None],
              on_error: Callable[[], None] | None = None) -> str:
        now = int(time.time())
        pid = next(self._pids)
        upid = make_upid(self.node, pid, int(time.monotonic() * 100) & 0xFFFFFFFF, now, kind, ident, user)
        record = {"upid": upid, "node": self.node, "pid": pid, "pstart": parse_upid(upid)["pstart"],
                  "starttime": now, "type": kind, "id": ident, "user": user, "status": "running", "log": []}
        with self.store.change() as data:
            data["tasks"][upid] = record
            self._trim(data["tasks"])
        threading.Thread(target=self._run, args=(upid, kind, ident, worker, on_error), daemon=True,
                         name=f"task-{kind}-{ident}").start()
        return upid

    def _run(self, upid: str, kind: str, ident: str, worker, on_error) -> None:
        log = TaskLog(self.store, upid)
        try:
            self.latency.sleep("task_start")
            fault = self.faults.take("task_fail", f"{kind}:{ident}")
            if fault:
                raise TaskError(fault.get("message", f"{kind} failed: injected task failure (lab)"))
            worker(log)
            status = "OK"
        except TaskError as exc:
            status = str(exc).strip()
        except Exception as exc:  # noqa: BLE001 - a twin bug ends the task, not the server
            traceback.print_exc()
            status = f"internal error in the lab twin: {type(exc).__name__}: {exc}"
        if status != "OK" and on_error:
            on_error()
        log("TASK OK" if status == "OK" else f"TASK ERROR: {status}")
        with self.store.change() as data:
            data["tasks"][upid].update(status="stopped", exitstatus=status, endtime=int(time.time()))

    @staticmethod
    def _trim(tasks: dict) -> None:
        finished = sorted((t["starttime"], upid) for upid, t in tasks.items() if t["status"] == "stopped")
        for _, upid in finished[: max(0, len(tasks) - KEEP_TASKS)]:
            del tasks[upid]

    def get(self, upid: str) -> dict | None:
        with self.store.lock:
            task = self.store.data["tasks"].get(upid)
            return dict(task, log=list(task["log"])) if task else None

    def wait(self, upid: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.get(upid)
            if task and task["status"] == "stopped":
                return task
            time.sleep(0.02)
        raise TaskError(f"timeout waiting for task {upid}")
