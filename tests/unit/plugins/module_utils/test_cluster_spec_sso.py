"""The cross-field rules of the SSO and DNS spec (module_utils cluster_spec, run by module validate_spec): one
failing case per rule, each with its message. tests/fixtures/specs/invalid/ runs them through the real site.yml."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import (
    SpecErrors,
    check_dns,
    check_sso,
    check_vault,
)

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

SPEC = {
    "cluster_domain": "example.com",
    "authentik": {"url": "https://auth.example.com"},
    "sso_groups": ["auditors"],
    "sso_users": [{"name": "turnkey-admin", "email": "admin@example.com", "groups": ["grafana-admins", "auditors"]}],
    "sso_apps": [
        {"name": "grafana", "redirect_uris": ["https://grafana.example.com/login/generic_oauth"],
         "admin_group": "grafana-admins", "groups": ["grafana-admins", "grafana-viewers"]},
        {"name": "vault", "redirect_uris": ["https://vault.example.com/oidc/callback"], "admin_group": "vault-admins",
         "groups": ["vault-admins"], "vault_policies": {"vault-admins": ["turnkey-sso-admin"]}}],
    "dns": {"api_url": "http://127.0.0.1:8081", "api_key": "set",
            "secondary": {"api_url": "http://192.0.2.54:8081", "api_key": "set",
                          "masters": ["192.0.2.53", "192.0.2.54:5300"]}},
    "secrets_store": {"tokens": []},
    "vault": {"address": "https://vault.example.com:8200",
              "kv_secrets": [{"name": "authentik_secret_key", "path": "authentik/secret-key"}]},
}


def errors_of(change=None):
    spec = copy.deepcopy(SPEC)
    if change:
        change(spec)
    errors = SpecErrors()
    check_sso(errors, spec)
    check_dns(errors, spec)
    check_vault(errors, spec, "configuration")
    return list(errors)


def test_the_example_passes():
    assert errors_of() == []


def app(index, **values):
    return lambda spec: spec["sso_apps"][index].update(values)


def user(**values):
    return lambda spec: spec["sso_users"][0].update(values)


def spec_set(key, value):
    return lambda spec: spec.__setitem__(key, value)


def both(*changes):
    def change(spec):
        for one in changes:
            one(spec)
    return change


CASES = {
    "app name not a slug": (app(0, name="Grafana_1"), [
        "sso_apps[0].name: 'Grafana_1' is not a slug. Fix: use lower-case letters, digits and '-'."]),
    "app listed twice": (app(1, name="grafana", vault_policies=None), [
        "sso_apps[1].name: application 'grafana' is listed twice. Fix: list each app once."]),
    "type unknown": (app(0, type="saml"), [
        "sso_apps[0].type: 'saml' is not oidc or proxy. Fix: use oidc (an OIDC client) or proxy (forward auth "
        "through the outpost)."]),
    "no redirect uri": (app(0, redirect_uris=[]), [
        "sso_apps[0].redirect_uris: the list is empty. Fix: list the app's callback URL(s); the first one's host "
        "is the app's host name."]),
    "redirect over http": (app(0, redirect_uris=["http://grafana.example.com/cb"]), [
        "sso_apps[0].redirect_uris[0]: 'http://grafana.example.com/cb' is not an https URL. Fix: OIDC redirects "
        "must use https."]),
    "redirect uri of two apps": (app(1, redirect_uris=["https://grafana.example.com/login/generic_oauth"]), [
        "sso_apps[1].redirect_uris[0]: 'https://grafana.example.com/login/generic_oauth' is already a redirect URI "
        "of sso_apps[0] (grafana). Fix: give every app its own callback URLs."]),
    "admin group not a group": (app(0, admin_group="admins"), [
        "sso_apps[0].admin_group: 'admins' is not one of the app's groups ['grafana-admins', 'grafana-viewers']. "
        "Fix: add it to sso_apps[].groups or name one of them."]),
    "vault policies on another app": (app(0, vault_policies={"grafana-admins": ["x"]}), [
        "sso_apps[0].vault_policies: only the app named vault maps groups to Vault policies (this is 'grafana'). "
        "Fix: remove vault_policies here, or put them on the app vault."]),
    "vault policies for a group the app lacks": (app(1, vault_policies={"vault-readers": ["turnkey-sso-read"]}), [
        "sso_apps[1].vault_policies: group 'vault-readers' is not one of the app's groups ['vault-admins']. "
        "Fix: map only groups listed in sso_apps[].groups."]),
    "roles on another app": (app(1, roles={"vault-admins": "Admin"}), [
        "sso_apps[1].roles: only the app named grafana maps groups to its roles (this is 'vault'). "
        "Fix: remove roles here; admin_group names the admins of the other apps."]),
    "roles for a group the app lacks, and no such role": (
        app(0, roles={"grafana-editors": "Editor", "grafana-viewers": "Owner"}), [
            "sso_apps[0].roles: group 'grafana-editors' is not one of the app's groups ['grafana-admins', "
            "'grafana-viewers']. Fix: map only groups listed in sso_apps[].groups.",
            "sso_apps[0].roles: 'Owner' (for group 'grafana-viewers') is not a Grafana role. "
            "Fix: use one of GrafanaAdmin, Admin, Editor, Viewer."]),
    "user in an unknown group": (user(groups=["grafana-admins", "ops"]), [
        "sso_users[0].groups: group 'ops' is neither an app's group nor in sso_groups. Fix: add it to an app's "
        "groups or to sso_groups, so layer 03 creates it."]),
    "user listed twice": (lambda spec: spec["sso_users"].append(dict(spec["sso_users"][0])), [
        "sso_users[1].name: user 'turnkey-admin' is listed twice. Fix: list each user once."]),
    "user name not a name": (user(name="Admin User"), [
        "sso_users[0].name: 'Admin User' is not a user name of lower-case letters, digits and '-'. Fix: rename "
        "the user; its password is kept in the store as sso_password_<name>."]),
    "user without email": (user(email=""), [
        "sso_users[0].email: the user 'turnkey-admin' has no email. Fix: set the user's email address."]),
    "authentik over http": (spec_set("authentik", {"url": "http://auth.example.com"}), [
        "authentik.url: 'http://auth.example.com' is not an https URL. Fix: write it like https://auth.example.com; "
        "logins and tokens never travel in clear."]),
    "apps without authentik": (both(spec_set("authentik", {}), spec_set("vault", {"address": "https://v.ex.com"})), [
        "authentik: sso_apps or sso_users are set but authentik is not. Fix: add authentik.url (Authentik's https "
        "base URL, docs/spec.md)."]),
    "app host outside the zone": (app(0, redirect_uris=["https://grafana.example.org/login"]), [
        "sso_apps[0].redirect_uris[0]: the host grafana.example.org is not inside the zone example.com. Fix: use a "
        "host name under example.com, or set dns.zone to the domain that holds it."]),
    "zone not a name": (lambda spec: spec["dns"].update(zone="localhost"), [
        "dns.zone: 'localhost' is not a DNS name with at least two labels. Fix: write it like example.com "
        "(default: cluster_domain)."]),
    "secondary without masters": (lambda spec: spec["dns"]["secondary"].update(masters=[]), [
        "dns.secondary.masters: is not set, and the secondary needs it. Fix: set dns.secondary.api_url, api_key "
        "and masters (the primary's addresses), or remove dns.secondary."]),
    "secondary without api key": (lambda spec: spec["dns"]["secondary"].pop("api_key"), [
        "dns.secondary.api_key: is not set, and the secondary needs it. Fix: set dns.secondary.api_url, api_key "
        "and masters (the primary's addresses), or remove dns.secondary."]),
    "secondary master not an address": (lambda spec: spec["dns"]["secondary"].update(masters=["ns1.example.com"]), [
        "dns.secondary.masters[0]: 'ns1.example.com' is not an IP address. Fix: list the primary's addresses "
        "(with :port when not 53) the secondary transfers the zone from."]),
    "dns deploy unknown": (lambda spec: spec["dns"].update(deploy="helm"), [
        "dns.deploy: 'helm' is not one of external, in_cluster. Fix: use in_cluster (the GitOps tree deploys "
        "PowerDNS) or external (an existing PowerDNS)."]),
    "dns in the cluster without a dns pool": (lambda spec: spec["dns"].update(deploy="in_cluster"), [
        "dns.deploy: in_cluster needs a load-balancer pool named dns for PowerDNS' address, and "
        "cluster_network.lb_pools has none. Fix: add {name: dns, addresses: <one free address>} to "
        "cluster_network.lb_pools, or use deploy external."]),
    "dns api_allow_from not a network": (lambda spec: spec["dns"].update(api_allow_from=["10.2.0.1/16"]), [
        "dns.api_allow_from[0]: '10.2.0.1/16' is not a network. Fix: write it like 10.2.0.0/16 (host bits zero)."]),
}


def test_powerdns_in_the_cluster_with_a_dns_pool_passes():
    def change(spec):
        spec["dns"].update(deploy="in_cluster", api_allow_from=["10.2.0.0/16", "2001:db8::/64"])
        spec["cluster_network"] = {"lb_pools": [{"name": "dns", "addresses": "10.2.3.3"}]}
    assert errors_of(change) == []


@pytest.mark.parametrize("case", CASES)
def test_each_rule_names_field_and_fix(case):
    change, expected = CASES[case]
    assert errors_of(change) == expected


def test_an_app_whose_release_the_collection_ships_lists_the_callback_the_app_returns_to():
    """Harbor and Synapse return from the login to a path they fix, on the app's host (the first URI's); without
    it Authentik refuses the login. Not checked with release: false (the app runs elsewhere) or when disabled."""
    def harbor(*uris, **values):
        return lambda spec: spec["sso_apps"].append({"name": "harbor", "redirect_uris": list(uris), **values})

    def synapse(*uris):
        return lambda spec: spec["sso_apps"].append({"name": "synapse", "redirect_uris": list(uris)})

    assert errors_of(harbor("https://registry.example.com/c/oidc/callback")) == []
    callback = "https://matrix.example.com/_synapse/client/oidc/callback"
    assert errors_of(synapse("https://matrix.example.com/", callback)) == []
    assert errors_of(harbor("https://registry.example.com/oidc/callback")) == [
        "sso_apps[2].redirect_uris: https://registry.example.com/c/oidc/callback is not among them, though the "
        "collection's harbor release returns there after the login. Fix: add it, or set release: false when the app "
        "runs elsewhere."]
    # on the first URI's host: another host's callback is not the app's
    assert errors_of(synapse("https://matrix.example.com/", "https://chat.example.com/_synapse/client/oidc/callback")) \
        == ["sso_apps[2].redirect_uris: https://matrix.example.com/_synapse/client/oidc/callback is not among them, "
            "though the collection's synapse release returns there after the login. Fix: add it, or set "
            "release: false when the app runs elsewhere."]
    assert errors_of(harbor("https://registry.example.com/oidc/callback", release=False)) == []
    assert errors_of(harbor("https://registry.example.com/oidc/callback", enabled=False)) == []


def test_a_derived_kv_name_without_authentik_is_not_a_store_secret():
    def change(spec):
        spec["authentik"], spec["sso_apps"], spec["sso_users"] = {}, [], []
    assert errors_of(change) == [
        "vault.kv_secrets[0].name: 'authentik_secret_key' is not a secret of the store (secrets_store.tokens). "
        "Fix: add it to secrets_store.tokens so layer 00 generates it once, or fix the name."]


def test_the_zone_defaults_to_the_cluster_domain_and_an_ip_authentik_needs_no_record():
    def change(spec):
        spec["cluster_domain"] = "lab.example.com"
        spec["authentik"]["url"] = "https://127.10.0.20:9443"
        for index, name in enumerate(("grafana", "vault")):
            spec["sso_apps"][index]["redirect_uris"] = ["https://%s.lab.example.com/cb" % name]
    assert errors_of(change) == []
    spec_outside = both(change, lambda spec: spec["authentik"].update(url="https://auth.example.com"))
    assert errors_of(spec_outside) == [
        "authentik.url: the host auth.example.com is not inside the zone lab.example.com. Fix: use a host name "
        "under lab.example.com, or set dns.zone to the domain that holds it."]
