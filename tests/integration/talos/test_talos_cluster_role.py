"""Role talos_cluster through the real ansible-playbook against the Talos node twin (with the real etcd and
kube-apiserver behind it): three control planes and a worker of a trimmed lab inventory on 127.94.1.x.

Bootstrap happens once in the cluster's life: when the first control plane is rebuilt while the others
run, the rerun finds their etcd members and does not bootstrap; the rebuilt node joins the running
cluster, and the twin (which shows the split brain a second bootstrap makes, as real Talos does) records
none."""

from __future__ import annotations

import pytest
import yaml

from tests.integration.talos.test_talos_config_role import write_playbooks
from tests.integration.talos.test_talos_lifecycle_modules import tool_path
from tests.lab.test_talos_twin import Twin, run, talosctl, twin_binary  # noqa: F401 # pylint: disable=unused-import
from tests.lab.test_talos_twin_cluster import _members, eventually, rebuild
from tests.playbook_runner import copy_inventory, lab_env, run_playbook, task_results

NET = "127.94.1"
NODES = {"cp1": NET + ".1", "cp2": NET + ".2", "cp3": NET + ".3", "worker1": NET + ".11"}
VIP = NET + ".100"
OVERLAY = {
    "set": {"cluster_network": {"cidr": NET + ".0/24", "gateway": NET + ".254", "dns_servers": [NET + ".253"],
                                "api_vip": VIP, "lb_pools": [{"name": "ingress", "addresses": NET + ".101"},
                                                             {"name": "dns", "addresses": NET + ".102"}]}},
    "remove_hosts": ["worker2", "worker3", "hcloud-worker1"],
    "hosts": {name: {"node_ip": ip} for name, ip in NODES.items()},
}
BOOTSTRAP = "Bootstrap etcd"  # the start of the role's task name


@pytest.fixture
def cluster_site(tmp_path, twin_binary, talosctl):  # noqa: F811
    """A trimmed lab inventory with its configs rendered, a twin serving its nodes, and a playbook running
    the role talos_cluster on them."""
    inventory = copy_inventory(tmp_path, "lab", OVERLAY)
    env = {**lab_env(tmp_path), "TURNKEY_TALOSCTL": talosctl}
    bundle, configs = write_playbooks(tmp_path)
    for playbook in (bundle, configs):
        made = run_playbook("-i", str(inventory), playbook=str(playbook), env=env)
        assert made.returncode == 0, made.stdout[-4000:]
    role = tmp_path / "cluster.yml"
    role.write_text(yaml.safe_dump([{"name": "cluster", "hosts": "cluster", "gather_facts": False, "tasks": [{
        "name": "Talos cluster", "ansible.builtin.include_role": {"name": "turnkey.cluster.talos_cluster"}}]}]))
    twin = Twin(twin_binary, tmp_path, NODES)
    twin.extra_args = ["--etcd", tool_path("etcd"), "--kube-apiserver", tool_path("kube-apiserver")]
    twin.start(*NODES.values())
    try:
        yield twin, inventory, env, role
    finally:
        twin.stop()


def run_role(inventory, env, role, *flags):
    done = run_playbook("-i", str(inventory), "-e", "talos_cluster_health_timeout=180", *flags,
                        playbook=str(role), env=env, json_output=True, timeout=900)
    results = task_results(done.stdout)
    assert done.returncode == 0, [(task, host, result.get("msg")) for task, host, result in results
                                  if result.get("failed")]
    return results


def bootstrap_result(results):
    [result] = [result for task, _host, result in results if BOOTSTRAP in task]
    return result


def test_a_rebuilt_first_control_plane_joins_instead_of_bootstrapping_again(cluster_site, talosctl, tmp_path):  # noqa: F811
    twin, inventory, env, role = cluster_site
    talosconfig = str(tmp_path / "state" / "talos" / "talosconfig")

    def talos(node, *args):
        return run(talosctl, "--talosconfig", talosconfig, "-n", node, "-e", node, *args).output

    first = bootstrap_result(run_role(inventory, env, role))
    assert first["changed"] and first["bootstrapped"] and first["node"] == NODES["cp1"]
    again = bootstrap_result(run_role(inventory, env, role, "--check"))
    assert not again["changed"] and again["members_on"] == NODES["cp1"]

    # cp1's machine is replaced while cp2 and cp3 run etcd: the rerun must not bootstrap it again
    rebuild(twin, NODES, "cp1")
    eventually(lambda: _members(talos, NODES["cp2"], {"cp2", "cp3"}), 30, "the old cp1 gone from etcd")
    checked = bootstrap_result(run_role(inventory, env, role, "--check"))
    assert not checked["changed"] and checked["members_on"] == NODES["cp2"]
    results = run_role(inventory, env, role)
    rerun = bootstrap_result(results)
    assert not rerun["changed"] and not rerun["bootstrapped"], rerun
    assert rerun["members_on"] == NODES["cp2"] and sorted(rerun["members"]) == ["cp2", "cp3"]
    assert "no bootstrap" in rerun["msg"]
    # the role's health step waited for cp1 in etcd; one cluster, seen the same from every control plane
    for name in ("cp1", "cp2", "cp3"):
        _members(talos, NODES[name], {"cp1", "cp2", "cp3"})
    splits = twin.state / "_cluster" / "split-brain.json"
    assert not splits.exists(), splits.read_text()
    assert "SPLIT BRAIN" not in (twin.root / "twin.log").read_text()
