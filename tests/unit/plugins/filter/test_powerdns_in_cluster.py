"""What the tree's PowerDNS takes from the spec (filter turnkey.cluster.powerdns_in_cluster)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.filter.powerdns_in_cluster import powerdns_in_cluster

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

NETWORK = {"cidr": "10.2.0.0/16", "lb_pools": [{"name": "ingress", "addresses": "10.2.3.2"},
                                               {"name": "dns", "addresses": "10.2.3.3-10.2.3.4"}]}
DNS = {"deploy": "in_cluster", "nameservers": [
    {"name": "ns1.example.com", "address": "10.2.3.3"}, {"name": "ns2.example.com", "address": "198.51.100.53"},
    {"name": "ns3.example.net"}, {"name": "ns4.example.com", "address": "198.51.100.53"}]}


def test_the_pools_first_address_the_secondaries_outside_it_and_the_nodes_network_for_the_api():
    assert powerdns_in_cluster(DNS, NETWORK) == {
        "address": "10.2.3.3", "secondaries": ["198.51.100.53"], "api_allow_from": ["10.2.0.0/16"]}


def test_the_api_networks_the_spec_names_win():
    spec = {**DNS, "api_allow_from": ["192.168.1.0/24"]}
    assert powerdns_in_cluster(spec, NETWORK)["api_allow_from"] == ["192.168.1.0/24"]


def test_without_a_secondary_nobody_may_transfer():
    spec = {**DNS, "nameservers": DNS["nameservers"][:1]}
    assert powerdns_in_cluster(spec, NETWORK)["secondaries"] == []


@pytest.mark.parametrize("dns", [{}, None, {"zone": "example.com"}, {**DNS, "deploy": "external"}])
def test_a_powerdns_outside_the_cluster_gets_nothing(dns):
    assert powerdns_in_cluster(dns, NETWORK) == {}


def test_no_dns_pool_is_named():
    with pytest.raises(AnsibleFilterError, match="pool named dns"):
        powerdns_in_cluster(DNS, {"cidr": "10.2.0.0/16", "lb_pools": NETWORK["lb_pools"][:1]})
