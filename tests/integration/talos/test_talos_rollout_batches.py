"""A changed config rolls out in configurable batches (issue 10, item 12): with talos_cluster_rollout_batch=2
playbook 01's rollout plays apply the two workers together, in one batch, and wait once for both to be
healthy; the control planes still go one at a time, each healthy before the next is touched.

Three control planes and two workers of a trimmed lab inventory on 127.98.1.x, served by the Talos node twin
with the real etcd and kube-apiserver behind it. The role runs the talosctl its variable
talos_cluster_talosctl names (a wrapper that records its calls, item 17)."""

from __future__ import annotations

import json
import subprocess

import yaml

from tests.integration.talos.test_talos_cluster_role import (
    CILIUM,
    applies,
    patch_every_node,
    render,
    rollout_events,
)
from tests.integration.talos.test_talos_config_role import write_playbooks
from tests.integration.talos.test_talos_lifecycle_modules import tool_path
from tests.integration.talos.test_talos_tool_variables import calls, wrapper
from tests.lab.test_talos_twin import Twin, talosctl, twin_binary  # noqa: F401 # pylint: disable=unused-import
from tests.playbook_runner import REPO, copy_inventory, lab_env, run_playbook

NET = "127.98.1"
NODES = {"cp1": NET + ".1", "cp2": NET + ".2", "cp3": NET + ".3", "worker1": NET + ".11", "worker2": NET + ".12"}
CONTROL_PLANES = ("cp1", "cp2", "cp3")
WORKERS = ("worker1", "worker2")
OVERLAY = {
    "set": {"cluster_network": {"cidr": NET + ".0/24", "gateway": NET + ".254", "dns_servers": [NET + ".253"],
                                "api_vip": NET + ".100",
                                "lb_pools": [{"name": "ingress", "addresses": NET + ".101"},
                                             {"name": "dns", "addresses": NET + ".102"}]}},
    "remove_hosts": ["worker3", "hcloud-worker1"],
    "hosts": {name: {"node_ip": ip} for name, ip in NODES.items()},
}


def test_workers_roll_two_at_a_time_control_planes_one_at_a_time(tmp_path, twin_binary, talosctl):  # noqa: F811
    inventory = copy_inventory(tmp_path, "lab", OVERLAY)
    env = {**lab_env(tmp_path), "TURNKEY_TALOSCTL": talosctl}
    bundle, configs = write_playbooks(tmp_path)
    for playbook in (bundle, configs):
        render(inventory, env, playbook)
    named, named_log = wrapper(tmp_path, "cluster-talosctl", talosctl)
    cluster_play = {"name": "cluster", "hosts": "cluster", "gather_facts": False, "tasks": [{
        "name": "Talos cluster", "ansible.builtin.include_role": {"name": "turnkey.cluster.talos_cluster"}}]}
    layer = yaml.safe_load((REPO / "playbooks" / "01-infrastructure.yml").read_text())
    rollout = tmp_path / "rollout.yml"  # the role, then the rollout plays exactly as layer 01 has them
    rollout.write_text(yaml.safe_dump([cluster_play] + [play for play in layer if "Talos rollout" in play["name"]],
                                      sort_keys=False))
    flags = ["-i", str(inventory), "-e", "talos_cluster_health_timeout=180", "-e", "talos_cluster_talosctl=" + named]
    twin = Twin(twin_binary, tmp_path, NODES)
    twin.extra_args = ["--etcd", tool_path("etcd"), "--kube-apiserver", tool_path("kube-apiserver")]
    twin.start(*NODES.values())
    try:
        built = run_playbook(*flags, playbook=str(rollout), env=env, timeout=900)
        assert built.returncode == 0, built.stdout[-6000:]
        # the role ran the talosctl of its variable (the environment names another one)
        assert {"apply-config", "bootstrap", "kubeconfig"} <= set(calls(named_log)), calls(named_log)
        kubeconfig = tmp_path / "state" / "kubeconfig"
        subprocess.run([tool_path("kubectl"), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
                       input=json.dumps(CILIUM), text=True, check=True, capture_output=True, timeout=60)

        patch_every_node(inventory, [{"machine": {"nodeLabels": {"turnkey.test/rollout": "batched"}}}])
        render(inventory, env, configs)
        before = {name: len(applies(twin, name)) for name in NODES}
        done = run_playbook(*flags, "-e", "talos_cluster_rollout_batch=2", playbook=str(rollout), env=env,
                            timeout=900)
        assert done.returncode == 0, done.stdout[-6000:]
    finally:
        twin.stop()
    events = rollout_events(done.stdout)
    # control planes: one apply, then that node healthy, before the next control plane is touched
    assert events[:6] == [(step, name) for name in CONTROL_PLANES for step in ("apply", "healthy")], events
    # workers: both applied in one batch, then one health wait for the batch (reported on its first host)
    assert sorted(events[6:8]) == [("apply", "worker1"), ("apply", "worker2")], events
    assert events[8:] == [("healthy", "worker1")], events
    assert {name: len(applies(twin, name)) - before[name] for name in NODES} == dict.fromkeys(NODES, 1)
    times = {name: applies(twin, name)[-1]["time"] for name in NODES}
    assert times["cp1"] <= times["cp2"] <= times["cp3"] <= min(times[w] for w in WORKERS)
