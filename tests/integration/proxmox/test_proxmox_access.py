"""Proxmox VE access management (proxmox_role, proxmox_user, proxmox_token) and layer 00's CSI token,
through the real ansible-playbook against a real lab.

One lab on net 127.86 (`lab up --profile fast --components proxmox`), its own state folder, brought down
by `make_lab`. The modules get the lab's admin token through PROXMOX_* environment variables; the CSI role
runs in layer 00's playbook on a copy of the lab inventory pointed at this lab (TURNKEY_LAB_DIR). One test made of
steps, in order; the last is the contract check: the twin refused none of the requests sent.
"""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
import requests
import yaml

from tests.lab.conftest import wait_for
from tests.playbook_runner import copy_inventory, recap, run_playbook, task_results
from tests.store_access import open_store

pytestmark = pytest.mark.lab

NET = "127.86"
PVE = f"https://{NET}.0.3:8006"
ROLE, USER, TOKEN = "TestAudit", "tester@pve", "t1"
CSI_PRIVS = ["Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.Audit", "VM.Audit", "VM.Config.Disk"]
ROTATE_CSI = '{"persistent_secrets_rotate": ["proxmox_csi_token"]}'
CLUSTER_VMIDS = [1500, 1501, 1502, 2000, 2001, 2002]  # the Proxmox nodes of the lab inventory


class Lab:
    def __init__(self, handle, tmp):
        self.handle, self.tmp = handle, tmp
        self.ca = str(handle.root / "pki" / "ca.pem")
        creds = handle.json("credentials.json")["proxmox"]
        self.admin = (creds["token_id"], creds["token_secret"])
        self.env = {"PROXMOX_URL": PVE, "PROXMOX_TOKEN_ID": creds["token_id"],
                    "PROXMOX_TOKEN_SECRET": creds["token_secret"], "PROXMOX_CACERT": self.ca,
                    "TURNKEY_STATE_DIR": str(tmp / "state")}
        self.secrets = [creds["token_secret"], creds["password"]]  # must never be printed
        self.inventory = tmp / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
        self.runs = 0

    def play(self, tasks, check=False, diff=False):
        self.runs += 1
        playbook = self.tmp / f"play{self.runs}.yml"
        playbook.write_text(yaml.safe_dump([{"name": "access", "hosts": "localhost", "gather_facts": False,
                                             "tasks": tasks}], sort_keys=False))
        flags = ["-i", str(self.inventory), *(["--check"] if check else []), *(["--diff"] if diff else [])]
        run = run_playbook(*flags, playbook=str(playbook), env=self.env, json_output=True, timeout=120)
        assert not any(secret in run.stdout + run.stderr for secret in self.secrets)
        return run.returncode, [result for _task, _host, result in task_results(run.stdout)], run.stdout

    def one(self, task, **kwargs):
        code, results, out = self.play([task], **kwargs)
        assert len(results) == 1, out
        return code, results[0]

    def api(self, method, api_path, token=None, **data):
        token_id, secret = token or self.admin
        return requests.request(method, f"{PVE}/api2/json/{api_path}", data=data or None, verify=self.ca, timeout=10,
                                headers={"Authorization": f"PVEAPIToken={token_id}={secret}"})

    def data_post(self, path, **data):
        answer = self.api("POST", path, **data)
        assert answer.status_code == 200, (path, answer.status_code, answer.reason)
        return answer.json()["data"]

    def data(self, path):
        answer = self.api("GET", path)
        assert answer.status_code == 200, (path, answer.status_code, answer.reason)
        return answer.json()["data"]

    def acl_of(self, ugid):
        return sorted((e["path"], e["roleid"], e["propagate"]) for e in self.data("access/acl") if e["ugid"] == ugid)

    def authenticates(self, token_id, secret):
        return self.api("GET", "version", token=(token_id, secret)).status_code == 200


def task(module, **options):
    return {"name": module, f"turnkey.cluster.{module}": options}


def triplet(lab, step, expect_changes):
    """check mode -> changed, apply -> changed, rerun -> not changed; the check and applied results."""
    code, checked = lab.one(step, check=True, diff=True)
    assert code == 0 and checked["changed"] and checked["changes"] == expect_changes, checked
    code, applied = lab.one(step)
    assert code == 0 and applied["changed"] and applied["changes"] == expect_changes, (applied.get("msg"), applied)
    code, rerun = lab.one(step, diff=True)
    assert code == 0 and not rerun["changed"] and rerun["changes"] == [] and "diff" not in rerun, rerun
    return checked, applied


