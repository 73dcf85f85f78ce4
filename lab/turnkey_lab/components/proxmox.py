"""The Proxmox VE API twin (twins/proxmox): node `pve`, schema-validated API, async tasks and locks.

On first start the supervisor asks the twin (POST /_lab/init, answered once) for root@pam's password and
an admin API token, and keeps them in credentials.json, the way OpenBao's unseal keys are kept. Then, with
that admin token and through the public API (what an operator does with `pveum`), it makes the
least-privilege identities of docs/proxmox-privileges.md, one per layer, and keeps their tokens there too:
the lab inventory runs the layers with them, not with root.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from ..state import LabError, credentials, save_credentials
from ..twins.component import TwinComponent
from ..twins.proxmox.inventory import NETWORK, NODE
from ..twins.proxmox.schema import find_schema_file
from .base import Health

IMAGE_STORAGE, VM_STORAGE = "local", "local-zfs"  # the lab inventory's proxmox.image_storage / vm_storage
BRIDGE = next(n["iface"] for n in NETWORK if n["type"] == "bridge")
# Per layer: the user, its token and {role: (privileges, ACL paths)}, exactly as docs/proxmox-privileges.md
# says (tests/lab/test_lab_proxmox_identities.py holds them equal to the roles' preflight lists).
LEAST_PRIVILEGE = {
    "infrastructure": ("turnkey-infra@pve", "layer01", {
        "TurnkeyVMs": (["VM.Allocate", "VM.Audit", "VM.Clone", "VM.Config.CPU", "VM.Config.Cloudinit",
                        "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network",
                        "VM.Config.Options", "VM.GuestAgent.Audit", "VM.PowerMgmt"], ["/vms"]),
        "TurnkeyVMDisks": (["Datastore.AllocateSpace"], [f"/storage/{VM_STORAGE}"]),
        "TurnkeyImages": (["Datastore.AllocateTemplate", "Datastore.Audit"], [f"/storage/{IMAGE_STORAGE}"]),
        "TurnkeyDownload": (["Sys.AccessNetwork"], [f"/nodes/{NODE}"]),
        "TurnkeyBridge": (["SDN.Use"], [f"/sdn/zones/localnetwork/{BRIDGE}"]),
    }),
    "persistent_auth": ("turnkey-access@pve", "layer00", {
        "TurnkeyUserAdmin": (["Realm.AllocateUser", "Sys.Modify", "User.Modify"], ["/access"]),
        "TurnkeyACLAdmin": (["Permissions.Modify"], ["/vms", f"/storage/{VM_STORAGE}"]),
    }),
}


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
        creds = credentials(self.lab, self.name)
        if not all(creds.get(layer, {}).get("token_secret") for layer in LEAST_PRIVILEGE):
            return Health(False, "the layers' least-privilege tokens are not made yet")
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
        if status:
            self._least_privilege_tokens()
        return self.health()

    def _api(self, method: str, url: str, admin: dict, **params) -> object:
        """One call of the public API with the admin token (form-encoded, as pveum's client sends)."""
        context = ssl.create_default_context(cafile=str(self.lab.ca_cert))
        data = urllib.parse.urlencode(params).encode() if params else None
        request = urllib.request.Request(f"{self.url}/api2/json{url}", data=data, method=method, headers={
            "Authorization": f"PVEAPIToken={admin['api_token']}",
            "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return json.loads(answer.read())["data"]

    def _least_privilege_tokens(self) -> None:
        """Each layer's user, roles, ACLs and token (privilege separation off: the token has what its user
        has), made once: on the first start, or the first after a credentials.json without them."""
        creds = credentials(self.lab, self.name)
        if all(creds.get(layer, {}).get("token_secret") for layer in LEAST_PRIVILEGE):
            return  # reconcile() runs every few seconds: no API call then
        roles = {r["roleid"] for r in self._api("GET", "/access/roles", creds)}
        users = {u["userid"] for u in self._api("GET", "/access/users", creds)}
        for layer, (user, token, grants) in LEAST_PRIVILEGE.items():
            if user not in users:
                self._api("POST", "/access/users", creds, userid=user, comment=f"turnkey.cluster layer {layer}")
            for role, (privs, paths) in grants.items():
                if role in roles:
                    self._api("PUT", f"/access/roles/{role}", creds, privs=",".join(privs))
                else:
                    self._api("POST", "/access/roles", creds, roleid=role, privs=",".join(privs))
                for path in paths:
                    self._api("PUT", "/access/acl", creds, path=path, roles=role, users=user)
            if creds.get(layer, {}).get("token_secret"):
                continue
            url = f"/access/users/{user}/token/{token}"
            if any(t["tokenid"] == token for t in self._api("GET", f"/access/users/{user}/token", creds)):
                self._api("DELETE", url, creds)  # its secret is lost (a credentials.json from before)
            answer = self._api("POST", url, creds, privsep=0, comment=f"turnkey.cluster layer {layer}")
            creds[layer] = {"token_id": answer["full-tokenid"], "token_secret": answer["value"]}
            save_credentials(self.lab, self.name, creds)

    def endpoint(self) -> dict:
        return {**super().endpoint(), "api_url": f"{self.url}/api2/json", "node": NODE,
                "schema_validation": find_schema_file() is not None}

    def shell_env(self) -> dict[str, str]:
        # Secrets are read from the 0600 credentials file when the shell evaluates the line; never printed.
        return {"PROXMOX_URL": self.quote(f"{self.url}/api2/json"), "PROXMOX_CACERT": self.quote(self.lab.ca_cert),
                "PROXMOX_API_TOKEN": self.credential_in_shell("api_token")}
