"""The reasons the teardown gives for a Proxmox CSI volume it leaves (filter turnkey.cluster.csi_volumes)."""

from __future__ import annotations

import pytest

from ansible_collections.turnkey.cluster.plugins.filter.csi_volumes import csi_volumes

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

DRIVER = "csi.proxmox.sinextra.dev"


def pv(name, policy="Retain", phase="Released", claim=None, storage_class="proxmox"):
    spec = {"storageClassName": storage_class, "persistentVolumeReclaimPolicy": policy,
            "csi": {"driver": DRIVER, "volumeHandle": "cluster/atlas/local/9999/vm-9999-%s.raw" % name}}
    if claim:
        spec["claimRef"] = {"namespace": "apps", "name": claim}
    return {"metadata": {"name": name}, "spec": spec, "status": {"phase": phase}}


def reasons(**lists):
    lists.setdefault("storage_classes", [{"metadata": {"name": "proxmox"}, "provisioner": DRIVER},
                                         {"metadata": {"name": "other"}, "provisioner": "x"}])
    return {volume["name"]: volume["reason"] for volume in csi_volumes(lists, [DRIVER])["volumes"]}


def test_reasons():
    claim = {"metadata": {"namespace": "apps", "name": "data", "deletionTimestamp": "now",
                          "finalizers": ["kubernetes.io/pvc-protection"]},
             "spec": {"storageClassName": "proxmox", "volumeName": "held"}}
    user = {"metadata": {"namespace": "apps", "name": "db"}, "spec": {
        "nodeName": "worker1", "volumes": [{"persistentVolumeClaim": {"claimName": "data"}}]}}
    attachment = {"spec": {"nodeName": "worker2", "source": {"persistentVolumeName": "attached"}}}
    found = reasons(claims=[claim], pods=[user], attachments=[attachment],
                    volumes=[pv("held", claim="data"), pv("attached", "Delete", "Released"), pv("kept"),
                             pv("slow", "Delete", "Released"), pv("elsewhere", storage_class="other")])
    assert found["held"] == "its claim apps/data is terminating but pods still use it: apps/db"
    assert found["attached"].startswith("still attached to worker2")
    assert found["kept"].startswith("reclaim policy Retain: the disk stays")
    assert found["slow"] == "reclaim policy Delete, phase Released: the CSI controller has not deleted it yet"
    assert "elsewhere" not in found  # another provisioner's volume is not the teardown's business
    assert "finalizers kubernetes.io/pvc-protection" in reasons(claims=[claim], volumes=[pv("held", claim="data")])[
        "held"]
