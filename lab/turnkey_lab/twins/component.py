"""The Component side of a twin: start `python -m <module>`, probe `/_lab/health` over verified TLS.

A twin's component subclasses `TwinComponent` and sets `module` (plus name/host/port as any component).
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from typing import ClassVar

from ..components.base import Component, Health

PROBE_TIMEOUT = 2


class TwinComponent(Component):
    module: ClassVar[str]  # e.g. "turnkey_lab.twins.image_factory"
    startup_timeout = 30.0

    def command(self) -> list[str]:
        cert, key = self.tls_files
        return [sys.executable, "-m", self.module, f"--data={self.data_dir}", f"--host={self.ip}",
                f"--port={self.port}", f"--cert={cert}", f"--key={key}", f"--profile={self.profile}",
                *self.extra_args()]

    def extra_args(self) -> list[str]:
        return []

    def lab_call(self, path: str, method: str = "GET", body: object = None, timeout: float = PROBE_TIMEOUT):
        """JSON from the twin's /_lab/ API (verified against the lab CA)."""
        context = ssl.create_default_context(cafile=str(self.lab.ca_cert))
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            return json.loads(answer.read())

    def lab_health(self) -> dict | None:
        try:
            return self.lab_call("/_lab/health")
        except (OSError, urllib.error.URLError, ValueError):  # refused, TLS, timeout, not JSON
            return None

    def health(self) -> Health:
        status = self.lab_health()
        if not status:
            return Health(False, "unreachable")
        return self.judge(status)

    def judge(self, status: dict) -> Health:
        """Health from the twin's /_lab/health answer."""
        return Health(True, f"{self.name} twin, {status.get('profile')} profile")