def role_triplet_and_drift(lab):
    step = task("proxmox_role", name=ROLE, privs=["VM.Audit", "Datastore.Audit", "VM.Audit"])
    checked, _applied = triplet(lab, step, ["create"])
    assert checked["diff"] == {"before": {}, "after": {"privs": ["Datastore.Audit", "VM.Audit"]}}
    assert lab.data(f"access/roles/{ROLE}") == {"Datastore.Audit": 1, "VM.Audit": 1}
    # Drift: one privilege added and one removed by hand; the module shows both lists and restores the exact set.
    assert lab.api("PUT", f"access/roles/{ROLE}", privs="VM.Audit,Sys.Audit").status_code == 200
    code, drift = lab.one(step, check=True, diff=True)
    assert code == 0 and drift["changed"] and drift["changes"] == ["update"]
    assert drift["diff"] == {"before": {"privs": ["Sys.Audit", "VM.Audit"]},
                             "after": {"privs": ["Datastore.Audit", "VM.Audit"]}}
    assert (drift["added"], drift["removed"]) == (["Datastore.Audit"], ["Sys.Audit"])
    assert lab.data(f"access/roles/{ROLE}") == {"Sys.Audit": 1, "VM.Audit": 1}  # check mode changed nothing
    code, fixed = lab.one(step)
    assert code == 0 and fixed["changed"] and lab.data(f"access/roles/{ROLE}") == {"Datastore.Audit": 1, "VM.Audit": 1}
    code, rerun = lab.one(step)
    assert code == 0 and not rerun["changed"]
    code, builtin = lab.one(task("proxmox_role", name="PVEAuditor", privs=["VM.Audit"]))
    assert code != 0 and "built-in role" in builtin["msg"]
    code, unknown = lab.one(task("proxmox_role", name="Bad", privs=["VM.Nonsense"]))
    assert code != 0 and unknown["proxmox_error"] == "invalid privilege 'VM.Nonsense'", unknown


def user_triplet_and_acl_drift(lab):
    step = task("proxmox_user", userid=USER, comment="test user", acls=[{"path": "/", "role": ROLE}])
    checked, applied = triplet(lab, step, ["create", "acls"])
    assert checked["diff"]["after"] == {"enable": True, "comment": "test user",
                                        "acls": [{"path": "/", "role": ROLE, "propagate": True}]}
    assert lab.acl_of(USER) == [("/", ROLE, 1)]
    assert lab.data(f"access/users/{USER}")["comment"] == "test user"
    # Drift: another entry, a non-propagating root entry and a new comment; all corrected, shown in the diff.
    lab.api("PUT", "access/acl", path="/vms", roles="PVEAuditor", users=USER).raise_for_status()
    lab.api("PUT", "access/acl", path="/", roles=ROLE, users=USER, propagate=0).raise_for_status()
    lab.api("PUT", f"access/users/{USER}", comment="changed by hand").raise_for_status()
    code, drift = lab.one(step, check=True, diff=True)
    assert code == 0 and drift["changes"] == ["comment", "acls"]
    assert drift["diff"]["before"]["acls"] == [{"path": "/", "role": ROLE, "propagate": False},
                                               {"path": "/vms", "role": "PVEAuditor", "propagate": True}]
    assert drift["diff"]["before"]["comment"] == "changed by hand"
    code, fixed = lab.one(step)
    assert code == 0 and fixed["changed"] and lab.acl_of(USER) == [("/", ROLE, 1)]
    code, rerun = lab.one(step)
    assert code == 0 and not rerun["changed"]
    code, disabled = lab.one(task("proxmox_user", userid=USER, enable=False), diff=True)
    assert code == 0 and disabled["changes"] == ["enable"] and lab.data(f"access/users/{USER}")["enable"] == 0
    code, enabled = lab.one(task("proxmox_user", userid=USER))
    assert code == 0 and enabled["changes"] == ["enable"]


