"""The Talos node twin's realistic profile (`--profile realistic`): what real nodes take shows as behaviour.

After its first apply-config in maintenance mode a node installs to disk and reboots: its API goes away
(connections refused, maintenance mode over) and comes back configured. After bootstrap, etcd starts only
once its image is pulled; kube-apiserver answers only after etcd; a node turns Ready only a while after
Cilium's DaemonSet appears (the agent's image pull). The delays are the realistic ones scaled down
(`--time-scale`), so the tests assert the order of events, never how long they took. Net 127.97.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.lab.test_talos_twin import (  # noqa: F401 # pylint: disable=unused-import
    Twin,
    apply_insecure,
    configured,
    make_twin,
    run,
    talosctl,
    twin_binary,
)
from tests.lab.test_talos_twin_cluster import eventually, kubectl, node_config, tools

NET = "127.97"
# the realistic profile at a fifth of its delays: install 6 s + reboot 4 s, etcd 3 s after bootstrap,
# kube-apiserver 4 s after etcd, Ready 6 s after Cilium
REALISTIC = ["--profile", "realistic", "--time-scale", "0.2"]


def refused(ip: str) -> bool:
    try:
        with socket.create_connection((ip, 50000), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


def log_order(twin: Twin, *needles: str) -> list[int]:
    """Where each needle first appears in the twin's log (-1: not there)."""
    text = (twin.root / "twin.log").read_text()
    return [text.find(needle) for needle in needles]


@pytest.fixture
def realistic_twin(make_twin):  # noqa: F811
    """make_twin's twin (stopped with the test), started again with the realistic profile."""

    def make(nodes: dict[str, str], *extra: str) -> Twin:
        twin = make_twin(nodes)
        twin.stop()
        twin.extra_args = [*REALISTIC, *extra]
        twin.start(*nodes.values())
        return twin

    return make


@pytest.fixture
def gen(talosctl, tmp_path) -> Path:  # noqa: F811
    out = tmp_path / "gen"
    run(talosctl, "gen", "config", "twin", "https://%s.1.100:6443" % NET, "-o", str(out),
        "--with-docs=false", "--with-examples=false")
    return out


def test_the_first_apply_installs_and_reboots_the_api_is_gone_then_configured(talosctl, realistic_twin, gen):  # noqa: F811
    ip = "%s.1.1" % NET
    twin = realistic_twin({"cp1": ip})
    apply_insecure(talosctl, ip, node_config(gen, "cp1"))

    # the maintenance service stops: nothing listens while the node installs and reboots
    eventually(lambda: _assert(refused(ip)), timeout=30, what="the API refuses connections")
    assert "error" in configured(talosctl, gen, ip, "version", ok=False).output
    assert "error" in run(talosctl, "version", "--insecure", "-n", ip, "-e", ip, ok=False).output
    state = json.loads((twin.state / "cp1" / "state.json").read_text())
    assert state["reboots"] == 0 and state["applies"][0]["maintenance"] is True

    # then it answers again, configured: the talosconfig's certificate works, maintenance mode is over
    out = eventually(lambda: configured(talosctl, gen, ip, "version").output, timeout=120,
                     what="the node answers configured after its reboot")
    assert "Enabled:     RBAC" in out
    assert "error" in run(talosctl, "version", "--insecure", "-n", ip, "-e", ip, ok=False).output
    assert json.loads((twin.state / "cp1" / "state.json").read_text())["reboots"] == 1
    installing, back = log_order(twin, "cp1: installing to disk and rebooting", "cp1 listening again (configured")
    assert 0 <= installing < back


def test_a_twin_restarted_during_the_install_brings_the_node_back_configured(talosctl, realistic_twin, gen):  # noqa: F811
    ip = "%s.2.1" % NET
    twin = realistic_twin({"cp1": ip})
    apply_insecure(talosctl, ip, node_config(gen, "cp1"))
    eventually(lambda: _assert(refused(ip)), timeout=30, what="the API refuses connections")
    twin.stop()
    twin.start(ip)  # the config is on the disk: the node boots configured
    assert "Enabled:     RBAC" in configured(talosctl, gen, ip, "version").output


def test_etcd_then_the_api_server_then_ready_after_cilium(talosctl, realistic_twin, gen, tmp_path):  # noqa: F811
    env = tools()
    cp1, w1 = "%s.1.1" % NET, "%s.1.2" % NET
    twin = realistic_twin({"cp1": cp1, "w1": w1}, "--etcd", env["TURNKEY_ETCD"],
                          "--kube-apiserver", env["TURNKEY_KUBE_APISERVER"])
    for name, ip in (("cp1", cp1), ("w1", w1)):
        apply_insecure(talosctl, ip, node_config(gen, name))
    eventually(lambda: configured(talosctl, gen, cp1, "version"), timeout=120, what="cp1 back from its install")

    configured(talosctl, gen, cp1, "bootstrap")
    # etcd is still being pulled and started: not running, and a second bootstrap is a repeat
    assert "etcd is not running" in configured(talosctl, gen, cp1, "etcd", "members", ok=False).output
    assert "AlreadyExists" in configured(talosctl, gen, cp1, "bootstrap", ok=False).output
    eventually(lambda: _assert("cp1" in configured(talosctl, gen, cp1, "etcd", "members").output), timeout=120,
               what="etcd runs on cp1")

    kubeconfig = tmp_path / "kubeconfig"
    configured(talosctl, gen, cp1, "kubeconfig", str(kubeconfig), "--force")
    # the API server comes after etcd: the static pod's image is pulled first
    eventually(lambda: _assert(api_ready(kubeconfig)), timeout=120, what="kube-apiserver answers")
    started_etcd, pulled, api = log_order(twin, "etcd member cp1 started", "node cp1: etcd starts",
                                          "kube-apiserver started")
    assert 0 <= pulled < started_etcd < api

    def registered():
        nodes = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == ["cp1", "w1"]
        return {n["metadata"]["name"]: ready(n) for n in nodes}

    assert eventually(registered, timeout=120, what="both nodes registered") == {"cp1": "False", "w1": "False"}
    kubectl(kubeconfig, "apply", "-f", "-", stdin=CILIUM_DAEMONSET)
    # the agent's image is pulled first: right after the DaemonSet appears the nodes are still NotReady
    assert registered() == {"cp1": "False", "w1": "False"}
    eventually(lambda: _assert(registered() == {"cp1": "True", "w1": "True"}), timeout=120, what="nodes Ready")


def _assert(condition: bool) -> bool:
    assert condition
    return condition


def api_ready(kubeconfig: Path) -> bool:
    done = subprocess.run([tools()["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.returncode == 0 and done.stdout.strip() == "ok"


def ready(node: dict) -> str:
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")


CILIUM_DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cilium, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: cilium}}
  template:
    metadata: {labels: {k8s-app: cilium}}
    spec:
      hostNetwork: true
      containers: [{name: cilium-agent, image: quay.io/cilium/cilium:v1.18.4}]
"""
