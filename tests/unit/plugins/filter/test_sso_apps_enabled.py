"""Filters sso_apps_enabled and sso_vault_app: what layer 03, role sso_apps and role verify call an enabled app, and
which app is Vault's own UI."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.filter.sso_apps_enabled import sso_apps_enabled
from ansible_collections.turnkey.cluster.plugins.filter.sso_vault_app import sso_vault_app

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

APPS = [{"name": "grafana"}, {"name": "gitea", "enabled": False}, {"name": "wiki", "type": "proxy", "groups": ["w"]}]


def test_enabled_apps_get_the_spec_defaults_in_order():
    assert sso_apps_enabled(APPS) == [{"name": "grafana", "enabled": True, "type": "oidc", "groups": []},
                                      {"name": "wiki", "enabled": True, "type": "proxy", "groups": ["w"]}]


def test_kind_keeps_only_that_type():
    assert [app["name"] for app in sso_apps_enabled(APPS, "oidc")] == ["grafana"]
    assert [app["name"] for app in sso_apps_enabled(APPS, "proxy")] == ["wiki"]
    assert sso_apps_enabled(None) == []


def test_an_unknown_kind_is_refused():
    with pytest.raises(AnsibleFilterError, match="kind 'saml' is not oidc or proxy"):
        sso_apps_enabled(APPS, "saml")


def test_vaults_own_app_is_the_enabled_one_named_vault():
    vault = {"name": "vault", "redirect_uris": ["https://vault.example/ui/vault/auth/oidc/oidc/callback"]}
    assert sso_vault_app([*APPS, vault]) == {**vault, "enabled": True, "type": "oidc", "groups": []}
    assert sso_vault_app([*APPS, {**vault, "enabled": False}]) == {}
    assert sso_vault_app(APPS) == {} and sso_vault_app(None) == {}