def token_triplet_rotation_and_unknown_secret(lab):
    step = task("proxmox_token", userid=USER, name=TOKEN, privsep=False, comment="test token")
    code, checked = lab.one(step, check=True, diff=True)
    assert code == 0 and checked["changed"] and checked["created"] and "value" not in checked
    assert lab.api("GET", f"access/users/{USER}/token/{TOKEN}").status_code == 500  # nothing made in check mode
    code, applied = lab.one(step)
    assert code == 0 and applied["changed"] and applied["created"] and applied["full_tokenid"] == f"{USER}!{TOKEN}"
    secret = applied["value"]
    assert lab.authenticates(applied["full_tokenid"], secret)
    listed = [{"tokenid": TOKEN, "privsep": 0, "expire": 0, "comment": "test token"}]
    assert lab.data(f"access/users/{USER}/token") == listed
    code, rerun = lab.one(step, diff=True)
    assert code == 0 and not rerun["changed"] and "value" not in rerun and rerun["changes"] == []
    # Settings change in place: the secret stays valid.
    code, comment = lab.one(task("proxmox_token", userid=USER, name=TOKEN, privsep=False, comment="renamed"),
                            diff=True)
    assert code == 0 and comment["changes"] == ["comment"] and "value" not in comment
    assert comment["diff"] == {"before": {"privsep": False, "comment": "test token", "expire": 0},
                               "after": {"privsep": False, "comment": "renamed", "expire": 0}}
    assert lab.authenticates(applied["full_tokenid"], secret)
    # The caller says it lacks the secret: a clear failure naming rotation, never a silent rotation.
    code, refused = lab.one(task("proxmox_token", userid=USER, name=TOKEN, privsep=False, comment="renamed",
                                 secret_known=False))
    assert code != 0 and "rotate=true" in refused["msg"] and "secret is not known" in refused["msg"]
    assert lab.authenticates(applied["full_tokenid"], secret)
    # Rotation when asked: a new secret that works, the old one refused.
    rotate = task("proxmox_token", userid=USER, name=TOKEN, privsep=False, comment="renamed", rotate=True)
    code, planned = lab.one(rotate, check=True)
    assert code == 0 and planned["rotated"] and "value" not in planned
    assert lab.authenticates(applied["full_tokenid"], secret)
    code, rotated = lab.one(rotate)
    assert code == 0 and rotated["changed"] and rotated["rotated"] and rotated["value"] != secret
    assert lab.authenticates(applied["full_tokenid"], rotated["value"])
    assert not lab.authenticates(applied["full_tokenid"], secret)
    lab.token = (applied["full_tokenid"], rotated["value"])


def token_acls_for_a_separated_token(lab):
    step = task("proxmox_token", userid=USER, name="sep", acls=[{"path": "/storage", "role": ROLE}])
    code, made = lab.one(step)
    assert code == 0 and made["changes"] == ["create", "acls"] and made["info"]["privsep"] is True, made.get("msg")
    assert lab.acl_of(f"{USER}!sep") == [("/storage", ROLE, 1)]
    code, rerun = lab.one(step)
    assert code == 0 and not rerun["changed"]
    code, rotated = lab.one(task("proxmox_token", userid=USER, name="sep", rotate=True,
                                 acls=[{"path": "/storage", "role": ROLE}]))
    assert code == 0 and rotated["changes"] == ["rotate", "acls"]  # Proxmox dropped them with the old token
    assert lab.acl_of(f"{USER}!sep") == [("/storage", ROLE, 1)]


def token_without_privilege_fails_with_proxmox_403(lab):
    """tester@pve has only TestAudit (VM.Audit, Datastore.Audit): creating a role needs Sys.Modify on /access."""
    saved = dict(lab.env)
    lab.env.update(PROXMOX_TOKEN_ID=lab.token[0], PROXMOX_TOKEN_SECRET=lab.token[1])
    lab.secrets.append(lab.token[1])
    try:
        code, denied = lab.one(task("proxmox_role", name="NotAllowed", privs=["VM.Audit"]))
    finally:
        lab.env = saved
    assert code != 0 and denied["status"] == 403, denied
    assert denied["proxmox_error"] == "Permission check failed (/access, Sys.Modify)"
    assert denied["msg"].startswith("Proxmox VE: POST access/roles failed: Permission check failed")
    assert ROLE in {role["roleid"] for role in lab.data("access/roles")} and "NotAllowed" not in str(
        lab.data("access/roles"))


def absent_triplets(lab):
    for step, changes in ((task("proxmox_token", userid=USER, name=TOKEN, state="absent"), ["delete"]),
                          (task("proxmox_user", userid=USER, state="absent"), ["delete"]),
                          (task("proxmox_role", name=ROLE, state="absent"), ["delete"])):
        code, checked = lab.one(step, check=True, diff=True)
        assert code == 0 and checked["changed"] and checked["changes"] == changes and checked["diff"]["after"] == {}
        code, applied = lab.one(step)
        assert code == 0 and applied["changed"]
        code, rerun = lab.one(step)
        assert code == 0 and not rerun["changed"], rerun
    assert USER not in {user["userid"] for user in lab.data("access/users")}
    assert lab.acl_of(USER) == [] and lab.acl_of(f"{USER}!sep") == []
    assert not lab.authenticates(*lab.token)


