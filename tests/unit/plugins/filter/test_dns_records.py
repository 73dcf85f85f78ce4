"""The zone's records layer 03 derives from the spec (filter turnkey.cluster.dns_records)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.filter.dns_records import dns_records

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

NETWORK = {"api_vip": "10.2.3.1", "lb_pools": [{"name": "dns", "addresses": "10.2.3.3"},
                                               {"name": "ingress", "addresses": "10.2.3.10-10.2.3.20"}]}
APPS = [{"name": "grafana", "redirect_uris": ["https://grafana.example.com/login/generic_oauth"]},
        {"name": "vault", "redirect_uris": ["https://Vault.example.com/ui/vault/auth/oidc/oidc/callback",
                                            "https://other.example.com/oidc/callback"]},
        {"name": "harbor", "enabled": False, "redirect_uris": ["https://harbor.example.com/c/oidc/callback"]},
        {"name": "outside", "redirect_uris": ["https://app.elsewhere.test/cb"]}]


def test_api_auth_and_every_enabled_app_inside_the_zone():
    extra = {"name": "www", "type": "CNAME", "content": "grafana"}
    records = dns_records({"zone": "Example.com.", "records": [extra]}, NETWORK,
                          {"url": "https://auth.example.com"}, APPS)
    assert records == [
        {"name": "api.example.com.", "type": "A", "content": "10.2.3.1"},
        {"name": "auth.example.com.", "type": "A", "content": "10.2.3.10"},
        {"name": "grafana.example.com.", "type": "A", "content": "10.2.3.10"},
        {"name": "vault.example.com.", "type": "A", "content": "10.2.3.10"},
        extra,
    ]


def test_zone_from_the_cluster_domain_cidr_pool_ipv6_and_one_record_per_host():
    network = {"api_vip": "fd00::1", "lb_pools": [{"name": "ingress", "addresses": "fd00::10/124"}]}
    apps = [{"name": "a", "redirect_uris": ["https://auth.c.test/a"]}]
    records = dns_records({}, network, {"url": "https://auth.c.test"}, apps, "c.test")
    assert records == [{"name": "api.c.test.", "type": "AAAA", "content": "fd00::1"},
                       {"name": "auth.c.test.", "type": "AAAA", "content": "fd00::10"}]


def test_hosts_without_an_ingress_pool_are_refused_naming_the_fix():
    with pytest.raises(AnsibleFilterError, match="lb pool named 'ingress'"):
        dns_records({"zone": "example.com"}, {"api_vip": "10.0.0.1"}, {"url": "https://auth.example.com"})


def test_nothing_to_derive_needs_no_pool_and_no_zone_is_refused():
    assert dns_records({"zone": "example.com"}, {}, {}, []) == []
    with pytest.raises(AnsibleFilterError, match="needs the zone"):
        dns_records({}, NETWORK)


def test_a_bad_pool_address_is_named():
    with pytest.raises(AnsibleFilterError, match="not an address"):
        dns_records({"zone": "example.com"}, {"lb_pools": [{"name": "ingress", "addresses": "x"}]},
                    {"url": "https://auth.example.com"})
