"""Role cilium ends healthy, not just installed: it waits for a Ready agent on every expected node and an
available operator, and names what is missing. No kubelet runs next to this API server, so the test plays
the kubelet's part by writing the pods' and the Deployment's status, as a node would report them."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.cluster.conftest import cilium_env, kube
from tests.playbook_runner import copy_inventory, recap, run_playbook

NODES = ["node-a", "node-b"]


def cilium_playbook(tmp_path, kubeconfig):
    playbook = tmp_path / "cilium.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "cilium", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Cilium", "ansible.builtin.include_role": {"name": "turnkey.cluster.cilium"},
                   "vars": {"cilium_kubeconfig": str(kubeconfig)}}]}]))
    return playbook


def report_agent_ready(found, kubeconfig, node):
    """What the kubelet on `node` does for the DaemonSet's pod: the pod bound to it, then Ready."""
    name = "cilium-" + node
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "cilium"}},
           "spec": {"nodeName": node, "serviceAccountName": "cilium", "automountServiceAccountToken": False,
                    "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.20.0"}]}}
    kube(found, kubeconfig, "apply", "-f", "-", stdin=json.dumps(pod))
    status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    kube(found, kubeconfig, "patch", "pod", name, "-n", "kube-system", "--subresource=status", "--type=merge",
         "-p", json.dumps(status))


@pytest.fixture
def run(tmp_path, control_plane):
    """Runs the role on the lab inventory with a short wait for the two NODES; extra ansible args."""
    kubeconfig, found = control_plane
    inventory = copy_inventory(tmp_path, "lab")
    playbook = cilium_playbook(tmp_path, kubeconfig)
    env = cilium_env(tmp_path, found)

    def play(*extra):
        return run_playbook("-i", str(inventory), "-e", "cilium_wait_ready=true", "-e", "cilium_ready_timeout=6",
                            "-e", json.dumps({"cilium_expected_nodes": NODES}), *extra, playbook=str(playbook),
                            env=env)
    return play


def test_the_role_waits_for_every_agent_and_the_operator(run, control_plane):
    kubeconfig, found = control_plane
    # Installed, but no agent runs: the run fails naming both nodes and the operator.
    waiting = run()
    assert waiting.returncode != 0
    assert "no Ready agent on node-a, node-b" in waiting.stdout, waiting.stdout[-3000:]
    assert "operator 0/2 available" in waiting.stdout, waiting.stdout[-3000:]

    # One agent Ready: the other node is still named.
    report_agent_ready(found, kubeconfig, "node-a")
    half = run()
    assert half.returncode != 0
    assert "no Ready agent on node-b" in half.stdout and "node-a," not in half.stdout, half.stdout[-3000:]

    # Every agent Ready and the operator available: the layer may go on, and nothing changes.
    report_agent_ready(found, kubeconfig, "node-b")
    available = {"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2}}
    kube(found, kubeconfig, "patch", "deployment", "cilium-operator", "-n", "kube-system", "--subresource=status",
         "--type=merge", "-p", json.dumps(available))
    healthy = run()
    assert healthy.returncode == 0, healthy.stdout[-3000:]
    assert recap(healthy.stdout)["localhost"]["changed"] == 0, healthy.stdout[-3000:]


def test_l2_announcements_need_pools(run):
    """Announcements on with no pool is refused before helm runs."""
    no_pools = {"cluster_network": {"pod_cidr": "10.244.0.0/16", "lb_pools": []}}
    refused = run("-e", "cilium_l2_announcements=true", "-e", json.dumps(no_pools))
    assert refused.returncode != 0
    assert "cluster_network.lb_pools is empty" in refused.stdout, refused.stdout[-3000:]
