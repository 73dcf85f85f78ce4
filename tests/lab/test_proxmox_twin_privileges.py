"""The Proxmox VE twin enforces privileges as Proxmox does, beyond the schema's `permissions.check`.

One lab (`lab up --components proxmox`, fast profile) on net 127.95. The admin token makes a user whose
token holds exactly what a test grants (ACLs on /vms, /storage/local-zfs, /sdn/zones/localnetwork/vmbr0);
each step takes one privilege away and expects Proxmox's 403 naming the path and privilege, with nothing
made. Also: GET /access/permissions (own, by path, another's with Sys.Audit, a separated token's
intersection), lists and task logs that show only what the caller may see, user and ACL lists likewise.
"""

from __future__ import annotations

import pytest
import requests

from .conftest import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.95"
API = f"https://{NET}.0.3:8006/api2/json"
USER = "infra@pve"
VM_PRIVS = ["VM.Allocate", "VM.Audit", "VM.Clone", "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk",
            "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.PowerMgmt"]
CREATE = {"name": "n1", "cores": 2, "memory": 2048, "bios": "ovmf", "machine": "q35", "scsihw": "virtio-scsi-single",
          "scsi0": "local-zfs:1,iothread=1", "net0": "virtio,bridge=vmbr0", "serial0": "socket",
          "ipconfig0": "ip=10.0.0.5/24,gw=10.0.0.1", "boot": "order=scsi0", "tags": "talos"}


class Pve:
    def __init__(self, lab):
        self.ca = str(lab.root / "pki" / "ca.pem")
        creds = lab.json("credentials.json")["proxmox"]
        self.admin = f"{creds['token_id']}={creds['token_secret']}"
        self.token = None

    def call(self, method, url, token=None, **data):
        return requests.request(method, API + url, data=data or None, verify=self.ca, timeout=30,
                                headers={"Authorization": f"PVEAPIToken={token or self.admin}"})

    def ok(self, method, url, token=None, **data):
        answer = self.call(method, url, token, **data)
        assert answer.status_code == 200, (method, url, answer.status_code, answer.reason)
        return answer.json()["data"]

    def as_user(self, method, url, **data):
        return self.call(method, url, self.token, **data)

    def grant(self, role_privs: dict[str, list[str]]):
        """The user's ACLs become exactly {path: privileges} (one role per path)."""
        for entry in self.ok("GET", "/access/acl"):
            if entry["ugid"] == USER:
                self.ok("PUT", "/access/acl", path=entry["path"], roles=entry["roleid"], users=USER, delete=1)
        for index, (path, privs) in enumerate(role_privs.items()):
            role = f"T{index}"
            if self.call("GET", f"/access/roles/{role}").status_code == 200:
                self.ok("PUT", f"/access/roles/{role}", privs=",".join(privs))
            else:
                self.ok("POST", "/access/roles", roleid=role, privs=",".join(privs))
            self.ok("PUT", "/access/acl", path=path, roles=role, users=USER)

    def vmids(self):
        return {int(vm["vmid"]) for vm in self.ok("GET", "/nodes/pve/qemu")}

    def wait(self, upid, token=None):
        def stopped():
            status = self.ok("GET", f"/nodes/pve/tasks/{upid}/status", token)
            return status if status["status"] == "stopped" else None
        return wait_for(stopped, 30, 0.02)


def full_grant():
    return {"/vms": VM_PRIVS, "/storage/local-zfs": ["Datastore.AllocateSpace", "Datastore.Audit"],
            "/sdn/zones/localnetwork/vmbr0": ["SDN.Use"]}


def without(grant, path, priv):
    return {p: [x for x in privs if not (p == path and x == priv)] for p, privs in grant.items()}


def setup_user(pve):
    pve.ok("POST", "/access/users", userid=USER)
    token = pve.ok("POST", f"/access/users/{USER}/token/tk", privsep=0)
    pve.token = f"{token['full-tokenid']}={token['value']}"


