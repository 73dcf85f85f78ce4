"""The teardown's first step, role csi_volumes_release, against the real kube-apiserver (conftest).

No controller runs there, like a cluster whose kube-controller-manager and CSI controller are gone: the
claims it deletes stay Terminating (the API's admission gave them the kubernetes.io/pvc-protection
finalizer, and nothing removes it) and no volume is ever deleted. So the test checks what the role itself
does and says: the claims of the Proxmox CSI classes deleted (others untouched), the pods that mount them
deleted, and every volume left listed by name, disk and reason, also when the API is down later."""

from __future__ import annotations

import json
import subprocess

import yaml

from tests.integration.cluster.conftest import kubectl
from tests.playbook_runner import REPO, recap, run_playbook

PROVISIONER = "csi.proxmox.sinextra.dev"


def volume(name, claim, storage_class, policy):
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
        "persistentVolumeReclaimPolicy": policy,
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "apps", "name": claim},
        "csi": {"driver": PROVISIONER, "volumeHandle": "cluster/atlas/local/9999/vm-9999-%s.raw" % name}}}


def claim(name, storage_class, volume_name=None):
    spec = {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
            "resources": {"requests": {"storage": "1Gi"}}}
    if volume_name:
        spec["volumeName"] = volume_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"namespace": "apps", "name": name},
            "spec": spec}


def pod(name, claim_name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "apps", "name": name}, "spec": {
        "automountServiceAccountToken": False,
        "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]}}


def storage_class(name, provisioner, policy):
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "reclaimPolicy": policy}


OBJECTS = [
    storage_class("proxmox-csi-retain", PROVISIONER, "Retain"),
    storage_class("proxmox-csi-delete", PROVISIONER, "Delete"),
    storage_class("local-path", "rancher.io/local-path", "Delete"),
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}},
    # The service-account controller is not running to make it.
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": "apps", "name": "default"}},
    volume("pvc-data", "data", "proxmox-csi-retain", "Retain"),
    volume("pvc-cache", "cache", "proxmox-csi-delete", "Delete"),
    claim("data", "proxmox-csi-retain", "pvc-data"),
    claim("cache", "proxmox-csi-delete", "pvc-cache"),
    claim("scratch", "local-path"),
    pod("db", "data"),
    pod("other", "scratch"),
]


def release_playbook(tmp_path, kubeconfig):
    playbook = tmp_path / "release.yml"
    playbook.write_text(yaml.safe_dump([{"name": "teardown step", "hosts": "localhost", "gather_facts": False,
                                         "tasks": [{"name": "Release", "ansible.builtin.include_role": {
                                             "name": "turnkey.cluster.csi_volumes_release"},
                                             "vars": {"csi_volumes_release_kubeconfig": str(kubeconfig),
                                                      "csi_volumes_release_timeout": 2,
                                                      "csi_volumes_release_poll_seconds": 1}}]}]))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         "      ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n")
    return playbook, inventory


def get(found, kubeconfig, kind, name, namespace="apps"):
    done = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "get", kind, name, "-n",
                           namespace, "-o", "json", "--ignore-not-found"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_teardown_releases_the_proxmox_csi_claims_first():
    plays = yaml.safe_load((REPO / "playbooks" / "teardown.yml").read_text())
    roles = [task.get("ansible.builtin.include_role", {}).get("name") for play in plays for task in play["tasks"]]
    assert roles.index("turnkey.cluster.csi_volumes_release") < roles.index("turnkey.cluster.proxmox_nodes")
    assert roles.index("turnkey.cluster.csi_volumes_release") < roles.index("turnkey.cluster.hetzner_nodes")


def test_claims_released_and_the_volumes_left_listed_with_the_reason(tmp_path, control_plane):
    kubeconfig, found = control_plane
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all(OBJECTS))
    subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "apply", "-f", str(manifest)],
                   check=True, capture_output=True)
    playbook, inventory = release_playbook(tmp_path, kubeconfig)
    env = {"TURNKEY_STATE_DIR": str(tmp_path / "state")}
    (tmp_path / "state").mkdir()

    check = run_playbook("-i", str(inventory), "--check", playbook=str(playbook), env=env)
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap(check.stdout)["localhost"]["changed"] == 2  # the claims and the pod would be deleted
    assert get(found, kubeconfig, "pod", "db") and not get(found, kubeconfig, "pvc", "data")["metadata"].get(
        "deletionTimestamp")
    assert not (tmp_path / "state" / "csi-volumes.json").exists()

    run = run_playbook("-i", str(inventory), playbook=str(playbook), env=env)
    assert run.returncode == 0, run.stdout[-3000:]
    for name in ("data", "cache"):
        left = get(found, kubeconfig, "pvc", name)  # Terminating: the finalizer nothing here removes
        assert left["metadata"]["deletionTimestamp"]
        assert left["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert get(found, kubeconfig, "pod", "db") is None  # it mounted a Proxmox CSI claim
    assert not get(found, kubeconfig, "pvc", "scratch")["metadata"].get("deletionTimestamp")  # another class
    assert get(found, kubeconfig, "pod", "other")

    assert "WARNING: 2 Proxmox CSI volume(s) stay after the teardown" in run.stdout
    for name in ("pvc-data", "pvc-cache"):
        assert "%s (disk cluster/atlas/local/9999/vm-9999-%s.raw" % (name, name) in run.stdout
    assert ("its claim apps/data is terminating, held by the finalizers kubernetes.io/pvc-protection"
            in run.stdout)
    recorded = json.loads((tmp_path / "state" / "csi-volumes.json").read_text())
    assert [entry["name"] for entry in recorded] == ["pvc-cache", "pvc-data"]
    assert {entry["reclaim_policy"] for entry in recorded} == {"Delete", "Retain"}

    # Once the claims are Terminating a rerun deletes nothing more and lists the same volumes.
    again = run_playbook("-i", str(inventory), playbook=str(playbook), env=env)
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-3000:]
    assert kubectl(found, kubeconfig, "get", "pv")["items"]

    # The API gone (a teardown interrupted after the machines): nothing released, the record listed.
    dead = tmp_path / "dead-kubeconfig"
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.94.0.1:1"
    dead.write_text(yaml.safe_dump(config))
    down = run_playbook("-i", str(inventory), "-e", "csi_volumes_release_kubeconfig=%s" % dead,
                        playbook=str(playbook), env=env)
    assert down.returncode == 0, down.stdout[-3000:]
    assert "WARNING: the cluster's API does not answer" in down.stdout
    assert "vm-9999-pvc-data.raw" in down.stdout and "vm-9999-pvc-cache.raw" in down.stdout
