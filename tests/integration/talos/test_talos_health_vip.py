"""talos_health asks each control plane's own API address before the VIP (the kubeconfig's server), so a
VIP that does not answer while the API server does is reported as "VIP unreachable", apart from "API
server not ready". Against the Talos node twin with the real etcd and kube-apiserver (relayed onto each
control plane's own address, as every Talos control plane serves its own), on 127.95.1.x."""

from __future__ import annotations

import subprocess

import yaml

from tests.integration.talos.test_talos_lifecycle_modules import Runner, tool_path
from tests.lab.test_talos_twin import make_twin, talosctl, twin_binary  # noqa: F401 # pylint: disable=unused-import

CP1 = "127.95.1.1"
SERVER = "https://127.95.1.100:6443"
NOTHING = "https://127.95.1.200:6443"  # no VIP holder: nothing listens there


def test_vip_unreachable_is_told_apart_from_api_not_ready(talosctl, make_twin, tmp_path, monkeypatch):  # noqa: F811
    for name, tool in (("TURNKEY_ETCD", "etcd"), ("TURNKEY_KUBE_APISERVER", "kube-apiserver")):
        monkeypatch.setenv(name, tool_path(tool))
    make_twin({"cp1": CP1})
    gen = tmp_path / "gen"
    subprocess.run([talosctl, "gen", "config", "vip", SERVER, "-o", str(gen), "--with-docs=false",
                    "--with-examples=false"], check=True, capture_output=True)
    talos = [talosctl, "--talosconfig", str(gen / "talosconfig"), "-n", CP1, "-e", CP1]
    subprocess.run([talosctl, "apply-config", "--insecure", "-n", CP1, "-e", CP1, "-f", str(gen / "controlplane.yaml")],
                   check=True, capture_output=True, timeout=60)
    subprocess.run([*talos, "bootstrap"], check=True, capture_output=True, timeout=60)
    kubeconfig = tmp_path / "kubeconfig"
    subprocess.run([*talos, "kubeconfig", str(kubeconfig), "--force", "--merge=false"], check=True,
                   capture_output=True, timeout=60)
    task = Runner(tmp_path, talosctl)
    health = {"kubeconfig": str(kubeconfig), "talosconfig": str(gen / "talosconfig"),
              "controlplane_nodes": [{"name": "cp1", "ip": CP1}], "nodes": ["cp1"], "ready": False,
              "timeout": 120, "interval": 2}
    assert task("talos_health", health)["nodes"] == {"cp1": False}

    # the kubeconfig's server is a VIP nobody holds: the control plane's own API answers, so it is the VIP
    lost = yaml.safe_load(kubeconfig.read_text())
    lost["clusters"][0]["cluster"]["server"] = NOTHING
    vip_lost = tmp_path / "kubeconfig-vip-lost"
    vip_lost.write_text(yaml.safe_dump(lost))
    failed = task("talos_health", {**health, "kubeconfig": str(vip_lost), "timeout": 4}, fails=True)
    assert "VIP unreachable: %s (" % NOTHING in failed["msg"], failed["msg"]
    assert "while the API server answers on cp1 (https://%s:6443)" % CP1 in failed["msg"], failed["msg"]
    assert "not ready" not in failed["msg"]
    assert failed["nodes"] == {"cp1": False}, "Nodes are still read through the control plane's own address"

    # neither the VIP nor any control plane's own address answers: the API server is not ready
    gone = {**health, "kubeconfig": str(vip_lost), "timeout": 4,
            "controlplane_nodes": [{"name": "cp1", "ip": CP1}, {"name": "cp9", "ip": "127.95.1.9"}]}
    gone["controlplane_nodes"][0]["ip"] = "127.95.1.8"
    failed = task("talos_health", gone, fails=True)
    assert "API server not ready: %s unreachable (" % NOTHING in failed["msg"], failed["msg"]
    assert "on no control plane's own address (cp1: " in failed["msg"] and "; cp9: " in failed["msg"]
    assert "VIP unreachable" not in failed["msg"]

    # check mode does not wait: what is unhealthy now is a warning, not a failure
    checked = task("talos_health", {**gone, "timeout": 600}, "--check")
    assert not checked["changed"] and "not healthy now" in checked["msg"]
