"""Hetzner's rate limit: a bucket of `limit` requests per hour, refilled continuously (3600/h: 1 per second).

Every request counts, authenticated or not; once empty, 429 `rate_limit_exceeded` until it refills.
"""

from __future__ import annotations

import math
import threading
import time

HOUR = 3600.0


class RateLimit:
    def __init__(self, limit: int = 3600, period: float = HOUR, clock=time.time):
        self.limit = limit
        self.rate = limit / period  # requests regained per second
        self.clock = clock
        self._tokens = float(limit)
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.limit, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> bool:
        """Spend one request; False when the budget is spent (the request is refused, not counted)."""
        with self._lock:
            self._refill(self.clock())
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def headers(self, exhausted: bool = False) -> dict[str, str]:
        with self._lock:
            now = self.clock()
            self._refill(now)
            remaining = 0 if exhausted else math.floor(self._tokens)
            full_at = now + (self.limit - self._tokens) / self.rate
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(math.ceil(full_at))}
