"""Role talos_cluster through the real ansible-playbook against the Talos node twin (with the real etcd and
kube-apiserver behind it): three control planes and a worker of a trimmed lab inventory on 127.94.1.x.

Bootstrap happens once in the cluster's life: when the first control plane is rebuilt while the others
run, the rerun finds their etcd members and does not bootstrap; the rebuilt node joins the running
cluster, and the twin (which shows the split brain a second bootstrap makes, as real Talos does) records
none."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.integration.talos.test_talos_config_role import write_playbooks
from tests.integration.talos.test_talos_lifecycle_modules import tool_path
from tests.lab.test_talos_twin import Twin, run, talosctl, twin_binary  # noqa: F401 # pylint: disable=unused-import
from tests.lab.test_talos_twin_cluster import _members, eventually, rebuild
from tests.playbook_runner import REPO, copy_inventory, lab_env, run_playbook, task_results

# Each test its own /24 (pytest -n 2 may run them at once; every node binds its address).
NETS = {"test_a_rebuilt_first_control_plane_joins_instead_of_bootstrapping_again": "127.94.1",
        "test_a_change_rolls_out_one_node_at_a_time_and_stops_at_an_unhealthy_one": "127.94.2",
        "test_a_worker_booted_from_its_user_data_is_reached_after_the_control_planes": "127.94.3"}
# Tests whose worker1 boots configured from its rendered config as user data (a Hetzner server).
USER_DATA_WORKER = {"test_a_worker_booted_from_its_user_data_is_reached_after_the_control_planes"}


def nodes_on(net):
    return {"cp1": net + ".1", "cp2": net + ".2", "cp3": net + ".3", "worker1": net + ".11"}


def overlay(net):
    return {
        "set": {"cluster_network": {"cidr": net + ".0/24", "gateway": net + ".254", "dns_servers": [net + ".253"],
                                    "api_vip": net + ".100",
                                    "lb_pools": [{"name": "ingress", "addresses": net + ".101"},
                                                 {"name": "dns", "addresses": net + ".102"}]}},
        "remove_hosts": ["worker2", "worker3", "hcloud-worker1"],
        "hosts": {name: {"node_ip": ip} for name, ip in nodes_on(net).items()},
    }


NODES = nodes_on(NETS["test_a_rebuilt_first_control_plane_joins_instead_of_bootstrapping_again"])
NODES_ROLLOUT = nodes_on(NETS["test_a_change_rolls_out_one_node_at_a_time_and_stops_at_an_unhealthy_one"])
BOOTSTRAP = "Bootstrap etcd"  # the start of the role's task name


def render(inventory, env, configs):
    made = run_playbook("-i", str(inventory), playbook=str(configs), env=env)
    assert made.returncode == 0, made.stdout[-4000:]


@pytest.fixture
def cluster_site(request, tmp_path, twin_binary, talosctl):  # noqa: F811
    """A trimmed lab inventory with its configs rendered, a twin serving its nodes, and a playbook running
    the role talos_cluster on them (plus, in rollout.yml, playbook 01's rollout plays after it)."""
    net = NETS[request.node.originalname]
    nodes = nodes_on(net)
    inventory = copy_inventory(tmp_path, "lab", overlay(net))
    env = {**lab_env(tmp_path), "TURNKEY_TALOSCTL": talosctl}
    bundle, configs = write_playbooks(tmp_path)
    for playbook in (bundle, configs):
        render(inventory, env, playbook)
    cluster_play = {"name": "cluster", "hosts": "cluster", "gather_facts": False, "tasks": [{
        "name": "Talos cluster", "ansible.builtin.include_role": {"name": "turnkey.cluster.talos_cluster"}}]}
    role = tmp_path / "cluster.yml"
    role.write_text(yaml.safe_dump([cluster_play]))
    # the rollout plays exactly as layer 01 has them (serial, max_fail_percentage), after the role's main tasks
    layer = yaml.safe_load((REPO / "playbooks" / "01-infrastructure.yml").read_text())
    (tmp_path / "rollout.yml").write_text(yaml.safe_dump(
        [cluster_play] + [play for play in layer if "Talos rollout" in play["name"]], sort_keys=False))
    user_data = ({"worker1": tmp_path / "state" / "talos" / "worker1.yaml"}
                 if request.node.originalname in USER_DATA_WORKER else {})
    twin = Twin(twin_binary, tmp_path, nodes, user_data)
    twin.extra_args = ["--etcd", tool_path("etcd"), "--kube-apiserver", tool_path("kube-apiserver")]
    twin.start(*nodes.values())
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


def test_a_worker_booted_from_its_user_data_is_reached_after_the_control_planes(cluster_site):
    """worker1 never waits in maintenance mode: it booted with its config and serves its API only once a
    control plane's trustd can issue its certificate. The role applies the control planes first, then
    finds worker1 configured (nothing to apply) and every node registers."""
    _twin, inventory, env, role = cluster_site
    results = run_role(inventory, env, role)
    plans = {host: result for task, host, result in results
             if "Find whether the node is a new machine" in task and not result.get("skipped")}
    assert plans["worker1"]["maintenance"] is False
    assert all(plans[name]["maintenance"] for name in ("cp1", "cp2", "cp3"))
    applied = [host for task, host, result in results if "Apply the machine config" in task
               and result.get("changed")]
    assert sorted(applied) == ["cp1", "cp2", "cp3"], applied


CILIUM = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "cilium", "namespace": "kube-system"},
          "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}}, "template": {
              "metadata": {"labels": {"k8s-app": "cilium"}},
              "spec": {"containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.20.0"}]}}}}


