"""The lab's stand-in for cilium-operator (lab/turnkey_lab/components/cilium_operator.py): it waits for the operator's
Deployment, then, as the operator's ServiceAccount, registers Cilium's CRDs from the module of the chart's version and
hands out LoadBalancer addresses from the CiliumLoadBalancerIPPools, as the real operator's LB IPAM does.

The cluster is the real etcd + kube-apiserver of tests/integration/cluster (no kubelet, no controllers); the lab
finds it where the Talos twin keeps a cluster (test_lab_flux.twin_cluster). Cilium is installed by the collection's
own role with the real chart (no wait for agents: nothing plays the kubelet here). Lab net 127.109.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.integration.cluster.conftest import control_plane  # noqa: F401  # pylint: disable=unused-import
from tests.integration.cluster.test_cilium_ready import cilium_playbook
from tests.lab.test_lab_flux import Cluster, condition, twin_cluster
from tests.playbook_runner import copy_inventory, lab_env, run_playbook
from tests.tools import built_tools

from .conftest import REPO, wait_for

NET = "127.109"
NEEDED = ("TURNKEY_KUBECTL", "TURNKEY_HELM", "TURNKEY_CILIUM_CHART", "TURNKEY_CILIUM_CRDS")
TREE = REPO / "k8s" / "platform" / "cilium-lb"
# What Cilium v1.20's operator registers for the chart's default config plus the lab's l2announcements
# (synced.AllCiliumCRDResourceNames: no endpoint slices, BGP, egress gateway, envoy config or Gateway API).
EXPECTED_CRDS = {"ciliumidentities", "ciliumpodippools", "ciliumendpoints", "ciliumnodes", "ciliumnetworkpolicies",
                 "ciliumclusterwidenetworkpolicies", "ciliumcidrgroups", "ciliumloadbalancerippools",
                 "ciliuml2announcementpolicies", "ciliumnodeconfigs"}


@pytest.fixture
def operator_lab(control_plane, make_lab, tmp_path):  # noqa: F811 - pytest's fixture by name
    kubeconfig, _found = control_plane
    tools = built_tools(*NEEDED)
    lab = make_lab(NET)
    twin_cluster(lab.root, kubeconfig)
    yield lab, Cluster(kubeconfig, tools["TURNKEY_KUBECTL"]), kubeconfig, tools
    log = lab.root / "logs" / "cilium-operator.log"
    if log.is_file():  # what the stand-in said, for a failure's report
        print("---- cilium-operator (last lines)\n" + "\n".join(log.read_text().splitlines()[-30:]))


def cilium_crds(cluster: Cluster) -> dict[str, dict]:
    items = cluster.get("customresourcedefinitions", "--show-managed-fields")["items"]
    return {crd["spec"]["names"]["plural"]: crd for crd in items if crd["spec"]["group"] == "cilium.io"}


def detail(lab) -> str:
    return lab.json("run/status.json")["components"]["cilium-operator"]["detail"]


def install_cilium(tmp_path: Path, kubeconfig: Path, tools: dict):
    """The collection's cilium role with the lab inventory (its pools switch L2 announcements on)."""
    inventory = copy_inventory(tmp_path, "lab")
    env = {**lab_env(tmp_path), "TURNKEY_HELM": tools["TURNKEY_HELM"],
           "TURNKEY_CILIUM_CHART": tools["TURNKEY_CILIUM_CHART"]}
    # ingress off: this test hands the ingress pool's one address to a Service of its own
    return run_playbook("-i", str(inventory), "-e", json.dumps({"cilium_wait_ready": False, "cilium_ingress": False}),
                        playbook=str(cilium_playbook(tmp_path, kubeconfig)), env=env)


def service(name: str, labels: dict | None = None, annotations: dict | None = None, kind: str = "LoadBalancer"):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"type": kind, "selector": {"app": name}, "ports": [{"port": 443, "protocol": "TCP"}]}}


def addresses(cluster: Cluster, name: str) -> list[str]:
    status = cluster.get("service", name, "-n", "default")["status"]
    return [item["ip"] for item in status.get("loadBalancer", {}).get("ingress") or []]


def counts(cluster: Cluster, pool: str) -> dict:
    found = cluster.get("ciliumloadbalancerippool", pool) or {}
    kinds = ("IPsTotal", "IPsAvailable", "IPsUsed")
    return {kind: condition(found, "cilium.io/" + kind).get("message") for kind in kinds}


