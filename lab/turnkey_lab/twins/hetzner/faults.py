"""The Hetzner twin's faults: the base kinds plus three of its own (POST /_lab/faults bodies).

  {"kind": "rate_limit_storm", "count": 5}            the next 5 API requests get 429 rate_limit_exceeded
  {"kind": "action_error", "match": "create_image",    the next matching action ends in status error
   "code": "action_failed", "message": "..."}          (base kind `task_fail` works the same)
  {"kind": "stuck_initializing", "match": "worker"}   the next server whose name matches never leaves
                                                      `initializing` (its create_server action never ends)
Base kinds: `http_5xx` (status 500/502/503/504 -> server_error/bad_gateway/unavailable/timeout), `slow`.
"""

from __future__ import annotations

from ..faults import FaultError, Faults

KINDS = ("rate_limit_storm", "action_error", "stuck_initializing")


class HetznerFaults(Faults):
    def add(self, spec: object) -> dict:
        if not (isinstance(spec, dict) and spec.get("kind") in KINDS):
            try:
                return super().add(spec)
            except FaultError as exc:
                raise FaultError(f"{exc}, or one of {', '.join(KINDS)}") from None
        fault = dict(spec)
        count = fault.get("count", 1)
        if count is not None and (not isinstance(count, int) or count < 0):
            raise FaultError("count must be a non-negative integer or null")
        if not isinstance(fault.get("match", ""), str):
            raise FaultError("match must be a string")
        fault["count"] = count or None
        fault["hits"] = 0
        with self._lock:  # the base's list: take(), list() and clear() then work unchanged
            self._active.append(fault)
        return fault
