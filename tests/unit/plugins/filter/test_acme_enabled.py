"""Whether the cluster gets the ACME issuer (filter turnkey.cluster.acme_enabled): one rule for layer 02's
ClusterIssuer and layer 03's update key."""

from __future__ import annotations

import pytest

from ansible_collections.turnkey.cluster.plugins.filter.acme_enabled import acme_enabled

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)


@pytest.mark.parametrize(("domain", "expected"), [
    ("cluster.homelab.net", True),
    ("k8s.example.de", True),
    ("lab.turnkey.test", False),
    ("cluster.example.com", False),
    ("home.arpa", False),
    ("nas.home.arpa.", False),
    ("cluster.internal", False),
    ("local", False),
    ("testing.dev", True),  # not .test
])
def test_auto_follows_whether_the_domain_is_public(domain, expected):
    assert acme_enabled(domain) is expected
    assert acme_enabled(domain, "auto") is expected


@pytest.mark.parametrize("setting", [True, "true", "yes", "True"])
def test_a_setting_that_says_on_wins(setting):
    assert acme_enabled("lab.turnkey.test", setting) is True


@pytest.mark.parametrize("setting", [False, "false", "no"])
def test_a_setting_that_says_off_wins(setting):
    assert acme_enabled("cluster.homelab.net", setting) is False


def test_the_operators_private_domains_replace_the_list():
    assert acme_enabled("cluster.homelab.net", "auto", r"homelab\.net$") is False
    assert acme_enabled("lab.turnkey.test", "auto", r"homelab\.net$") is True
