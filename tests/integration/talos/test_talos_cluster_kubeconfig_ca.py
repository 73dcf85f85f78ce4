"""Role talos_cluster checks the admin kubeconfig's CA against the cluster's own (the layer 00 bundle's
Kubernetes CA): a kubeconfig that trusts another CA is fetched again. One control plane of a trimmed lab
inventory, served by the Talos node twin with the real etcd and kube-apiserver behind it, on 127.93.5.x."""

from __future__ import annotations

import yaml

from tests.integration.talos.test_talos_config_role import write_playbooks
from tests.integration.talos.test_talos_lifecycle_modules import tool_path
from tests.lab.test_talos_twin import Twin, talosctl, twin_binary  # noqa: F401 # pylint: disable=unused-import
from tests.playbook_runner import TEST_VAULT_PASSWORD, copy_inventory, lab_env, run_playbook, task_results
from tests.store_access import open_store

NET = "127.93.5"
OVERLAY = {
    "set": {"cluster_network": {"cidr": NET + ".0/24", "gateway": NET + ".254", "dns_servers": [NET + ".253"],
                                "api_vip": NET + ".100", "lb_pools": [{"name": "ingress", "addresses": NET + ".101"}]}},
    "remove_hosts": ["cp2", "cp3", "worker1", "worker2", "worker3", "hcloud-worker1"],
    "hosts": {"cp1": {"node_ip": NET + ".1"}},
}
FETCH = "Fetch the admin kubeconfig (0600, renewed before it expires)"


def test_a_kubeconfig_trusting_another_ca_is_replaced_by_the_role(tmp_path, twin_binary, talosctl):  # noqa: F811
    inventory = copy_inventory(tmp_path, "lab", OVERLAY)
    env = {**lab_env(tmp_path), "TURNKEY_TALOSCTL": talosctl}
    for playbook in write_playbooks(tmp_path):
        made = run_playbook("-i", str(inventory), playbook=str(playbook), env=env)
        assert made.returncode == 0, made.stdout[-4000:]
    role = tmp_path / "cluster.yml"
    role.write_text(yaml.safe_dump([{"name": "cluster", "hosts": "cluster", "gather_facts": False, "tasks": [{
        "name": "Talos cluster", "ansible.builtin.include_role": {"name": "turnkey.cluster.talos_cluster"}}]}]))
    stored = open_store(inventory / "secrets", TEST_VAULT_PASSWORD).read("talos_secrets")
    bundle = yaml.safe_load(stored["data"]["bundle"])
    kubeconfig = tmp_path / "state" / "kubeconfig"

    def fetch_result():
        done = run_playbook("-i", str(inventory), "-e", "talos_cluster_health_timeout=180", playbook=str(role),
                            env=env, json_output=True, timeout=900)
        results = task_results(done.stdout)
        assert done.returncode == 0, [(t, h, r.get("msg")) for t, h, r in results if r.get("failed")]
        [result] = [result for task, _host, result in results if FETCH in task]
        return result

    twin = Twin(twin_binary, tmp_path, {"cp1": NET + ".1"})
    twin.extra_args = ["--etcd", tool_path("etcd"), "--kube-apiserver", tool_path("kube-apiserver")]
    twin.start(NET + ".1")
    try:
        assert fetch_result()["changed"]
        assert not fetch_result()["changed"]
        # the kubeconfig now trusts another CA (the Talos API's, a CA of this very cluster, but not Kubernetes')
        document = yaml.safe_load(kubeconfig.read_text())
        document["clusters"][0]["cluster"]["certificate-authority-data"] = bundle["certs"]["os"]["crt"]
        kubeconfig.write_text(yaml.safe_dump(document))
        replaced = fetch_result()
        assert replaced["changed"] and replaced["reasons"] == ["CA differs"], replaced
        trusted = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["certificate-authority-data"]
        assert trusted == bundle["certs"]["k8s"]["crt"]
    finally:
        twin.stop()
