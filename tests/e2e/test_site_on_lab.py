"""The newcomer's path: the lab comes up and site.yml converges on it; the second run changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
import requests
import yaml

from tests.playbook_runner import BIN, REPO, copy_inventory, recap, run_playbook
from tests.tools import built_tools

pytestmark = [pytest.mark.e2e, pytest.mark.lab]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """An isolated lab on its own loopback block and state folder, so a developer's lab is untouched."""
    state = tmp_path_factory.mktemp("lab-state")
    env = dict(os.environ, TURNKEY_LAB_DIR=str(state), TURNKEY_LAB_NET="127.90",
               PATH="%s:%s" % (BIN, os.environ["PATH"]))
    up = subprocess.run([str(BIN / "lab"), "up", "--profile", "fast"], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield state
    finally:
        subprocess.run([str(BIN / "lab"), "down"], cwd=REPO, env=env, capture_output=True, timeout=120, check=False)


PROXMOX_NODES = {"cp1": 1500, "cp2": 1501, "cp3": 1502, "worker1": 2000, "worker2": 2001, "worker3": 2002}


def proxmox_vms(lab_state):
    creds = json.loads((lab_state / "credentials.json").read_text())["proxmox"]
    answer = requests.get("https://127.90.0.3:8006/api2/json/nodes/pve/qemu", verify=str(lab_state / "pki" / "ca.pem"),
                          headers={"Authorization": "PVEAPIToken=%s=%s" % (creds["token_id"], creds["token_secret"])},
                          timeout=10)
    answer.raise_for_status()
    return {vm["vmid"]: vm for vm in answer.json()["data"]}


def hetzner_servers(lab_state):
    token = json.loads((lab_state / "credentials.json").read_text())["hetzner"]["token"]
    answer = requests.get("https://127.90.0.4:8443/v1/servers", verify=str(lab_state / "pki" / "ca.pem"),
                          headers={"Authorization": "Bearer " + token}, timeout=10)
    answer.raise_for_status()
    return {server["name"]: server for server in answer.json()["servers"]}


ALL_NODES = [*PROXMOX_NODES, "hcloud-worker1"]


def kubectl_json(kubeconfig, *args):
    """kubectl (the real one, built by make tools) with the fetched kubeconfig, unmodified."""
    kubectl = built_tools("TURNKEY_KUBECTL")["TURNKEY_KUBECTL"]
    done = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), *args, "-o", "json"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ready(node):
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready") == "True"


def changed_hosts(stdout, task):
    """Hosts a task reported changed in the default callback's output."""
    hosts, current = set(), None
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            current = task in line
        elif current and line.startswith("changed: ["):
            hosts.add(line.split("[", 1)[1].split("]", 1)[0].split(" -> ")[0])  # "cp1 -> localhost": delegated
    return hosts