# -- layer 00: the CSI token through playbooks/00-persistent-auth.yml ---------------------------------------
class Site:
    def __init__(self, lab, tmp):
        self.lab = lab
        self.inventory = copy_inventory(tmp, "lab")
        self.env = {"TURNKEY_LAB_DIR": str(lab.handle.root), "TURNKEY_STATE_DIR": str(tmp / "state")}
        self.store = open_store(self.inventory / "secrets", (lab.handle.root / "vault-password").read_text().strip())
        self.file = self.inventory / "secrets" / "proxmox_csi_token.vault.yml"

    def run(self, *args):
        # Layer 00's own playbook: later layers' validation would ask for APIs this lab does not run.
        run = run_playbook("-i", str(self.inventory), *args, env=self.env, playbook="playbooks/00-persistent-auth.yml")
        output = run.stdout + run.stderr
        assert not any(secret in output for secret in self.lab.secrets), "a secret was printed"
        return run

    def stored(self):
        return self.store.read("proxmox_csi_token")

    def digest(self):
        return hashlib.sha256(self.file.read_bytes()).hexdigest()


def csi_token_made_once_and_kept(lab):
    site = Site(lab, lab.tmp / "site")
    lab.site = site
    check = site.run("--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:]
    assert not site.file.exists() and lab.api("GET", "access/users/kubernetes-csi@pve").status_code == 500
    first = site.run()
    assert first.returncode == 0, first.stdout[-4000:]
    stored = site.stored()
    assert stored["type"] == "provided" and stored["version"] == 1
    assert stored["data"]["token_id"] == "kubernetes-csi@pve!csi"
    lab.secrets.append(stored["data"]["secret"])
    assert stored["data"]["secret"] not in first.stdout + first.stderr
    assert lab.authenticates(stored["data"]["token_id"], stored["data"]["secret"])
    assert sorted(lab.data("access/roles/TurnkeyCSI")) == CSI_PRIVS
    # The narrowest paths that work: the CSI storage and the VMs, not /.
    assert lab.acl_of("kubernetes-csi@pve") == [("/storage/local-zfs", "TurnkeyCSI", 1), ("/vms", "TurnkeyCSI", 1)]
    assert lab.data("access/users/kubernetes-csi@pve/token") == [
        {"tokenid": "csi", "privsep": 0, "expire": 0, "comment": "Proxmox CSI plugin (turnkey.cluster)"}]
    # The token really can do what the CSI plugin does, and no more.
    csi = (stored["data"]["token_id"], stored["data"]["secret"])
    assert lab.api("GET", "nodes/pve/storage/local-zfs/content", token=csi).status_code == 200
    assert lab.api("POST", "access/roles", token=csi, roleid="X").status_code == 403
    csi_attaches_on_cluster_vms_only(lab, csi)

    digest = site.digest()
    for args in ((), ("--check", "--diff")):
        again = site.run(*args)
        assert again.returncode == 0, again.stdout[-4000:]
        assert recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-4000:]
        assert site.digest() == digest
        assert lab.authenticates(*csi)
    assert not (site.inventory / "secrets" / ".backup").exists()
    lab.csi = csi


def csi_attaches_on_cluster_vms_only(lab, csi):
    """What the plugin does (a volume on its storage, attached to a node's VM): allowed on a cluster VM,
    refused on any other storage, on the node and on access control."""
    vmid = CLUSTER_VMIDS[0]
    upid = lab.data_post("nodes/pve/qemu", vmid=vmid, name="cp1", memory=512)
    wait_for(lambda: lab.data(f"nodes/pve/tasks/{upid}/status")["status"] == "stopped", 30, 0.05)
    attached = lab.api("PUT", f"nodes/pve/qemu/{vmid}/config", token=csi, scsi1="local-zfs:1")
    assert attached.status_code == 200, attached.reason
    assert lab.data(f"nodes/pve/qemu/{vmid}/config")["scsi1"].startswith("local-zfs:vm-")
    other_storage = lab.api("PUT", f"nodes/pve/qemu/{vmid}/config", token=csi, scsi2="local:1")
    assert other_storage.status_code == 403
    assert other_storage.reason == "Permission check failed (/storage/local, Datastore.AllocateSpace)"
    assert "scsi2" not in lab.data(f"nodes/pve/qemu/{vmid}/config")
    assert lab.api("GET", "nodes/pve/status", token=csi).reason == "Permission check failed (/nodes/pve, Sys.Audit)"
    assert [s["storage"] for s in lab.api("GET", "nodes/pve/storage", token=csi).json()["data"]] == ["local-zfs"]
    upid = lab.api("DELETE", f"nodes/pve/qemu/{vmid}").json()["data"]
    wait_for(lambda: lab.data(f"nodes/pve/tasks/{upid}/status")["status"] == "stopped", 30, 0.05)