def permissions_endpoint(pve):
    pve.grant(full_grant())
    mine = pve.as_user("GET", "/access/permissions").json()["data"]
    assert mine["/vms"] == dict.fromkeys(VM_PRIVS, 1)
    assert mine["/storage/local-zfs"] == {"Datastore.AllocateSpace": 1, "Datastore.Audit": 1}
    assert "/" not in mine and "/access" not in mine  # paths without a privilege are left out
    one = pve.as_user("GET", "/access/permissions", path="/vms/123").json()["data"]
    assert one == {"/vms/123": dict.fromkeys(VM_PRIVS, 1)}  # propagated from /vms
    assert pve.as_user("GET", "/access/permissions", path="/nodes/pve").json()["data"] == {}
    # Someone else's permissions need Sys.Audit on /access; root has everything, propagating.
    other = pve.as_user("GET", "/access/permissions", userid="root@pam")
    assert other.status_code == 403 and other.reason == "Permission check failed (/access, Sys.Audit)"
    root = pve.ok("GET", "/access/permissions", path="/")
    assert root["/"]["Permissions.Modify"] == 1 and root["/"]["VM.Allocate"] == 1
    # A non-propagating entry: the privilege is there (flag 0) but not below it.
    pve.ok("POST", "/access/roles", roleid="NodeAudit", privs="Sys.Audit")
    pve.ok("PUT", "/access/acl", path="/nodes", roles="NodeAudit", users=USER, propagate=0)
    assert pve.as_user("GET", "/access/permissions", path="/nodes").json()["data"] == {"/nodes": {"Sys.Audit": 0}}
    assert pve.as_user("GET", "/access/permissions", path="/nodes/pve").json()["data"] == {}
    pve.ok("PUT", "/access/acl", path="/nodes", roles="NodeAudit", users=USER, delete=1)
    # A separated token: the intersection of its user's and its own ACLs.
    sep = pve.ok("POST", f"/access/users/{USER}/token/sep", privsep=1)
    pve.ok("PUT", "/access/acl", path="/vms", roles="PVEAuditor", tokens=sep["full-tokenid"])
    seen = pve.call("GET", "/access/permissions", f"{sep['full-tokenid']}={sep['value']}", path="/vms").json()
    assert seen["data"] == {"/vms": {"VM.Audit": 1}}  # PVEAuditor's other privileges: the user lacks them
    by_owner = pve.as_user("GET", "/access/permissions", userid=sep["full-tokenid"], path="/vms")
    assert by_owner.status_code == 403  # the owner asking through a token is not the owner
    assert pve.ok("GET", "/access/permissions", userid=sep["full-tokenid"], path="/vms") == seen["data"]


def create_checks_every_privilege_in_code(pve):
    """qemu-server's own checks on create: each missing privilege is a 403 naming it, and no VM appears."""
    grant = full_grant()
    cases = [("/storage/local-zfs", "Datastore.AllocateSpace", "/storage/local-zfs, Datastore.AllocateSpace"),
             ("/sdn/zones/localnetwork/vmbr0", "SDN.Use", "/sdn/zones/localnetwork/vmbr0, SDN.Use"),
             ("/vms", "VM.Config.Memory", "/vms/301, VM.Config.Memory"),
             ("/vms", "VM.Config.HWType", "/vms/301, VM.Config.HWType"),
             ("/vms", "VM.Config.Network", "/vms/301, VM.Config.Network"),
             ("/vms", "VM.Config.Disk", "/vms/301, VM.Config.Disk"),
             ("/vms", "VM.Config.Options", "/vms/301, VM.Config.Options"),
             ("/vms", "VM.Allocate", "/vms/301, VM.Allocate")]
    for path, priv, text in cases:
        pve.grant(without(grant, path, priv))
        denied = pve.as_user("POST", "/nodes/pve/qemu", vmid=301, **CREATE)
        assert denied.status_code == 403 and denied.reason == f"Permission check failed ({text})", (priv, denied.reason)
    # ipconfig0 needs VM.Config.Cloudinit or VM.Config.Network: without both it is refused.
    pve.grant({**grant, "/vms": [p for p in VM_PRIVS if p not in ("VM.Config.Cloudinit", "VM.Config.Network")]})
    denied = pve.as_user("POST", "/nodes/pve/qemu", vmid=301, **{k: v for k, v in CREATE.items() if k != "net0"})
    assert denied.reason == "Permission check failed (/vms/301, VM.Config.Cloudinit|VM.Config.Network)"
    # A VLAN tag: SDN.Use on the bridge covers its VLANs (the ACL propagates).
    assert 301 not in pve.vmids()
    pve.grant(grant)
    upid = pve.as_user("POST", "/nodes/pve/qemu", vmid=301, **{**CREATE, "net0": "virtio,bridge=vmbr0,tag=30"})
    assert upid.status_code == 200 and pve.wait(upid.json()["data"], pve.token)["exitstatus"] == "OK"
    # Only root may attach a host's serial device.
    host_serial = pve.as_user("POST", "/nodes/pve/qemu", vmid=302, name="n2", serial0="/dev/ttyS0")
    assert host_serial.status_code == 500
    assert "only root can set 'serial0' config for real devices" in host_serial.reason


