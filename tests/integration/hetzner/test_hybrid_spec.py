"""The hybrid rule of the cluster spec (plugins/module_utils/cluster_spec.py, check_hybrid): nodes at home and
on Hetzner form one cluster only with KubeSpan and discovery on; the admin networks are CIDRs."""

from __future__ import annotations

import sys

import pytest

from tests.playbook_runner import REPO

sys.path.insert(0, str(REPO / "collections"))
from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import (  # noqa: E402
    SpecErrors,
    check_hybrid,
)

HOME = {"name": "cp1", "providers": ["proxmox"]}
CLOUD = {"name": "hcloud-worker1", "providers": ["hetzner"]}


def problems(hybrid, nodes=(HOME, CLOUD)):
    errors = SpecErrors()
    spec = {} if hybrid is None else {"hybrid": hybrid}
    check_hybrid(errors, spec, list(nodes))
    return list(errors)


def test_hybrid_inventory_needs_kubespan_and_discovery():
    assert problems(None) == [
        "hybrid.kubespan: nodes are in both proxmox_nodes and hetzner_nodes but KubeSpan is off, so the two sites "
        "cannot reach each other's private addresses. Fix: set hybrid.kubespan: true and hybrid.discovery: true "
        "(WireGuard between the sites, 51820/udp)."]
    assert problems({"kubespan": True}) == [
        "hybrid.discovery: KubeSpan is on but cluster discovery is off; KubeSpan peers find each other through "
        "discovery. Fix: set hybrid.discovery: true."]
    assert problems({"kubespan": True, "discovery": True}) == []


@pytest.mark.parametrize("nodes", [(HOME,), (CLOUD,), ()])
def test_one_site_needs_nothing(nodes):
    assert problems(None, nodes) == [] and problems({"kubespan": False}, nodes) == []


def test_admin_cidrs():
    on = {"kubespan": True, "discovery": True}
    assert problems({**on, "admin_cidrs": ["203.0.113.0/24", "2001:db8::/48", "0.0.0.0/0"]}) == []
    assert [p.split(":")[0] for p in problems({**on, "admin_cidrs": ["203.0.113.1/24", "nope"]})] == [
        "hybrid.admin_cidrs[0]", "hybrid.admin_cidrs[1]"]
    assert problems({**on, "admin_cidrs": []})[0].startswith("hybrid.admin_cidrs: the list is empty")
