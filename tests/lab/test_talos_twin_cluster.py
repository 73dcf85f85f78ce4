"""The real Kubernetes control plane behind the Talos node twin: bootstrap starts a real etcd member on
the first control plane, the others join it, a real kube-apiserver serves on the cluster endpoint with
the configs' CA and service-account key, and every configured node registers a Node, NotReady until a
CNI (Cilium's DaemonSet) exists. All driven by the unmodified talosctl and kubectl, on 127.92.1.x."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.lab.test_talos_twin import (  # noqa: F401 # pylint: disable=unused-import
    Twin,
    run,
    talosctl,
    twin_binary,
    wait_listening,
)
from tests.tools import built_tools

# Each test its own /24: pytest -n 2 may run them at once, and every node binds its address.
NETS = {"test_bootstrap_brings_up_etcd_the_api_server_and_nodes": "127.92.1",
        "test_reboot_upgrade_and_reset": "127.92.2",
        "test_a_rebuilt_control_plane_joins_and_a_second_bootstrap_splits_etcd": "127.92.3"}


def tools() -> dict[str, str]:
    return built_tools("TURNKEY_ETCD", "TURNKEY_KUBE_APISERVER", "TURNKEY_KUBECTL")


def node_config(gen: Path, name: str) -> Path:
    """The generated config of the node's type, with its hostname (a HostnameConfig document)."""
    source = gen / ("worker.yaml" if name.startswith("w") else "controlplane.yaml")
    documents = [d for d in yaml.safe_load_all(source.read_text()) if d.get("kind") != "HostnameConfig"]
    documents.append({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": name, "auto": "off"})
    labels = documents[0]["machine"].get("nodeLabels") or {}
    documents[0]["machine"]["nodeLabels"] = {**labels, "turnkey.test/node": name}
    out = gen / ("%s.yaml" % name)
    out.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return out


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([tools()["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def eventually(check, timeout: float = 60, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}") from None
            time.sleep(0.5)


def children_of(pid: int) -> list[str]:
    """Command names of the processes whose parent is pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(stat.split("(", 1)[1].rsplit(")", 1)[0])
    return found


@pytest.fixture
def cluster(request, twin_binary, talosctl, tmp_path):  # noqa: F811
    net = NETS[request.node.originalname]
    nodes = {"cp1": net + ".1", "cp2": net + ".2", "cp3": net + ".3", "w1": net + ".4"}
    endpoint = "https://%s.100:6443" % net
    gen = tmp_path / "gen"
    run(talosctl, "gen", "config", "twin", endpoint, "-o", str(gen), "--with-docs=false", "--with-examples=false")
    twin = Twin(twin_binary, tmp_path, nodes)
    env = tools()
    twin.extra_args = ["--etcd", env["TURNKEY_ETCD"], "--kube-apiserver", env["TURNKEY_KUBE_APISERVER"]]
    twin.start(*nodes.values())
    try:
        yield twin, gen, nodes, endpoint
    finally:
        twin.stop()


def test_bootstrap_brings_up_etcd_the_api_server_and_nodes(cluster, talosctl, tmp_path):  # noqa: F811
    twin, gen, nodes, endpoint = cluster
    talosconfig = str(gen / "talosconfig")
    for name, ip in nodes.items():
        run(talosctl, "apply-config", "--insecure", "-n", ip, "-e", ip, "-f", str(node_config(gen, name)))
    cp1 = nodes["cp1"]
    before = run(talosctl, "--talosconfig", talosconfig, "-n", cp1, "-e", cp1, "etcd", "members", ok=False)
    assert "etcd is not running" in before.output
    run(talosctl, "--talosconfig", talosconfig, "-n", cp1, "-e", cp1, "bootstrap")

    # every control plane becomes an etcd member, by hostname; etcd runs on control planes only
    def members():
        out = subprocess.run([talosctl, "--talosconfig", talosconfig, "-n", cp1, "-e", cp1, "etcd", "members"],
                             capture_output=True, text=True, timeout=30, check=False).stdout
        assert all(" %s " % cp in out for cp in ("cp1", "cp2", "cp3")), out
        return out
    eventually(members, 60, "three etcd members")
    services = run(talosctl, "--talosconfig", talosconfig, "-n", nodes["cp2"], "-e", cp1, "service").output
    assert any(line.split()[1:3] == ["etcd", "Running"] for line in services.splitlines()[1:]), services
    worker = run(talosctl, "--talosconfig", talosconfig, "-n", nodes["w1"], "-e", cp1, "service").output
    assert " etcd " not in worker and " kubelet " in worker

    # the kubeconfig talosctl fetches works with kubectl, unmodified: 0600, admin of the cluster
    kubeconfig = tmp_path / "kubeconfig"
    run(talosctl, "--talosconfig", talosconfig, "-n", cp1, "-e", cp1, "kubeconfig", str(kubeconfig), "--force",
        "--merge=false")
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == endpoint

    def node_states(ready: str):
        items = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"]
        found = {n["metadata"]["name"]: n for n in items}
        assert sorted(found) == sorted(nodes), sorted(found)
        states = {name: next(c for c in n["status"]["conditions"] if c["type"] == "Ready") for name, n in found.items()}
        assert all(c["status"] == ready for c in states.values()), states
        return found, states
    found, states = eventually(lambda: node_states("False"), 60, "four NotReady nodes")
    assert states["w1"]["reason"] == "KubeletNotReady" and "cni plugin not initialized" in states["w1"]["message"]
    assert {"type": "InternalIP", "address": nodes["cp2"]} in found["cp2"]["status"]["addresses"]
    assert found["cp2"]["metadata"]["labels"]["turnkey.test/node"] == "cp2"
    assert "node-role.kubernetes.io/control-plane" in found["cp1"]["metadata"]["labels"]
    assert "node-role.kubernetes.io/control-plane" not in found["w1"]["metadata"]["labels"]
    assert found["cp1"]["spec"]["taints"][0]["key"] == "node-role.kubernetes.io/control-plane"

    # a CNI appears (Cilium's DaemonSet): every node turns Ready
    kubectl(kubeconfig, "-n", "kube-system", "create", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "cilium"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}}, "template": {
            "metadata": {"labels": {"k8s-app": "cilium"}},
            "spec": {"containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.20.0"}]}}}}))
    eventually(lambda: node_states("True"), 30, "four Ready nodes")

    # a restart of the twin keeps the cluster: same etcd data, the API server back, nodes still there
    twin.stop()
    assert leftovers(twin) == [], "etcd or kube-apiserver outlived the twin"
    twin.start(*nodes.values())
    eventually(lambda: node_states("True"), 60, "the cluster after a restart")
    pid = twin.proc.pid
    assert sorted(children_of(pid)) == ["etcd", "etcd", "etcd", "kube-apiserver"]
    twin.stop()
    assert leftovers(twin) == [], "etcd or kube-apiserver outlived the twin"


def leftovers(twin: Twin) -> list[str]:
    """Processes still running on the twin's state folder (its etcd members and API server name it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode() if proc.name.isdigit() else ""
        except OSError:
            continue
        if str(twin.state) in cmdline:
            found.append(cmdline[:120])
    return found


def test_reboot_upgrade_and_reset(cluster, talosctl, tmp_path):  # noqa: F811
    _twin, gen, nodes, _endpoint = cluster
    talosconfig = str(gen / "talosconfig")
    for name, ip in nodes.items():
        run(talosctl, "apply-config", "--insecure", "-n", ip, "-e", ip, "-f", str(node_config(gen, name)))
    cp1, cp2, w1 = nodes["cp1"], nodes["cp2"], nodes["w1"]

    def talos(node, *args, endpoint=cp2, ok=True):
        return run(talosctl, "--talosconfig", talosconfig, "-n", node, "-e", endpoint, *args, ok=ok).output

    talos(cp1, "bootstrap", endpoint=cp1)

    # reboot: a staged config becomes the running one
    staged = gen / "w1-staged.yaml"
    documents = list(yaml.safe_load_all((gen / "w1.yaml").read_text()))
    documents[0]["machine"]["env"] = {"http_proxy": "http://127.92.0.9:3128"}
    staged.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    assert "Staged configuration" in talos(w1, "apply-config", "--mode", "staged", "-f", str(staged))
    assert "No changes." not in talos(w1, "apply-config", "--dry-run", "-f", str(staged))
    talos(w1, "reboot", "--wait=false")
    assert "No changes." in talos(w1, "apply-config", "--dry-run", "-f", str(staged))

    # upgrade (the legacy API; see docs/lab-talos.md): the node then runs the image's version
    talos(w1, "upgrade", "--legacy", "--drain=false", "--wait=false", "--image",
          "factory.talos.dev/installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.13.10")
    assert "Tag:         v1.13.10" in talos(w1, "version")

    # reset of a control plane: back to maintenance mode, and it leaves etcd
    eventually(lambda: _members(talos, cp2, {"cp1", "cp2", "cp3"}), 60, "three etcd members")
    talos(nodes["cp3"], "reset", "--graceful", "--wait=false")
    assert run(talosctl, "version", "--insecure", "-n", nodes["cp3"], "-e", nodes["cp3"]).returncode == 0
    eventually(lambda: _members(talos, cp2, {"cp1", "cp2"}), 30, "cp3 left etcd")


def _members(talos, node, expected):
    out = talos(node, "etcd", "members")
    found = {line.split()[2] for line in out.splitlines()[1:] if line.strip()}
    assert found == expected, out
    return found


def _not_listening(ip: str) -> None:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        assert probe.connect_ex((ip, 50000)) != 0, "%s still answers" % ip


def rebuild(twin: Twin, nodes: dict[str, str], name: str) -> None:
    """What the lab does when a machine is replaced: the node leaves the nodes file, its disk is wiped,
    and it comes back in maintenance mode under the same name and address."""
    twin.write_nodes({n: ip for n, ip in nodes.items() if n != name})
    eventually(lambda: _not_listening(nodes[name]), 10, "%s stopped" % name)
    shutil.rmtree(twin.state / name)
    twin.write_nodes(nodes)
    wait_listening(nodes[name])


def test_a_rebuilt_control_plane_joins_and_a_second_bootstrap_splits_etcd(cluster, talosctl):  # noqa: F811
    """Real Talos: a configured control plane that is not bootstrapped joins the running etcd cluster; a
    control plane with etcd data answers bootstrap with AlreadyExists; a bootstrap that reaches a control
    plane without etcd data (a rebuilt one, before it joined) founds a second cluster: split brain."""
    twin, gen, nodes, _endpoint = cluster
    talosconfig = str(gen / "talosconfig")
    for name, ip in nodes.items():
        run(talosctl, "apply-config", "--insecure", "-n", ip, "-e", ip, "-f", str(node_config(gen, name)))
    cp1, cp2, cp3 = nodes["cp1"], nodes["cp2"], nodes["cp3"]

    def talos(node, *args, ok=True):
        return run(talosctl, "--talosconfig", talosconfig, "-n", node, "-e", node, *args, ok=ok).output

    talos(cp1, "bootstrap")
    eventually(lambda: _members(talos, cp2, {"cp1", "cp2", "cp3"}), 90, "three etcd members")
    # cp2 joined: it has etcd data, so bootstrap there is refused as on Talos
    assert "AlreadyExists" in talos(cp2, "bootstrap", ok=False)

    # cp1 rebuilt and configured, not bootstrapped: it joins the running cluster (after Talos' discovery wait)
    rebuild(twin, nodes, "cp1")
    eventually(lambda: _members(talos, cp2, {"cp2", "cp3"}), 30, "the old cp1 gone from etcd")
    run(talosctl, "apply-config", "--insecure", "-n", cp1, "-e", cp1, "-f", str(gen / "cp1.yaml"))
    eventually(lambda: _members(talos, cp2, {"cp1", "cp2", "cp3"}), 90, "the rebuilt cp1 joined")
    eventually(lambda: _members(talos, cp1, {"cp1", "cp2", "cp3"}), 30, "cp1 sees the same cluster")
    splits = twin.state / "_cluster" / "split-brain.json"
    assert not splits.exists()

    # cp3 rebuilt and bootstrapped right after its config (what "bootstrap the first control plane" does
    # when that one was rebuilt): a second etcd cluster of one member; the first one goes on without cp3
    rebuild(twin, nodes, "cp3")
    eventually(lambda: _members(talos, cp2, {"cp1", "cp2"}), 30, "the old cp3 gone from etcd")
    run(talosctl, "apply-config", "--insecure", "-n", cp3, "-e", cp3, "-f", str(gen / "cp3.yaml"))
    talos(cp3, "bootstrap")
    eventually(lambda: _members(talos, cp3, {"cp3"}), 30, "cp3 alone in its own cluster")
    _members(talos, cp2, {"cp1", "cp2"})
    recorded = json.loads(splits.read_text())
    assert [(r["node"], r["others"]) for r in recorded] == [("cp3", ["cp1", "cp2"])]
    assert "SPLIT BRAIN: cp3" in (twin.root / "twin.log").read_text()