def patch_every_node(inventory, patches):
    """The same talos_config patches for every node (group_vars/all), then a host's own on top."""
    (inventory / "group_vars" / "all" / "rollout.yml").write_text(yaml.safe_dump(
        {"talos_config_node_patches": patches}))


def rollout_events(stdout):
    """(step, host) in the order the default callback printed them: 'apply' for a changed apply of the
    rollout, 'healthy' / 'unhealthy' for the wait after it."""
    events, current = [], None
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            current = ("apply" if ": Apply the machine config" in line and "PLAY" not in line else
                       "health" if "Wait until the batch is healthy" in line else None)
        elif current == "apply" and line.startswith("changed: ["):
            events.append(("apply", line.split("[", 1)[1].split("]", 1)[0]))
        elif current == "health" and line.startswith(("ok: [", "fatal: [")):
            host = line.split("[", 1)[1].split("]", 1)[0].split(" -> ")[0]
            events.append(("healthy" if line.startswith("ok") else "unhealthy", host))
    return events


def applies(twin, name):
    return json.loads((twin.state / name / "state.json").read_text())["applies"]


def test_a_change_rolls_out_one_node_at_a_time_and_stops_at_an_unhealthy_one(cluster_site, tmp_path):
    twin, inventory, env, role = cluster_site
    kubectl = tool_path("kubectl")
    kubeconfig = tmp_path / "state" / "kubeconfig"
    rollout = str(tmp_path / "rollout.yml")
    run_role(inventory, env, role)
    # a CNI appears (the twin's stand-in: Cilium's DaemonSet): every node turns Ready
    subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "apply", "-f", "-"], input=json.dumps(CILIUM),
                   text=True, check=True, capture_output=True, timeout=60)
    configs = tmp_path / "configs.yml"

    # a label for every running node: applied one node at a time, control planes first, healthy in between
    patch_every_node(inventory, [{"machine": {"nodeLabels": {"turnkey.test/rollout": "one"}}}])
    render(inventory, env, configs)
    before = {name: len(applies(twin, name)) for name in NODES_ROLLOUT}
    done = run_playbook("-i", str(inventory), "-e", "talos_cluster_health_timeout=180", playbook=rollout, env=env,
                        timeout=900)
    assert done.returncode == 0, done.stdout[-6000:]
    assert rollout_events(done.stdout) == [(step, name) for name in NODES_ROLLOUT
                                           for step in ("apply", "healthy")], done.stdout[-6000:]
    times = [applies(twin, name)[-1]["time"] for name in NODES_ROLLOUT]
    assert times == sorted(times) and all(len(applies(twin, n)) == before[n] + 1 for n in NODES_ROLLOUT)
    labels = {n["metadata"]["name"]: n["metadata"]["labels"] for n in json.loads(subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json"], check=True, capture_output=True,
        text=True, timeout=60).stdout)["items"]}
    assert all(labels[name]["turnkey.test/rollout"] == "one" for name in NODES_ROLLOUT), labels

    # cp2's new config names a kubelet image that cannot be pulled: cp1 goes through, cp2 does not come
    # back healthy, the rollout stops naming it, cp3 and worker1 keep their config
    patch_every_node(inventory, [{"machine": {"nodeLabels": {"turnkey.test/rollout": "two"}}}])
    (inventory / "host_vars" / "cp2.yml").write_text(yaml.safe_dump({
        "node_ip": NODES_ROLLOUT["cp2"],
        "talos_config_node_patches": [{"machine": {"nodeLabels": {"turnkey.test/rollout": "two"},
                                                   "kubelet": {"image": "ghcr.io/siderolabs/kubelet:broken"}}}]}))
    render(inventory, env, configs)
    before = {name: len(applies(twin, name)) for name in NODES_ROLLOUT}
    stopped = run_playbook("-i", str(inventory), "-e", "talos_cluster_rollout_timeout=10", playbook=rollout,
                           env=env, timeout=900)
    assert stopped.returncode != 0
    assert rollout_events(stopped.stdout) == [("apply", "cp1"), ("healthy", "cp1"), ("apply", "cp2"),
                                              ("unhealthy", "cp2")], stopped.stdout[-6000:]
    assert "rollout stopped at cp2: not healthy after the new config" in stopped.stdout
    assert "nodes not Ready: cp2 (NodeStatusUnknown" in stopped.stdout
    assert {name: len(applies(twin, name)) - before[name] for name in NODES_ROLLOUT} == \
        {"cp1": 1, "cp2": 1, "cp3": 0, "worker1": 0}
