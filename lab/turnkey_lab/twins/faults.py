"""Fault injection and latency for twins, driven through `POST /_lab/faults` / `DELETE /_lab/faults`.

Kinds (JSON body of `POST /_lab/faults`; `match` is an optional substring, `count` how many hits):
  {"kind": "http_5xx", "count": 3, "status": 503, "match": "/qemu"}  the next matching requests fail
  {"kind": "task_fail", "match": "download"}   the next matching async task (type or id) ends in an error
  {"kind": "lock_timeout", "match": "clone"}   the next matching lock acquisition times out at once
  {"kind": "slow", "factor": 10}                every delay x factor, until cleared (no count)
  {"kind": "http_5xx_after", "status": 504, "match": "/clone"}  the next matching request is carried out,
                                                then its answer is lost: the client gets the 5xx (a timeout
                                                or a gateway error after the server acted: an ambiguous error)
  {"kind": "agent_extra_address", "match": "201", "address": "192.168.1.77"}  (Proxmox) the guest agent of
                                                the matching VM id also reports this address on eth0 (a DHCP
                                                lease beside the static address); `count: 0` keeps it
`count` defaults to 1 (0 or null: until `DELETE /_lab/faults`). Twins ask `take(kind, subject)`.
"""

from __future__ import annotations

import threading
import time

KINDS = ("http_5xx", "task_fail", "lock_timeout", "slow", "http_5xx_after", "agent_extra_address")


class FaultError(ValueError):
    pass


class Faults:
    # A twin with kinds of its own subclasses and extends this; take(), list() and clear() serve them all.
    KINDS: tuple[str, ...] = KINDS

    def __init__(self):
        self._lock = threading.Lock()
        self._active: list[dict] = []

    def add(self, spec: object) -> dict:
        if not isinstance(spec, dict) or spec.get("kind") not in self.KINDS:
            raise FaultError(f"a fault is a JSON object with kind one of {', '.join(self.KINDS)}")
        fault = dict(spec)
        if fault["kind"] == "slow":
            factor = fault.get("factor", 10)
            if not isinstance(factor, int | float) or factor <= 0:
                raise FaultError("slow: factor must be a positive number")
            fault["factor"] = float(factor)
            fault["count"] = None
        else:
            count = fault.get("count", 1)
            if count is not None and (not isinstance(count, int) or count < 0):
                raise FaultError("count must be a non-negative integer or null")
            fault["count"] = count or None  # None: until cleared
        if "match" in fault and not isinstance(fault["match"], str):
            raise FaultError("match must be a string")
        fault["hits"] = 0
        with self._lock:
            self._active.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._active.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [dict(f) for f in self._active]

    def take(self, kind: str, subject: str = "") -> dict | None:
        """The first active fault of `kind` matching `subject`, counted as used (removed when spent)."""
        with self._lock:
            for fault in self._active:
                if fault["kind"] == kind and fault.get("match", "") in subject:
                    fault["hits"] += 1
                    if fault["count"] is not None and fault["hits"] >= fault["count"]:
                        self._active.remove(fault)
                    return dict(fault)
        return None

    def slow_factor(self) -> float:
        with self._lock:
            factors = [f["factor"] for f in self._active if f["kind"] == "slow"]
        return max(factors, default=1.0)


class Latency:
    """Per-operation delays: `table` maps an operation to (fast, realistic) seconds.

    The profile picks the column; a `slow` fault multiplies it. Delays that depend on size (downloads)
    are given per MiB by the twin and multiplied here.
    """

    def __init__(self, profile: str, table: dict[str, tuple[float, float]], faults: Faults):
        self.profile = profile
        self.table = table
        self.faults = faults

    def seconds(self, operation: str, units: float = 1.0) -> float:
        fast, realistic = self.table.get(operation, (0.0, 0.0))
        base = realistic if self.profile == "realistic" else fast
        return base * units * self.faults.slow_factor()

    def sleep(self, operation: str, units: float = 1.0) -> None:
        delay = self.seconds(operation, units)
        if delay > 0:
            time.sleep(delay)