def digests(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.vault.yml"))}


class Site:
    """A copy of the lab inventory, its state folder, and the secrets' digests after the first run."""

    def __init__(self, lab, tmp_path):
        self.lab, self.tmp = lab, tmp_path
        self.inventory = copy_inventory(tmp_path, "lab")
        self.state = tmp_path / "state"
        self.env = {"TURNKEY_LAB_DIR": str(lab), "TURNKEY_STATE_DIR": str(self.state)}
        self.stored = None

    def run(self, *args, **kwargs):
        return run_playbook("-i", str(self.inventory), *args, env=self.env, **kwargs)


@pytest.fixture(scope="module")
def site(lab, tmp_path_factory):
    return Site(lab, tmp_path_factory.mktemp("site"))


@pytest.mark.incremental
class TestSiteOnTheLab:
    """site.yml on the lab, step by step (a failed step fails the rest, see tests/conftest.py)."""

    def test_first_run_converges(self, site):
        first = site.run()
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        assert recap(first.stdout)["localhost"]["changed"] >= 1
        assert "=== layer 00-persistent-auth ===" in first.stdout
        site.stored = digests(site.inventory / "secrets")
        assert set(site.stored) == {"sealed_secrets.vault.yml", "flux_deploy_key.vault.yml",
                                    "talos_secrets.vault.yml", "authentik_bootstrap_token.vault.yml",
                                    "proxmox_csi_token.vault.yml"}

    def test_second_run_and_check_mode_change_nothing(self, site):
        second = site.run()
        assert second.returncode == 0, second.stdout[-4000:]
        assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap(second.stdout).values())
        assert digests(site.inventory / "secrets") == site.stored

        check = site.run("--check", "--diff")
        assert check.returncode == 0
        assert all(counts["changed"] == 0 for counts in recap(check.stdout).values())
        assert digests(site.inventory / "secrets") == site.stored

        report = json.loads((site.state / "runs" / "last.json").read_text())
        assert {layer["name"] for layer in report["layers"]} == {
            "validation", "00-persistent-auth", "01-infrastructure"}
        assert all(layer["changed"] == 0 and layer["failed"] == 0 for layer in report["layers"])

    def test_every_node_is_a_running_machine(self, site):
        # Layer 01: every Proxmox node is a running VM that booted with its own address.
        vms = proxmox_vms(site.lab)
        for host, vmid in PROXMOX_NODES.items():
            assert vms[vmid]["name"] == host and vms[vmid]["status"] == "running", vms.get(vmid)
        # ...and the Hetzner worker is a running server at its private address.
        servers = hetzner_servers(site.lab)
        assert servers["hcloud-worker1"]["status"] == "running"
        assert [n["ip"] for n in servers["hcloud-worker1"]["private_net"]] == ["127.3.0.10"]

    def test_the_machines_are_one_kubernetes_cluster(self, site):
        # The fetched kubeconfig works with the real kubectl, every node is registered by name with its
        # config's labels and address, and Ready now that Cilium runs.
        for name in ("kubeconfig", "talos/talosconfig"):
            assert (site.state / name).stat().st_mode & 0o777 == 0o600, name
        kubeconfig = site.state / "kubeconfig"
        nodes = {n["metadata"]["name"]: n for n in kubectl_json(kubeconfig, "get", "nodes")["items"]}
        assert sorted(nodes) == sorted(ALL_NODES)
        assert all(ready(node) for node in nodes.values()), {n: ready(node) for n, node in nodes.items()}
        # topology as the Proxmox CCM and CSI plugin expect it: region (the cluster name by default), zone = the
        # PVE node, provider ID proxmox://<region>/<VM id>; the Hetzner worker: the hcloud CCM's region (its
        # location) and no provider ID of ours (the hcloud CCM sets hcloud://<server id>)
        for host, vmid in PROXMOX_NODES.items():
            labels = nodes[host]["metadata"]["labels"]
            assert (labels["topology.kubernetes.io/region"], labels["topology.kubernetes.io/zone"]) == ("lab", "pve")
            assert nodes[host]["spec"].get("providerID") == "proxmox://lab/%d" % vmid, nodes[host]["spec"]
        assert nodes["hcloud-worker1"]["metadata"]["labels"]["topology.kubernetes.io/region"] == "fsn1"
        assert "providerID" not in nodes["hcloud-worker1"]["spec"]
        assert {"type": "InternalIP", "address": "127.2.2.1"} in nodes["worker1"]["status"]["addresses"]
        assert "node-role.kubernetes.io/control-plane" in nodes["cp1"]["metadata"]["labels"]
        cilium = kubectl_json(kubeconfig, "-n", "kube-system", "get", "daemonset", "cilium")
        assert cilium["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        keys = kubectl_json(kubeconfig, "-n", "kube-system", "get", "secrets", "-l",
                            "sealedsecrets.bitnami.com/sealed-secrets-key=active")["items"]
        assert len(keys) == 1

    def test_one_node_patch_is_shown_and_applied_to_that_node_only(self, site):
        host_vars = site.inventory / "host_vars"
        host_vars.mkdir(exist_ok=True)
        (host_vars / "worker2.yml").write_text(yaml.safe_dump(
            {"talos_config_node_patches": [{"machine": {"nodeLabels": {"turnkey.test/patched": "yes"}}}]}))
        check = site.run("--check", "--diff")
        assert check.returncode == 0, check.stdout[-4000:]
        assert {host for host, counts in recap(check.stdout).items() if counts["changed"]} == {"worker2"}
        assert "turnkey.test/patched" in check.stdout
        patched = site.run()
        assert patched.returncode == 0, patched.stdout[-4000:]
        assert changed_hosts(patched.stdout, "Apply the machine config, dry run first") == {"worker2"}
        assert {host for host, counts in recap(patched.stdout).items() if counts["changed"]} == {"worker2"}
        labels = kubectl_json(site.state / "kubeconfig", "get", "node", "worker2")["metadata"]["labels"]
        assert labels.get("turnkey.test/patched") == "yes"

    def test_teardown_then_site_rebuilds_the_same_cluster(self, site):
        # New machines in maintenance mode become the same cluster (same secrets, so the kept talosconfig
        # and kubeconfig still work), every node Ready, layer 00 untouched.
        teardown = site.run("-e", "teardown_confirm=lab", playbook="playbooks/teardown.yml")
        assert teardown.returncode == 0, teardown.stdout[-4000:]
        rebuilt = site.run()
        assert rebuilt.returncode == 0, rebuilt.stdout[-4000:] + rebuilt.stderr[-2000:]
        assert changed_hosts(rebuilt.stdout, "Bootstrap etcd") == {"cp1"}
        nodes = {n["metadata"]["name"]: n for n in kubectl_json(site.state / "kubeconfig", "get", "nodes")["items"]}
        assert sorted(nodes) == sorted(ALL_NODES) and all(ready(node) for node in nodes.values())
        assert digests(site.inventory / "secrets") == site.stored
