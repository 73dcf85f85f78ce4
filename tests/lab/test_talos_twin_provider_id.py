"""The Talos node twin registers a Node the way a kubelet does with a provider ID in its KubeletConfiguration
(Talos: machine.kubelet.extraConfig.providerID): spec.providerID set at registration, none without one.
Real etcd and kube-apiserver behind the twin, driven by the unmodified talosctl and kubectl, on 127.92.7.x."""

from __future__ import annotations

import json

import yaml

from tests.lab.test_talos_twin import Twin, run, talosctl, twin_binary  # noqa: F401 # pylint: disable=unused-import
from tests.lab.test_talos_twin_cluster import eventually, kubectl, node_config, tools

NET = "127.92.7"


def test_a_node_registers_with_the_provider_id_of_its_kubelet_config(twin_binary, talosctl, tmp_path):  # noqa: F811
    nodes = {"cp1": NET + ".1", "w1": NET + ".2"}
    gen = tmp_path / "gen"
    run(talosctl, "gen", "config", "twin", "https://%s.100:6443" % NET, "-o", str(gen), "--with-docs=false",
        "--with-examples=false")
    twin = Twin(twin_binary, tmp_path, nodes)
    env = tools()
    twin.extra_args = ["--etcd", env["TURNKEY_ETCD"], "--kube-apiserver", env["TURNKEY_KUBE_APISERVER"]]
    twin.start(*nodes.values())
    try:
        worker = node_config(gen, "w1")
        documents = list(yaml.safe_load_all(worker.read_text()))
        documents[0]["machine"]["kubelet"]["extraConfig"] = {"providerID": "proxmox://lab/2000"}
        worker.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        run(talosctl, "apply-config", "--insecure", "-n", nodes["cp1"], "-e", nodes["cp1"], "-f",
            str(node_config(gen, "cp1")))
        run(talosctl, "apply-config", "--insecure", "-n", nodes["w1"], "-e", nodes["w1"], "-f", str(worker))
        talos = ["--talosconfig", str(gen / "talosconfig"), "-n", nodes["cp1"], "-e", nodes["cp1"]]
        run(talosctl, *talos, "bootstrap")
        kubeconfig = tmp_path / "kubeconfig"
        eventually(lambda: run(talosctl, *talos, "kubeconfig", str(kubeconfig), "--force", "--merge=false"), 60,
                   "the admin kubeconfig")

        def registered():
            found = {n["metadata"]["name"]: n for n in json.loads(kubectl(kubeconfig, "get", "nodes", "-o",
                                                                          "json"))["items"]}
            assert sorted(found) == ["cp1", "w1"], sorted(found)
            return found
        found = eventually(registered, 90, "both nodes registered")
        assert found["w1"]["spec"].get("providerID") == "proxmox://lab/2000", found["w1"]["spec"]
        assert "providerID" not in found["cp1"]["spec"]
    finally:
        twin.stop()
