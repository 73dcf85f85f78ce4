"""Layer 01 on Proxmox VE: the real site.yml brings up the lab inventory's six Proxmox nodes on a lab twin.

One lab on net 127.88 (`lab up --profile fast --components proxmox,image_factory`) and a copy of the lab
inventory without its Hetzner worker (tests/integration/hetzner covers that provider). One class of
ordered steps on that lab (incremental, on one worker): check mode, the build (one download, one template,
six linked clones), the rerun (changed=0), drift shown as a diff and corrected on one node only, the
teardown (layer 00's CSI token survives it unchanged), injected faults that recover or fail naming the node,
and the contract check (no request refused).
"""

from __future__ import annotations

import hashlib
import re

import pytest
import requests
import yaml

from tests.lab.conftest import wait_for
from tests.playbook_runner import copy_inventory, lab_env, recap, run_playbook
from tests.store_access import open_store

pytestmark = pytest.mark.lab

NET = "127.88"
PVE = f"https://{NET}.0.3:8006"
FACTORY = f"https://{NET}.0.6:8443"
NODES = {"cp1": 1500, "cp2": 1501, "cp3": 1502, "worker1": 2000, "worker2": 2001, "worker3": 2002}
TEMPLATE = 9000


class Site:
    def __init__(self, lab, tmp_path):
        self.lab, self.tmp = lab, tmp_path
        self.ca = str(lab.root / "pki" / "ca.pem")
        self.inventory = copy_inventory(tmp_path, "lab", {"remove_hosts": ["hcloud-worker1"]})
        self.env = {**lab_env(tmp_path), "TURNKEY_LAB_DIR": str(lab.root)}
        creds = lab.json("credentials.json")["proxmox"]
        self.secrets = (creds["token_secret"], creds["password"])
        self.auth = {"Authorization": "PVEAPIToken=%s=%s" % (creds["token_id"], creds["token_secret"])}
        self.csi_before = None  # the CSI token before the first teardown, for the steps after it

    def csi_token(self):
        """The CSI token layer 00 keeps in the store, and whether Proxmox still accepts it."""
        file = self.inventory / "secrets" / "proxmox_csi_token.vault.yml"
        password = (self.lab.root / "vault-password").read_text().strip()  # the lab inventory's store password
        stored = open_store(self.inventory / "secrets", password).read("proxmox_csi_token")["data"]
        answer = requests.get(f"{PVE}/api2/json/version", verify=self.ca, timeout=10, headers={
            "Authorization": "PVEAPIToken=%s=%s" % (stored["token_id"], stored["secret"])})
        return hashlib.sha256(file.read_bytes()).hexdigest(), answer.status_code

    def run(self, *args, playbook="site.yml"):
        # this lab has no Talos node twin: the Talos cluster steps and the layers on the cluster (02, 03, verify)
        # are tests/e2e's
        skip = ("--skip-tags", "needs_cluster") if playbook == "site.yml" else ()
        result = run_playbook("-i", str(self.inventory), *skip, *args, playbook=playbook, env=self.env, timeout=900)
        output = result.stdout + result.stderr
        assert not any(secret in output for secret in self.secrets)  # no_log holds, even in failures
        return result

    def get(self, path):
        answer = requests.get(f"{PVE}/api2/json/{path}", headers=self.auth, verify=self.ca, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]

    def lab_get(self, base, what):
        return requests.get(f"{base}/_lab/{what}", verify=self.ca, timeout=10).json()

    def fault(self, **fault):
        requests.post(f"{PVE}/_lab/faults", json=fault, verify=self.ca, timeout=10).raise_for_status()

    def vms(self):
        return {vm["vmid"]: vm for vm in self.get("nodes/pve/qemu")}

    def wait_vm(self, vmid, done):
        """Until done(the VM's list entry, or None) is true (a create or destroy task has finished)."""
        wait_for(lambda: done(self.vms().get(vmid)), 30)

    def spec_override(self, key, **changes):
        """An extra-vars file: the lab inventory's `key` of the cluster spec with these changes."""
        spec = yaml.safe_load((self.inventory / "group_vars" / "all" / "cluster.yml").read_text())
        path = self.tmp / f"override-{key}.yml"
        path.write_text(yaml.safe_dump({key: {**spec[key], **changes}}))
        return path

    def requests_since(self, start, method, pattern):
        return [r for r in self.lab_get(PVE, "requests")[start:]
                if r["method"] == method and re.search(pattern, r["path"])]