def config_resize_and_clone_check_in_code(pve):
    grant = full_grant()
    # The schema asks for any VM.Config.*; qemu-server then checks each option's own privilege.
    pve.grant({**grant, "/vms": [p for p in VM_PRIVS if p != "VM.Config.CPU"]})
    denied = pve.as_user("PUT", "/nodes/pve/qemu/301/config", cores=4)
    assert denied.status_code == 403 and denied.reason == "Permission check failed (/vms/301, VM.Config.CPU)"
    assert pve.as_user("PUT", "/nodes/pve/qemu/301/config", name="renamed").status_code == 200
    pve.grant({**grant, "/vms": [p for p in VM_PRIVS if p != "VM.Config.Cloudinit"]})
    denied = pve.as_user("PUT", "/nodes/pve/qemu/301/config", ide2="local-zfs:cloudinit")
    assert denied.reason == "Permission check failed (/vms/301, VM.Config.Cloudinit)"
    # Growing a disk allocates on its storage.
    pve.grant(without(grant, "/storage/local-zfs", "Datastore.AllocateSpace"))
    denied = pve.as_user("PUT", "/nodes/pve/qemu/301/resize", disk="scsi0", size="2G")
    assert denied.reason == "Permission check failed (/storage/local-zfs, Datastore.AllocateSpace)"
    # A clone copies or links the source's disks onto their storage and keeps its bridges.
    denied = pve.as_user("POST", "/nodes/pve/qemu/301/clone", newid=303, name="c")
    assert denied.reason == "Permission check failed (/storage/local-zfs, Datastore.AllocateSpace)"
    pve.grant(without(grant, "/sdn/zones/localnetwork/vmbr0", "SDN.Use"))
    denied = pve.as_user("POST", "/nodes/pve/qemu/301/clone", newid=303, name="c")
    assert denied.reason == "Permission check failed (/sdn/zones/localnetwork/vmbr0/30, SDN.Use)"
    assert 303 not in pve.vmids()
    pve.grant(grant)
    upid = pve.as_user("POST", "/nodes/pve/qemu/301/clone", newid=303, name="c")
    assert upid.status_code == 200 and pve.wait(upid.json()["data"], pve.token)["exitstatus"] == "OK"


def lists_and_tasks_show_only_what_the_caller_may_see(pve):
    upid = pve.ok("POST", "/nodes/pve/qemu", vmid=400, name="other", memory=512)
    pve.wait(upid)
    pve.grant({"/vms/301": ["VM.Audit"], "/storage/local-zfs": ["Datastore.Audit"]})
    assert {vm["vmid"] for vm in pve.as_user("GET", "/nodes/pve/qemu").json()["data"]} == {301}
    resources = pve.as_user("GET", "/cluster/resources").json()["data"]
    assert {r["id"] for r in resources} == {"qemu/301", "storage/pve/local-zfs"}
    assert [s["storage"] for s in pve.as_user("GET", "/nodes/pve/storage").json()["data"]] == ["local-zfs"]
    # root's task: its log needs Sys.Audit on the node.
    denied = pve.as_user("GET", f"/nodes/pve/tasks/{upid}/status")
    assert denied.status_code == 403 and denied.reason == "Permission check failed (/nodes/pve, Sys.Audit)"
    pve.grant({"/nodes/pve": ["Sys.Audit"]})
    assert pve.as_user("GET", f"/nodes/pve/tasks/{upid}/log").status_code == 200
    # Users: only oneself without User.Modify or Sys.Audit on /access/groups.
    assert [u["userid"] for u in pve.as_user("GET", "/access/users").json()["data"]] == [USER]
    assert len(pve.ok("GET", "/access/users")) > 1
    # ACL entries: only those on paths where the caller may change permissions.
    assert pve.as_user("GET", "/access/acl").json()["data"] == []
    pve.grant({"/storage/local-zfs": ["Datastore.Allocate"]})  # may modify that storage's ACL (check_perm_modify)
    assert {e["path"] for e in pve.as_user("GET", "/access/acl").json()["data"]} == {"/storage/local-zfs"}


def test_proxmox_twin_enforces_privileges(make_lab):
    lab = make_lab(NET)
    lab.run("up", "--profile", "fast", "--components", "proxmox")
    pve = Pve(lab)
    setup_user(pve)
    for step in (permissions_endpoint, create_checks_every_privilege_in_code, config_resize_and_clone_check_in_code,
                 lists_and_tasks_show_only_what_the_caller_may_see):
        step(pve)
