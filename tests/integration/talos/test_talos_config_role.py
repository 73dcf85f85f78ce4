"""Role talos_config on the lab inventory's seven nodes: every config rendered by the real talosctl, valid
against the official schema, 0600, a rerun changed=0, and a spec change shown as a diff for exactly the
nodes it touches. No lab is needed: the role reads only the spec and the layer 00 bundle."""

from __future__ import annotations

import json
import stat

import jsonschema
import yaml

from tests.integration.talos.test_talos_machine_config import SCHEMA, talosctl
from tests.playbook_runner import TEST_VAULT_PASSWORD, copy_inventory, lab_env, recap, run_playbook
from tests.schemas import official_schema
from tests.store_access import open_store

NODES = {"cp1", "cp2", "cp3", "worker1", "worker2", "worker3", "hcloud-worker1"}
PROXMOX = NODES - {"hcloud-worker1"}
VMIDS = {"cp1": 1500, "cp2": 1501, "cp3": 1502, "worker1": 2000, "worker2": 2001, "worker3": 2002}


def write_playbooks(tmp_path):
    bundle = tmp_path / "bundle.yml"
    bundle.write_text(yaml.safe_dump([{"name": "bundle", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "The Talos secrets bundle", "turnkey.cluster.persistent_secret": {
            "name": "talos_secrets", "type": "talos_secrets", "store_path": "{{ secrets_store.path }}",
            "vault_password_file": "{{ secrets_store.vault_password_file }}"}}]}]))
    configs = tmp_path / "configs.yml"
    configs.write_text(yaml.safe_dump([{"name": "configs", "hosts": "cluster", "gather_facts": False, "tasks": [{
        "name": "Render", "ansible.builtin.include_role": {"name": "turnkey.cluster.talos_config"}}]}]))
    return bundle, configs


def test_configs_for_every_node_then_only_the_touched_nodes_change(tmp_path):
    inventory = copy_inventory(tmp_path, "lab")
    env = {**lab_env(tmp_path), "TURNKEY_TALOSCTL": talosctl()}
    bundle, configs = write_playbooks(tmp_path)
    made = run_playbook("-i", str(inventory), playbook=str(bundle), env=env)
    assert made.returncode == 0, made.stdout[-3000:]

    first = run_playbook("-i", str(inventory), playbook=str(configs), env=env)
    assert first.returncode == 0, first.stdout[-4000:]
    assert {host for host, counts in recap(first.stdout).items() if counts["changed"]} == NODES
    folder = tmp_path / "state" / "talos"
    assert {path.stem for path in folder.glob("*.yaml")} == NODES
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    schema = json.loads(official_schema(SCHEMA).read_text())
    for node in NODES:
        path = folder / (node + ".yaml")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        documents = list(yaml.safe_load_all(path.read_text()))
        kinds = {d.get("kind", "v1alpha1"): d for d in documents}
        main = kinds["v1alpha1"]
        assert main["machine"]["type"] == ("controlplane" if node.startswith("cp") else "worker")
        assert main["cluster"]["controlPlane"]["endpoint"] == "https://127.2.3.1:6443"
        assert main["cluster"]["network"]["cni"] == {"name": "none"} and main["cluster"]["proxy"]["disabled"]
        assert main["machine"]["features"]["kubePrism"] == {"enabled": True, "port": 7445}
        assert main["machine"]["install"]["image"].startswith("127.10.0.6:8443/installer/")
        assert kinds["HostnameConfig"]["hostname"] == node
        assert kinds["KubeSpanConfig"]["enabled"] is True and main["cluster"]["discovery"]["enabled"] is True
        assert ("LinkConfig" in kinds) == (node in PROXMOX)  # Hetzner nodes take their network from metadata
        assert ("Layer2VIPConfig" in kinds) == (node in {"cp1", "cp2", "cp3"})
        # topology as the Proxmox CCM and CSI plugin expect it: region (default: the cluster name), zone = the
        # PVE node, provider ID proxmox://<region>/<VM id>; a Hetzner node: the hcloud CCM's region (its
        # location), no zone and no provider ID of ours (the hcloud CCM sets hcloud://<server id>)
        labels, kubelet = main["machine"]["nodeLabels"], main["machine"]["kubelet"]
        if node in PROXMOX:
            assert labels["topology.kubernetes.io/region"] == "lab"
            assert labels["topology.kubernetes.io/zone"] == "pve"
            assert kubelet["extraConfig"] == {"providerID": "proxmox://lab/%d" % VMIDS[node]}
        else:
            assert labels["topology.kubernetes.io/region"] == "fsn1"
            assert "topology.kubernetes.io/zone" not in labels and "extraConfig" not in kubelet
        main.pop("persist", None)  # written by talosctl, absent from the published schema
        for document in documents:
            jsonschema.Draft202012Validator(schema).validate(document)

    rerun = run_playbook("-i", str(inventory), playbook=str(configs), env=env)
    assert rerun.returncode == 0 and all(c["changed"] == 0 for c in recap(rerun.stdout).values())

    spec_file = inventory / "group_vars" / "all" / "cluster.yml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["cluster_network"]["dns_servers"] = ["127.2.0.54"]
    spec["proxmox"]["region"] = "home"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    before = {node: (folder / (node + ".yaml")).read_bytes() for node in NODES}
    check = run_playbook("-i", str(inventory), "--check", "--diff", playbook=str(configs), env=env)
    assert check.returncode == 0
    assert {host for host, counts in recap(check.stdout).items() if counts["changed"]} == PROXMOX
    assert "-- address: 127.2.0.53\n+- address: 127.2.0.54" in check.stdout
    assert '-      providerID: proxmox://lab/2000\n+      providerID: proxmox://home/2000' in check.stdout
    stored = open_store(inventory / "secrets", TEST_VAULT_PASSWORD).read("talos_secrets")
    bundle = yaml.safe_load(stored["data"]["bundle"])
    for secret in (bundle["certs"]["os"]["key"], bundle["certs"]["k8s"]["key"], bundle["secrets"]["bootstraptoken"]):
        assert secret not in first.stdout + rerun.stdout + check.stdout  # diffs show fingerprints, never keys
    assert {node: (folder / (node + ".yaml")).read_bytes() for node in NODES} == before
    apply = run_playbook("-i", str(inventory), playbook=str(configs), env=env)
    assert {host for host, counts in recap(apply.stdout).items() if counts["changed"]} == PROXMOX
    assert (folder / "hcloud-worker1.yaml").read_bytes() == before["hcloud-worker1"]
