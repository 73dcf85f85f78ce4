"""The Hetzner Cloud API twin as a lab component (`/v1` on <net>.0.4:8443)."""

from __future__ import annotations

import os

from ..state import credentials, save_credentials
from ..twins.component import TwinComponent
from ..twins.hetzner import TOKEN_FILE, spec
from .base import Health

RATE_LIMIT_ENV = "TURNKEY_LAB_HETZNER_RATE_LIMIT"


class HetznerTwin(TwinComponent):
    name = "hetzner"
    host = "0.4"
    port = 8443
    module = "turnkey_lab.twins.hetzner"
    api_path = "/v1"
    rate_limit = 3600  # requests per hour, like a Hetzner project; $TURNKEY_LAB_HETZNER_RATE_LIMIT overrides

    @property
    def api_url(self) -> str:
        return self.url + self.api_path

    def extra_args(self) -> list[str]:
        limit = int(os.environ.get(RATE_LIMIT_ENV) or self.rate_limit)
        args = [f"--rate-limit={limit}"]
        document = spec.find()
        if document:
            args.append(f"--spec={document}")
        return args

    def _token(self) -> str | None:
        try:
            return (self.data_dir / TOKEN_FILE).read_text().strip()
        except FileNotFoundError:
            return None

    def judge(self, status: dict) -> Health:
        # Healthy only once the token is in credentials.json, so `lab up` never returns before it is.
        if not self._token() or credentials(self.lab, self.name).get("token") != self._token():
            return Health(False, "API token not yet in credentials.json")
        validation = "on" if status.get("schema_validation") else f"OFF ({status.get('spec_note')})"
        return Health(True, f"hetzner twin, {status.get('profile')} profile, schema validation {validation}")

    def reconcile(self) -> Health:
        """Copy the token the twin made (first start) into credentials.json, as OpenBao's keys are."""
        token = self._token()
        if token and self.lab_health() and credentials(self.lab, self.name).get("token") != token:
            save_credentials(self.lab, self.name, {"token": token})
        return self.health()

    def endpoint(self) -> dict:
        status = self.lab_health() or {}
        return {**super().endpoint(), "api_url": self.api_url,
                "schema_validation": bool(status.get("schema_validation"))}

    def shell_env(self) -> dict[str, str]:
        # What the hcloud CLI and library read; the token is read from the 0600 file when evaluated.
        return {"HCLOUD_ENDPOINT": self.quote(self.api_url), "HCLOUD_TOKEN": self.credential_in_shell("token")}