def test_operator_registers_crds_and_hands_out_addresses(operator_lab, tmp_path):
    lab, cluster, kubeconfig, tools = operator_lab
    lab.run("up", "--components", "cilium-operator")
    state = lab.status()["components"]["cilium-operator"]
    assert state["healthy"] and state["detail"].startswith("waiting"), state
    wait_for(lambda: "(no Deployment kube-system/cilium-operator)" in detail(lab), 30)
    # nothing has registered Cilium's CRDs: the tree's pools cannot be applied yet
    assert cilium_crds(cluster) == {}
    refused = cluster.run("apply", "--server-side", "-f", str(TREE / "pool-services.yaml"), ok=False)
    assert refused.returncode != 0 and "no matches for kind" in refused.stderr, refused.stderr

    installed = install_cilium(tmp_path, kubeconfig, tools)
    assert installed.returncode == 0, installed.stdout[-3000:]
    wait_for(lambda: detail(lab) == "cilium-operator ready", timeout=180, interval=1)

    # the CRDs the real operator registers for this config, at the module's schema version, Established
    schema = (Path(tools["TURNKEY_CILIUM_CRDS"]) / "schema-version").read_text().strip()
    crds = cilium_crds(cluster)
    assert set(crds) == EXPECTED_CRDS, sorted(crds)
    for crd in crds.values():
        assert crd["metadata"]["labels"]["io.cilium.k8s.crd.schema.version"] == schema
        assert condition(crd, "Established")["status"] == "True"
        managers = {m["manager"] for m in crd["metadata"]["managedFields"] if m.get("subresource") != "status"}
        assert managers == {"cilium-operator"}, crd["metadata"]["managedFields"]

    # it runs as the operator's ServiceAccount, with the chart's RBAC (which grants no patch on CRDs)
    own = lab.root / "components" / "cilium-operator" / "kubeconfig"
    assert oct(own.stat().st_mode & 0o777) == "0o600"
    whoami = json.loads(cluster.run("auth", "whoami", "-o", "json", kubeconfig=own).stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:kube-system:cilium-operator"
    assert cluster.run("auth", "can-i", "patch", "customresourcedefinitions", ok=False,
                       kubeconfig=own).stdout.strip() == "no"

    # the tree's pools and announcement policy apply now (the example inventory's pools, as the role writes them)
    for name in ("pool-services.yaml", "pool-ingress.yaml", "pool-dns.yaml"):
        cluster.run("apply", "--server-side", "-f", str(TREE / name))
    policy = (TREE / "l2-policy.yaml").read_text().replace("${l2_node_region}", "home")
    cluster.run("apply", "--server-side", "-f", "-", stdin=policy)

    cluster.apply(service("web"))
    cluster.apply(service("gateway", labels={"lb.turnkey.cluster/pool": "ingress"}))
    cluster.apply(service("pinned", annotations={"lbipam.cilium.io/ips": "192.0.2.50"}))
    cluster.apply(service("wrong-pool", labels={"lb.turnkey.cluster/pool": "dns"},
                          annotations={"lbipam.cilium.io/ips": "10.2.3.5"}))
    cluster.apply(service("internal", kind="ClusterIP"))
    # an auto-assign pool's lowest address, and the labelled pool's only one
    assert wait_for(lambda: addresses(cluster, "web"), 60) == ["10.2.3.4"]
    assert wait_for(lambda: addresses(cluster, "gateway"), 60) == ["10.2.3.2"]
    web = cluster.get("service", "web", "-n", "default")
    assert condition(web, "cilium.io/IPAMRequestSatisfied")["status"] == "True"
    assert condition(web, "cilium.io/IPAMRequestSatisfied")["reason"] == "satisfied"

    # an address outside every pool stays pending, saying why; so does one of a pool that does not select it
    def unsatisfied(name):
        return lambda: condition(cluster.get("service", name, "-n", "default"), "cilium.io/IPAMRequestSatisfied")
    pinned = wait_for(unsatisfied("pinned"), 60)
    assert (pinned["status"], pinned["reason"]) == ("False", "no_pool"), pinned
    assert pinned["message"] == "No pool exists with a CIDR containing '192.0.2.50'"
    wrong = wait_for(unsatisfied("wrong-pool"), 60)
    assert (wrong["status"], wrong["reason"]) == ("False", "pool_selector_mismatch"), wrong
    assert addresses(cluster, "pinned") == [] and addresses(cluster, "wrong-pool") == []
    # the ingress pool's only address is taken: asked for, and not
    cluster.apply(service("taken", labels={"lb.turnkey.cluster/pool": "ingress"},
                          annotations={"lbipam.cilium.io/ips": "10.2.3.2"}))
    cluster.apply(service("full", labels={"lb.turnkey.cluster/pool": "ingress"}))
    taken, full = wait_for(unsatisfied("taken"), 60), wait_for(unsatisfied("full"), 60)
    assert (taken["reason"], taken["message"]) == ("already_allocated",
                                                   "The IP '10.2.3.2' is already allocated to another service")
    assert full["reason"] == "out_of_ips", full
    assert addresses(cluster, "taken") == [] and addresses(cluster, "full") == []
    cluster.run("delete", "service", "taken", "full", "-n", "default")
    assert cluster.get("service", "internal", "-n", "default")["status"] == {"loadBalancer": {}}

    # the pools' status as the operator writes it
    assert wait_for(lambda: counts(cluster, "services")["IPsUsed"] == "1" and counts(cluster, "services"), 30) == \
        {"IPsTotal": "17", "IPsAvailable": "16", "IPsUsed": "1"}
    assert counts(cluster, "dns") == {"IPsTotal": "1", "IPsAvailable": "1", "IPsUsed": "0"}
    services_pool = cluster.get("ciliumloadbalancerippool", "services")
    assert condition(services_pool, "cilium.io/PoolConflict")["status"] == "False"

    # a newer pool overlapping an older one is marked and hands out nothing
    cluster.apply({"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "overlap"},
                   "spec": {"blocks": [{"cidr": "10.2.3.16/30"}]}})
    conflict = wait_for(lambda: condition(cluster.get("ciliumloadbalancerippool", "overlap"),
                                          "cilium.io/PoolConflict").get("status") == "True"
                        and condition(cluster.get("ciliumloadbalancerippool", "overlap"), "cilium.io/PoolConflict"), 30)
    assert conflict["reason"] == "cidr_overlap"
    assert conflict["message"] == ("Pool conflicts since range '10.2.3.16 - 10.2.3.19' overlaps range "
                                   "'10.2.3.4 - 10.2.3.20' from IP Pool 'services'")

    # a pool that covers the pinned address: the Service gets exactly it
    cluster.apply({"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "docs"},
                   "spec": {"blocks": [{"cidr": "192.0.2.48/29"}], "allowFirstLastIPs": "No"}})
    assert wait_for(lambda: addresses(cluster, "pinned"), 60) == ["192.0.2.50"]
    assert wait_for(lambda: counts(cluster, "docs")["IPsUsed"] == "3" and counts(cluster, "docs"), 30) == \
        {"IPsTotal": "8", "IPsAvailable": "5", "IPsUsed": "3"}  # the first and last are reserved

    # a restart (new schema version on disk, or a crash) keeps every address and brings an old CRD up to date
    crd = "ciliumloadbalancerippools.cilium.io"
    cluster.run("label", "crd", crd, "io.cilium.k8s.crd.schema.version=1.0.0", "--overwrite")
    pid = int((lab.root / "run" / "cilium-operator.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: cluster.get("crd", crd)["metadata"]["labels"]["io.cilium.k8s.crd.schema.version"] == schema, 120,
             interval=1)
    wait_for(lambda: detail(lab) == "cilium-operator ready", timeout=120, interval=1)
    # a Service made now is served (the first pool by name that selects it: docs, its first free address), so a
    # whole round has run since the restart
    cluster.apply(service("after-restart"))
    assert wait_for(lambda: addresses(cluster, "after-restart"), 60) == ["192.0.2.49"]
    assert addresses(cluster, "web") == ["10.2.3.4"] and addresses(cluster, "gateway") == ["10.2.3.2"]
    assert addresses(cluster, "pinned") == ["192.0.2.50"]

    # a deleted Service's address goes back to its pool
    cluster.run("delete", "service", "web", "-n", "default")
    assert wait_for(lambda: counts(cluster, "services")["IPsUsed"] == "0" and counts(cluster, "services"), 30) == \
        {"IPsTotal": "17", "IPsAvailable": "17", "IPsUsed": "0"}

    # the operator uninstalled: the stand-in stops and waits again; the CRDs stay, as on a cluster
    cluster.run("delete", "deployment", "cilium-operator", "-n", "kube-system")
    wait_for(lambda: "(no Deployment kube-system/cilium-operator)" in detail(lab), 60, interval=1)
    assert set(cilium_crds(cluster)) == EXPECTED_CRDS
