"""The generate-once secrets and Vault kv entries the SSO spec implies (filter turnkey.cluster.sso_secrets)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.filter.sso_secrets import sso_secrets

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

APPS = [{"name": "grafana", "redirect_uris": ["https://grafana.example.com/login/generic_oauth"]},
        {"name": "my-wiki", "type": "oidc", "redirect_uris": ["https://wiki.example.com/cb"]},
        {"name": "dashboard", "type": "proxy", "redirect_uris": ["https://dash.example.com/"]},
        {"name": "harbor", "enabled": False, "redirect_uris": ["https://harbor.example.com/c/oidc/callback"]}]
USERS = [{"name": "turnkey-admin", "email": "admin@example.com"}, {"name": "viewer", "email": "v@example.com"}]
AUTHENTIK = {"url": "https://auth.example.com"}
DNS = {"zone": "example.com"}
AUTHENTIK_STORE = ["authentik_bootstrap_token", "authentik_bootstrap_password", "authentik_secret_key",
                   "authentik_postgres_password"]


def names(entries):
    return [entry["name"] for entry in entries]


def test_store_entries_follow_the_spec():
    entries = sso_secrets((APPS, USERS, AUTHENTIK, DNS), "store")
    # Enabled OIDC apps only (not the proxy app, not the disabled one); '-' becomes '_'.
    assert names(entries) == AUTHENTIK_STORE + [
        "pdns_api_key", "acme_dns01_tsig", "sso_client_secret_grafana", "sso_client_secret_my_wiki",
        "sso_password_turnkey_admin", "sso_password_viewer"]
    assert {entry["type"] for entry in entries} == {"token"}
    lengths = {entry["name"]: entry["length"] for entry in entries}
    assert lengths["authentik_bootstrap_token"] == 64 and lengths["authentik_secret_key"] == 64
    assert lengths["sso_client_secret_grafana"] == 64 and lengths["sso_password_viewer"] == 32
    assert lengths["pdns_api_key"] == 32 and lengths["authentik_postgres_password"] == 32
    # The ACME DNS-01 TSIG secret: 64 letters and digits, valid base64 as it is.
    assert lengths["acme_dns01_tsig"] == 64


def test_without_authentik_or_dns_none_of_their_secrets():
    assert names(sso_secrets(([], [], {}), "store")) == []
    assert names(sso_secrets((APPS[:1], [], None, {}), "store")) == ["sso_client_secret_grafana"]
    assert names(sso_secrets(([], [], AUTHENTIK), "store")) == AUTHENTIK_STORE


def test_the_operators_tokens_come_first_and_win_by_name():
    given = [{"name": "authentik_bootstrap_token", "length": 48}, {"name": "grafana_admin", "length": 20}]
    entries = sso_secrets((APPS[:1], [], AUTHENTIK), "store", given)
    assert entries[:2] == given
    assert names(entries).count("authentik_bootstrap_token") == 1
    assert names(entries)[2:] == AUTHENTIK_STORE[1:] + ["sso_client_secret_grafana"]
    # The lab inventory lists the bootstrap token without authentik: it keeps working.
    assert sso_secrets(([], [], {}), "store", given[:1]) == given[:1]


def test_kv_entries_follow_the_contract_table():
    entries = sso_secrets((APPS, USERS, AUTHENTIK), "kv")
    assert entries == [
        {"name": "authentik_bootstrap_token", "path": "authentik/bootstrap", "key": "token"},
        {"name": "authentik_bootstrap_password", "path": "authentik/bootstrap-password", "key": "password"},
        {"name": "authentik_secret_key", "path": "authentik/secret-key", "key": "secret_key"},
        {"name": "authentik_postgres_password", "path": "authentik/postgres-password", "key": "password"},
        {"name": "sso_client_secret_grafana", "path": "sso/grafana", "key": "client_secret"},
        {"name": "sso_client_secret_my_wiki", "path": "sso/my-wiki", "key": "client_secret"}]


def test_with_dns_vault_holds_the_acme_tsig_secret_for_cert_manager():
    """The DNS-01 solver's key: kv cert-manager/acme-dns01-tsig, synced into Secret cert-manager/acme-dns01-tsig."""
    entries = sso_secrets(([], [], {}, DNS), "kv")
    assert entries == [{"name": "acme_dns01_tsig", "path": "cert-manager/acme-dns01-tsig", "key": "secret"}]
    assert sso_secrets(([], [], {}, {}), "kv") == []


