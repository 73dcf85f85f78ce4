"""The hybrid rule of the cluster spec (plugins/module_utils/cluster_spec.py, check_hybrid): nodes at home and
on Hetzner form one cluster only with KubeSpan and discovery on; the admin networks are CIDRs; the Hetzner
nodes' Talos API, Kubernetes API and trustd are not open to the whole internet unless the operator says so."""

from __future__ import annotations

import sys

import pytest

from tests.playbook_runner import REPO

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

sys.path.insert(0, str(REPO / "collections"))
from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import (  # noqa: E402
    SpecErrors,
    check_hybrid,
)

HOME = {"name": "cp1", "providers": ["proxmox"]}
CLOUD = {"name": "hcloud-worker1", "providers": ["hetzner"]}
ADMINS = {"admin_cidrs": ["203.0.113.7/32"]}


def problems(hybrid, nodes=(HOME, CLOUD)):
    errors = SpecErrors()
    spec = {} if hybrid is None else {"hybrid": hybrid}
    check_hybrid(errors, spec, list(nodes))
    return list(errors)


def fields(found):
    return [p.split(":")[0] for p in found]


def test_hybrid_inventory_needs_kubespan_and_discovery():
    assert problems(ADMINS) == [
        "hybrid.kubespan: nodes are in both proxmox_nodes and hetzner_nodes but KubeSpan is off, so the two sites "
        "cannot reach each other's private addresses. Fix: set hybrid.kubespan: true and hybrid.discovery: true "
        "(WireGuard between the sites, 51820/udp)."]
    assert problems({"kubespan": True, **ADMINS}) == [
        "hybrid.discovery: KubeSpan is on but cluster discovery is off; KubeSpan peers find each other through "
        "discovery. Fix: set hybrid.discovery: true."]
    assert problems({"kubespan": True, "discovery": True, **ADMINS}) == []


@pytest.mark.parametrize("nodes", [(HOME,), ()])
def test_no_cloud_node_needs_nothing(nodes):
    assert problems(None, nodes) == [] and problems({"kubespan": False}, nodes) == []
    # nothing is opened on Hetzner: a world-open list is no exposure there
    assert problems({"admin_cidrs": ["0.0.0.0/0"]}, nodes) == []


def test_cloud_nodes_alone_need_only_their_admin_networks():
    assert problems(ADMINS, (CLOUD,)) == []


def test_admin_cidrs():
    on = {"kubespan": True, "discovery": True}
    assert problems({**on, "admin_cidrs": ["203.0.113.0/24", "2001:db8::/48", "10.0.0.0/8"]}) == []
    assert fields(problems({**on, "admin_cidrs": ["203.0.113.1/24", "nope"]})) == [
        "hybrid.admin_cidrs[0]", "hybrid.admin_cidrs[1]"]
    assert problems({**on, "admin_cidrs": []})[0].startswith("hybrid.admin_cidrs: the list is empty")


def test_world_open_ports_of_cloud_nodes_are_refused():
    on = {"kubespan": True, "discovery": True}
    # unset means the whole internet; so do the zero prefixes, halves of it and anything broader than a /8 (/12)
    assert fields(problems(on)) == ["hybrid.admin_cidrs"] and "not set" in problems(on)[0]
    for world in (["0.0.0.0/0"], ["::/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["64.0.0.0/7"], ["2000::/3"]):
        found = problems({**on, "admin_cidrs": ["203.0.113.7/32", *world]})
        assert fields(found) == ["hybrid.admin_cidrs"], (world, found)
        assert " and ".join(world) in found[0] and "allow_world_open" in found[0]
    # the Kubernetes API and trustd follow admin_cidrs unless set; set, they are checked on their own
    found = problems({**on, **ADMINS, "kubernetes_api_cidrs": ["0.0.0.0/0"], "trustd_cidrs": ["::/0"]})
    assert fields(found) == ["hybrid.kubernetes_api_cidrs", "hybrid.trustd_cidrs"]
    assert "the Kubernetes API (6443/tcp)" in found[0] and "trustd (50001/tcp)" in found[1]
    assert fields(problems({**on, **ADMINS, "trustd_cidrs": ["bad"]})) == ["hybrid.trustd_cidrs[0]"]
    # not world-open: a /8 of IPv4, a /12 of IPv6
    assert problems({**on, "admin_cidrs": ["10.0.0.0/8", "2000::/12"]}) == []


def test_the_operator_may_accept_world_open_ports():
    on = {"kubespan": True, "discovery": True, "allow_world_open": True}
    assert problems(on) == []
    assert problems({**on, "admin_cidrs": ["0.0.0.0/0", "::/0"], "trustd_cidrs": ["0.0.0.0/0"]}) == []
    # still CIDRs
    assert fields(problems({**on, "admin_cidrs": ["0.0.0.0/0", "nope"]})) == ["hybrid.admin_cidrs[1]"]
