"""The Authentik twin as a lab component (`/api/v3` and OpenID Connect on <net>.0.20:9443)."""

from __future__ import annotations

import json

from ..state import credentials, save_credentials
from ..twins.authentik import BOOTSTRAP_FILE, spec
from ..twins.component import TwinComponent
from .base import Health


class AuthentikTwin(TwinComponent):
    name = "authentik"
    host = "0.20"
    port = 9443
    module = "turnkey_lab.twins.authentik"
    api_path = "/api/v3"
    # The first start parses the 1.7 MB document (cached for later labs) and makes two 4096-bit RSA keys.
    startup_timeout = 120.0

    @property
    def api_url(self) -> str:
        return self.url + self.api_path

    def extra_args(self) -> list[str]:
        document = spec.find()
        return [f"--spec={document}", f"--spec-cache={spec.cache_dir()}"] if document else []

    def _secrets(self) -> dict | None:
        """What credentials.json gets: the bootstrap token (AUTHENTIK_BOOTSTRAP_TOKEN's) and akadmin's login."""
        try:
            made = json.loads((self.data_dir / BOOTSTRAP_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return {"token": made["token"], "username": "akadmin", "password": made["password"]}

    def judge(self, status: dict) -> Health:
        # Healthy only once the secrets are in credentials.json, so `lab up` never returns before they are.
        if not self._secrets() or credentials(self.lab, self.name) != self._secrets():
            return Health(False, "bootstrap token not yet in credentials.json")
        validation = "on" if status.get("schema_validation") else f"OFF ({status.get('spec_note')})"
        return Health(True, f"authentik twin {spec.RELEASE}, {status.get('profile')} profile, "
                            f"schema validation {validation}")

    def reconcile(self) -> Health:
        made = self._secrets()
        if made and self.lab_health() and credentials(self.lab, self.name) != made:
            save_credentials(self.lab, self.name, made)
        return self.health()

    def endpoint(self) -> dict:
        status = self.lab_health() or {}
        return {**super().endpoint(), "api_url": self.api_url, "release": spec.RELEASE,
                "schema_validation": bool(status.get("schema_validation"))}

    def shell_env(self) -> dict[str, str]:
        # What authentik-client users and Terraform's provider read; the token is read from the 0600 file.
        return {"AUTHENTIK_URL": self.quote(self.url), "AUTHENTIK_TOKEN": self.credential_in_shell("token")}