def test_with_powerdns_in_the_cluster_vault_holds_its_api_key_for_the_tree():
    """dns.deploy in_cluster: the tree's PowerDNS reads the store's pdns_api_key from kv dns/powerdns; a PowerDNS
    outside the cluster (the default) has its key only in the store, for layer 03."""
    entries = sso_secrets(([], [], {}, {**DNS, "deploy": "in_cluster"}), "kv")
    assert entries == [{"name": "acme_dns01_tsig", "path": "cert-manager/acme-dns01-tsig", "key": "secret"},
                       {"name": "pdns_api_key", "path": "dns/powerdns", "key": "api_key"}]
    assert "pdns_api_key" not in names(sso_secrets(([], [], {}, {**DNS, "deploy": "external"}), "kv"))


def test_a_shipped_release_gets_its_own_secrets_unless_the_app_runs_elsewhere():
    """Harbor's release reads its admin's initial password and its 16-character secret key from the store,
    Synapse's its database and Redis passwords; none with release: false or for a disabled app."""
    apps = [{**APPS[3], "enabled": True}, {"name": "synapse", "redirect_uris": ["https://m.example.com/"]}]
    store = sso_secrets((apps, [], {}), "store")
    assert [(entry["name"], entry["length"]) for entry in store] == [
        ("sso_client_secret_harbor", 64), ("sso_client_secret_synapse", 64), ("sso_harbor_admin_password", 32),
        ("sso_harbor_secret_key", 16), ("sso_synapse_postgres_password", 32), ("sso_synapse_redis_password", 32)]
    assert sso_secrets((apps, [], {}), "kv")[2:] == [
        {"name": "sso_harbor_admin_password", "path": "sso/harbor/admin-password", "key": "admin_password"},
        {"name": "sso_harbor_secret_key", "path": "sso/harbor/secret-key", "key": "secret_key"},
        {"name": "sso_synapse_postgres_password", "path": "sso/synapse/postgres-password", "key": "postgres_password"},
        {"name": "sso_synapse_redis_password", "path": "sso/synapse/redis-password", "key": "redis_password"}]
    elsewhere = [{**apps[0], "release": False}, {**apps[1], "enabled": False}]
    assert names(sso_secrets((elsewhere, [], {}), "store")) == ["sso_client_secret_harbor"]
    assert names(sso_secrets((APPS, [], {}), "kv")) == ["sso_client_secret_grafana", "sso_client_secret_my_wiki"]


def test_an_operators_kv_entry_with_the_same_name_wins():
    given = [{"name": "authentik_bootstrap_token", "path": "authentik/bootstrap", "key": "token"},
             {"name": "authentik_secret_key", "path": "authentik/key", "key": "value"}]
    entries = sso_secrets((APPS[:1], USERS, AUTHENTIK), "kv", given)
    assert entries[:2] == given
    assert names(entries) == ["authentik_bootstrap_token", "authentik_secret_key", "authentik_bootstrap_password",
                              "authentik_postgres_password", "sso_client_secret_grafana"]


@pytest.mark.parametrize(("spec", "kind", "message"), [
    ((APPS, USERS), "store", "the input is"),
    ({"sso_apps": APPS}, "store", "the input is"),
    ((APPS, USERS, AUTHENTIK), "vault", "kind 'vault' is not one of store, kv"),
])
def test_a_wrong_call_is_named(spec, kind, message):
    with pytest.raises(AnsibleFilterError, match=message):
        sso_secrets(spec, kind)
