"""Layer 01 on the lab runs with the lab's least-privilege token, and stops at its preflight when one
privilege is missing, naming it, with nothing made.

One lab on net 127.96 (`lab up --profile fast --components proxmox,image_factory`) and a copy of the lab
inventory without its Hetzner worker. The lab made `turnkey-infra@pve!layer01` with exactly the privileges
of docs/proxmox-privileges.md; the inventory uses it. Steps, in order: the token is not root and has
only those privileges; one privilege taken away (VM.Clone on the template's path): the run and the check
run fail at the first task listing it and nothing is created or downloaded; given back: the layer builds
and every task Proxmox ran was the least-privilege token's; a rerun changes nothing. Layer 00 runs once
first (with its own token), as layer 01 needs its secrets.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.playbook_runner import copy_inventory, lab_env, recap, run_playbook

pytestmark = pytest.mark.lab

NET = "127.96"
PVE = f"https://{NET}.0.3:8006/api2/json"
TOKEN = "turnkey-infra@pve!layer01"
VM_ROLE = "TurnkeyVMs"


class Site:
    def __init__(self, lab, tmp_path):
        self.lab = lab
        self.ca = str(lab.root / "pki" / "ca.pem")
        self.inventory = copy_inventory(tmp_path, "lab", {"remove_hosts": ["hcloud-worker1"]})
        self.env = {**lab_env(tmp_path), "TURNKEY_LAB_DIR": str(lab.root)}
        creds = lab.json("credentials.json")["proxmox"]
        self.admin = f"{creds['token_id']}={creds['token_secret']}"
        self.infra = creds["infrastructure"]
        self.secrets = [creds["token_secret"], creds["password"], self.infra["token_secret"],
                        creds["persistent_auth"]["token_secret"]]

    def run(self, *args, tags="infrastructure"):
        # No Talos node twin in this lab: the Talos cluster steps are tests/e2e's.
        result = run_playbook("-i", str(self.inventory), "--tags", tags, "--skip-tags", "talos_cluster",
                              *args, playbook="site.yml", env=self.env, timeout=900)
        assert not any(secret in result.stdout + result.stderr for secret in self.secrets)
        return result

    def api(self, method, path, token=None, **data):
        answer = requests.request(method, f"{PVE}/{path}", data=data or None, verify=self.ca, timeout=10,
                                  headers={"Authorization": f"PVEAPIToken={token or self.admin}"})
        assert answer.status_code == 200, (method, path, answer.status_code, answer.reason)
        return answer.json()["data"]

    def posts(self):
        log = requests.get(f"https://{NET}.0.3:8006/_lab/requests", verify=self.ca, timeout=10).json()
        return [r for r in log if r["method"] in ("POST", "PUT", "DELETE")]

    def task_users(self):
        state = json.loads((self.lab.root / "components" / "proxmox" / "state.json").read_text())
        return {task["user"] for task in state["tasks"].values()}


@pytest.fixture(scope="class")
def site(make_class_lab, tmp_path_factory):
    lab = make_class_lab(NET)
    lab.run("up", "--profile", "fast", "--components", "proxmox,image_factory")
    site = Site(lab, tmp_path_factory.mktemp("preflight"))
    layer00 = site.run(tags="persistent_auth")  # layer 01 renders Talos configs from layer 00's secrets
    assert layer00.returncode == 0, layer00.stdout[-4000:]
    return site


@pytest.mark.incremental
@pytest.mark.xdist_group("proxmox_preflight")
class TestLayer01WithTheLeastPrivilegeToken:
    def test_the_lab_token_is_least_privilege(self, site):
        token = f"{site.infra['token_id']}={site.infra['token_secret']}"
        assert site.infra["token_id"] == TOKEN
        mine = site.api("GET", "access/permissions", token)
        assert "/" not in mine and "/access" not in mine  # nothing at the root, nothing on access control
        # Proxmox lists every path an ACL names: /vms/<id> are the CSI user's (layer 00), below /vms.
        assert {path for path in mine if not path.startswith("/vms/")} == {
            "/vms", "/storage/local-zfs", "/storage/local", "/nodes/pve", "/sdn/zones/localnetwork/vmbr0"}
        assert mine["/storage/local-zfs"] == {"Datastore.AllocateSpace": 1}
        assert mine["/nodes/pve"] == {"Sys.AccessNetwork": 1}

    def test_a_missing_privilege_stops_the_layer_before_anything(self, site):
        privs = sorted(site.api("GET", f"access/roles/{VM_ROLE}"))
        site.api("PUT", f"access/roles/{VM_ROLE}", privs=",".join(p for p in privs if p != "VM.Clone"))
        try:
            before = len(site.posts())
            for args in (("--check",), ()):
                run = site.run(*args)
                assert run.returncode != 0
                out = run.stdout
                assert "The Proxmox VE credentials have every privilege layer 01 uses" in out, out[-4000:]
                assert f"credentials {TOKEN} lack 1 privilege(s) layer 01 (build) needs" in out, out[-3000:]
                assert "Missing: /vms/9000: VM.Clone." in out
                assert "Schematic of the Talos image" not in out  # the first task stopped the play
            assert site.posts()[before:] == []  # nothing created, changed or downloaded
            assert site.api("GET", "nodes/pve/qemu") == []
        finally:
            site.api("PUT", f"access/roles/{VM_ROLE}", privs=",".join(privs))

    def test_the_layer_builds_with_the_least_privilege_token(self, site):
        run = site.run()
        assert run.returncode == 0, run.stdout[-6000:]
        vmids = {vm["vmid"] for vm in site.api("GET", "nodes/pve/qemu")}
        assert vmids == {1500, 1501, 1502, 2000, 2001, 2002, 9000}
        assert site.task_users() == {TOKEN}  # every download, create, clone and start ran as that token
        rerun = site.run()
        assert rerun.returncode == 0
        assert all(counts["changed"] == 0 for counts in recap(rerun.stdout).values()), rerun.stdout[-3000:]