def layer00_preflight_stops_a_token_without_access_rights(lab):
    """Layer 00 run with layer 01's least-privilege token: its first task lists what is missing, and no
    user, role, token or stored secret is made."""
    site = Site(lab, lab.tmp / "preflight")
    infra = lab.handle.json("credentials.json")["proxmox"]["infrastructure"]
    lab.secrets.append(infra["token_secret"])
    run = site.run("-e", json.dumps({"proxmox_csi_token_api_token_id": infra["token_id"],
                                     "proxmox_csi_token_api_token_secret": infra["token_secret"]}))
    assert run.returncode != 0
    assert "credentials turnkey-infra@pve!layer01 lack 5 privilege(s) layer 00 (the Proxmox CSI token) needs" \
        in run.stdout, run.stdout[-3000:]
    assert ("Missing: /access: Sys.Modify; /access/groups: User.Modify; /access/realm/pve: Realm.AllocateUser; "
            "/storage/local-zfs: Permissions.Modify; /vms: Permissions.Modify.") in run.stdout
    assert lab.api("GET", "access/users/kubernetes-csi@pve").status_code == 500
    assert "TurnkeyCSI" not in {role["roleid"] for role in lab.data("access/roles")}
    assert not site.file.exists()


def csi_token_rotates_only_when_asked(lab):
    site, old = lab.site, lab.csi
    rotated = site.run("-e", ROTATE_CSI)
    assert rotated.returncode == 0, rotated.stdout[-4000:]
    stored = site.stored()
    new = (stored["data"]["token_id"], stored["data"]["secret"])
    lab.secrets.append(new[1])
    assert stored["version"] == 2 and new[1] != old[1] and new[0] == old[0]
    assert lab.authenticates(*new) and not lab.authenticates(*old)
    backups = list((site.inventory / "secrets" / ".backup").glob("proxmox_csi_token.*.vault.yml"))
    assert len(backups) == 1 and site.store.read_file(backups[0])["data"]["secret"] == old[1]
    again = site.run()
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0
    assert lab.authenticates(*new)
    lab.csi = new


def csi_token_without_its_stored_secret_is_never_rotated_silently(lab):
    site = lab.site
    saved = site.file.read_bytes()
    site.file.unlink()
    try:
        run = site.run()
        assert run.returncode != 0
        assert "secret is not known" in run.stdout and "persistent_secrets_rotate" in run.stdout
        assert lab.authenticates(*lab.csi)  # the token in use was not touched
    finally:
        site.file.write_bytes(saved)
        site.file.chmod(0o600)
    # A token re-created behind the store's back: the stored secret is refused, and the run says how to fix it.
    lab.api("DELETE", "access/users/kubernetes-csi@pve/token/csi").raise_for_status()
    lab.api("POST", "access/users/kubernetes-csi@pve/token/csi", privsep=0,
            comment="Proxmox CSI plugin (turnkey.cluster)").raise_for_status()
    run = site.run()
    assert run.returncode != 0 and "is refused by Proxmox VE (401)" in run.stdout, run.stdout[-3000:]
    fixed = site.run("-e", ROTATE_CSI)
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    stored = site.stored()
    lab.secrets.append(stored["data"]["secret"])
    assert lab.authenticates(stored["data"]["token_id"], stored["data"]["secret"])


def the_twin_refused_nothing(lab):
    answer = requests.get(f"{PVE}/_lab/rejects", verify=lab.ca, timeout=10)
    assert answer.json() == []


STEPS = (role_triplet_and_drift, user_triplet_and_acl_drift, token_triplet_rotation_and_unknown_secret,
         token_acls_for_a_separated_token, token_without_privilege_fails_with_proxmox_403, absent_triplets,
         layer00_preflight_stops_a_token_without_access_rights, csi_token_made_once_and_kept,
         csi_token_rotates_only_when_asked, csi_token_without_its_stored_secret_is_never_rotated_silently,
         the_twin_refused_nothing)


def test_proxmox_access_on_the_lab(make_lab, tmp_path_factory):
    handle = make_lab(NET)
    handle.run("up", "--profile", "fast", "--components", "proxmox")
    lab = Lab(handle, tmp_path_factory.mktemp("pve-access"))
    for step in STEPS:
        step(lab)
