"""The Proxmox VE API twin (twins/proxmox): node `pve`, schema-validated API, async tasks and locks.

On first start the supervisor asks the twin (POST /_lab/init, answered once) for root@pam's password and
an admin API token, and keeps them in credentials.json, the way OpenBao's unseal keys are kept.
"""

from __future__ import annotations

import sys
import urllib.error

from ..state import LabError, credentials, save_credentials
from ..twins.component import TwinComponent
from ..twins.proxmox.inventory import NODE
from ..twins.proxmox.schema import find_schema_file
from .base import Health


class Proxmox(TwinComponent):
    name = "proxmox"
    host = "0.3"
    port = 8006
    module = "turnkey_lab.twins.proxmox"

    def extra_args(self) -> list[str]:
        schema = find_schema_file()
        return [f"--ca={self.lab.ca_cert}", *([f"--schema={schema}"] if schema else [])]

    def judge(self, status: dict) -> Health:
        if not status.get("initialized"):
            return Health(False, "not initialised (no root credentials yet)")
        validation = "schema validation on" if status.get("schema_validation") else \
            "schema validation OFF (pve-9.1-api-schema.json not found)"
        return Health(True, f"Proxmox VE twin, node {status.get('node')}, {status.get('vms')} VM(s), {validation}")

    def reconcile(self) -> Health:
        status = self.lab_health()
        if status and not status.get("initialized"):
            try:
                answer = self.lab_call("/_lab/init", method="POST", timeout=10)
            except urllib.error.HTTPError as exc:
                raise LabError(f"proxmox: init refused ({exc.code})") from None
            save_credentials(self.lab, self.name, {
                "username": answer["username"], "password": answer["password"], "token_id": answer["token_id"],
                "token_secret": answer["token_secret"],
                "api_token": f"{answer['token_id']}={answer['token_secret']}"})
        elif status and not credentials(self.lab, self.name).get("token_secret"):
            raise LabError("proxmox twin is initialised but credentials.json has nothing for it "
                           "(`lab reset` starts over)")
        return self.health()

    def endpoint(self) -> dict:
        return {**super().endpoint(), "api_url": f"{self.url}/api2/json", "node": NODE,
                "schema_validation": find_schema_file() is not None}

    def shell_env(self) -> dict[str, str]:
        # Secrets are read from the 0600 credentials file when the shell evaluates the line; never printed.
        read = "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])"
        argv = (sys.executable, "-c", read, self.lab.credentials, self.name, "api_token")
        return {"PROXMOX_URL": self.quote(f"{self.url}/api2/json"), "PROXMOX_CACERT": self.quote(self.lab.ca_cert),
                "PROXMOX_API_TOKEN": '"$(' + " ".join(self.quote(a) for a in argv) + ')"'}