def changed_hosts(stdout):
    return {host for host, counts in recap(stdout).items() if counts["changed"]}


@pytest.fixture(scope="class")
def site(make_class_lab, tmp_path_factory):
    lab = make_class_lab(NET)
    lab.run("up", "--profile", "fast", "--components", "proxmox,image_factory")
    return Site(lab, tmp_path_factory.mktemp("site"))


@pytest.mark.incremental
class TestLayer01ProxmoxNodesOnTheLab:
    def test_check_mode_creates_nothing(self, site):
        run = site.run("--tags", "infrastructure", "--check", "--diff")
        assert run.returncode == 0, run.stdout[-4000:]
        assert changed_hosts(run.stdout) >= set(NODES), run.stdout[-3000:]
        assert site.vms() == {}
        assert site.get("nodes/pve/storage/local/content?content=import") == []

    def test_build_then_rerun_changes_nothing(self, site):
        run = site.run()
        assert run.returncode == 0, run.stdout[-6000:]
        assert changed_hosts(run.stdout) >= set(NODES)
        downloads = site.requests_since(0, "POST", r"/storage/local/download-url$")
        assert len(downloads) == 1  # one image for the whole cluster
        vms = site.vms()
        assert set(vms) == set(NODES.values()) | {TEMPLATE}
        assert vms[TEMPLATE]["template"] == 1
        assert len([vm for vm in vms.values() if vm.get("template")]) == 1  # one template per storage
        for name, vmid in NODES.items():
            assert vms[vmid]["status"] == "running" and vms[vmid]["name"] == name
            config = site.get(f"nodes/pve/qemu/{vmid}/config")
            assert config["scsi0"].startswith(f"local-zfs:base-{TEMPLATE}-disk-0/vm-{vmid}-disk-"), config["scsi0"]
            ip = "127.2.%d.%d" % ((1, vmid - 1499) if vmid < 2000 else (2, vmid - 1999))
            assert config["ipconfig0"] == f"ip={ip}/16,gw=127.2.0.1"
            assert config["ide2"].startswith("local-zfs:vm-%d-cloudinit" % vmid)
            interfaces = site.get(f"nodes/pve/qemu/{vmid}/agent/network-get-interfaces")["result"]
            assert ip in [a["ip-address"] for i in interfaces for a in i["ip-addresses"]]
        clones = site.requests_since(0, "POST", rf"/qemu/{TEMPLATE}/clone$")
        assert len(clones) == len(NODES)

        start = len(site.lab_get(PVE, "requests"))
        rerun = site.run()
        assert rerun.returncode == 0, rerun.stdout[-4000:]
        assert changed_hosts(rerun.stdout) == set(), rerun.stdout[-3000:]
        assert site.requests_since(start, "POST", ".") == []  # nothing created, started or downloaded again
        check = site.run("--check", "--diff")
        assert check.returncode == 0 and changed_hosts(check.stdout) == set()

    def test_drift_is_a_diff_and_is_corrected_on_that_node_only(self, site):
        worker1 = site.inventory / "host_vars" / "worker1.yml"
        worker1.parent.mkdir(exist_ok=True)
        worker1.write_text("node_cores: 6\n")
        check = site.run("--tags", "infrastructure", "--check", "--diff")
        assert check.returncode == 0
        assert changed_hosts(check.stdout) == {"worker1"}
        assert re.search(r'-\s+"cores": 4,?\n\+\s+"cores": 6', check.stdout) or \
            re.search(r"-\s*cores: 4\n\+\s*cores: 6", check.stdout), check.stdout[-3000:]
        assert site.get("nodes/pve/qemu/2000/config")["cores"] == 4
        apply = site.run("--tags", "infrastructure")
        assert apply.returncode == 0 and changed_hosts(apply.stdout) == {"worker1"}
        assert site.get("nodes/pve/qemu/2000/config")["cores"] == 6

    def test_a_new_talos_version_is_refused_by_the_old_template(self, site):
        """Another Talos version is another image: the template of the old one refuses it, naming both, and
        nothing is cloned from it."""
        start = len(site.lab_get(PVE, "requests"))
        run = site.run("--tags", "infrastructure", "-e", "@%s" % site.spec_override(
            "cluster_versions", talos="v1.13.8"))
        assert run.returncode != 0
        assert re.search(r"VM 9000 \(template\) holds the image local:import/talos-\w+-v1\.13\.9-nocloud-amd64"
                         r"\.qcow2, but the image asked for is local:import/talos-\w+-v1\.13\.8", run.stdout), \
            run.stdout[-3000:]
        assert site.requests_since(start, "POST", r"/clone$") == []
        assert site.get(f"nodes/pve/qemu/{TEMPLATE}/config")["description"].endswith("-v1.13.9-nocloud-amd64.qcow2")

    def test_boot_wait_without_the_agent_extension_stops_before_anything(self, site):
        start = len(site.lab_get(PVE, "requests"))
        run = site.run("--tags", "infrastructure", "-e", "@%s" % site.spec_override("talos_image", extensions=[]))
        assert run.returncode != 0
        assert "lacks siderolabs/qemu-guest-agent" in run.stdout, run.stdout[-3000:]
        assert [site.requests_since(start, method, ".") for method in ("POST", "PUT", "DELETE")] == [[], [], []]

    def test_teardown_keeps_layer_00(self, site):
        site.csi_before = site.csi_token()
        assert site.csi_before[1] == 200
        teardown = site.run("-e", "teardown_confirm=lab", playbook="playbooks/teardown.yml")
        assert teardown.returncode == 0, teardown.stdout[-3000:]
        assert set(site.vms()) == {TEMPLATE}  # the template stays for the next build
        assert site.csi_token() == site.csi_before  # the CSI token survives the teardown, unchanged and valid

    def test_a_foreign_vm_on_a_node_id_is_neither_taken_over_nor_destroyed(self, site):
        created = requests.post(f"{PVE}/api2/json/nodes/pve/qemu", headers=site.auth, verify=site.ca, timeout=10,
                                data={"vmid": 2002, "name": "someone-else", "tags": "prod", "memory": 1024})
        created.raise_for_status()
        site.wait_vm(2002, lambda vm: vm and "lock" not in vm)
        refusal = "VM 2002 (name 'someone-else', tags prod) exists but is not one this run manages"
        for run in (site.run("--tags", "infrastructure"),
                    site.run("-e", "teardown_confirm=lab", playbook="playbooks/teardown.yml")):
            failures = re.findall(r"fatal: \[(\S+)\]: FAILED! => (.*)", run.stdout)
            assert [host for host, _message in failures] == ["worker3"], run.stdout[-4000:]
            assert refusal in failures[0][1]
            vm = site.vms()[2002]
            assert (vm["name"], vm["tags"], vm["status"]) == ("someone-else", "prod", "stopped")
        assert set(site.vms()) == {TEMPLATE, 2002}  # the teardown removed the cluster's nodes, not that one
        requests.delete(f"{PVE}/api2/json/nodes/pve/qemu/2002", headers=site.auth, verify=site.ca,
                        timeout=10).raise_for_status()
        site.wait_vm(2002, lambda vm: vm is None)

    def test_transient_faults_are_absorbed(self, site):
        # Lock timeouts on the storage and a burst of 503s are absorbed by the retries.
        site.fault(kind="lock_timeout", match="pve-storage-local-zfs", count=2)
        site.fault(kind="http_5xx", status=503, count=3, match="/qemu/")
        run = site.run()
        assert run.returncode == 0, run.stdout[-4000:]
        assert "can't lock file" not in run.stdout
        assert {vm["status"] for vmid, vm in site.vms().items() if vmid != TEMPLATE} == {"running"}

    def test_failed_clone_names_the_node_then_a_rerun_converges(self, site):
        # Definitive: a clone task that fails names the node and carries Proxmox's error.
        site.run("-e", "teardown_confirm=lab", playbook="playbooks/teardown.yml")
        site.fault(kind="task_fail", match="qmclone", message="storage 'local-zfs' is full", count=1)
        failed = site.run("--tags", "infrastructure")
        assert failed.returncode != 0
        failures = re.findall(r"fatal: \[(\S+)\]: FAILED! => (.*)", failed.stdout)
        assert len(failures) == 1, failed.stdout[-4000:]
        host, message = failures[0]
        assert host in NODES and "storage 'local-zfs' is full" in message and str(NODES[host]) in message
        converge = site.run("--tags", "infrastructure")
        assert converge.returncode == 0, converge.stdout[-4000:]
        assert changed_hosts(converge.stdout) == {host}
        rebuilt = site.run()
        assert rebuilt.returncode == 0 and changed_hosts(rebuilt.stdout) == set(), rebuilt.stdout[-3000:]
        assert site.csi_token() == site.csi_before  # and every rebuild after it

    def test_no_request_was_refused(self, site):
        for base in (PVE, FACTORY):
            assert site.lab_get(base, "rejects") == [], base
