#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_oidc_auth
short_description: Vault's OIDC auth method configured, with its roles
version_added: 0.1.0
description:
  - Configures the OIDC auth method mounted at O(mount) (enable it first with M(turnkey.cluster.vault_mount),
    C(kind=auth), C(type=oidc)) - the identity provider's discovery URL and CA, the client id and secret, the
    default role - and ensures each of O(roles) with its claims, audiences, redirect URIs and token policies.
  - Reads the configuration and each role first and writes only what differs; a rerun is C(changed=false).
  - Vault never hands the client secret back, so it is written with the configuration when anything else of it
    differs, when the method holds no configuration yet, or when O(rotate_client_secret=true).
  - Vault checks the discovery URL when the configuration is written, so the identity provider must answer then.
  - Roles not listed are left alone.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.TOKEN
options:
  mount:
    description: Where the OIDC auth method is mounted.
    type: str
    default: oidc
  discovery_url:
    description: The issuer whose C(/.well-known/openid-configuration) Vault reads (Authentik's per-app issuer).
    type: str
    required: true
  discovery_ca_pem:
    description: PEM CA certificate(s) Vault trusts for the issuer; empty for Vault's system trust store.
    type: str
    default: ''
  client_id:
    description: The client id Vault presents to the identity provider.
    type: str
    required: true
  client_secret:
    description: The client secret (never read back from Vault; see the description).
    type: str
    required: true
  rotate_client_secret:
    description: Write O(client_secret) even when nothing else of the configuration differs.
    type: bool
    default: false
  default_role:
    description: The role a login that names none uses (the UI's).
    type: str
  roles:
    description: Roles of the auth method.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The role's name.
        type: str
        required: true
      user_claim:
        description: The claim that names the user (the entity alias).
        type: str
        default: preferred_username
      groups_claim:
        description: The claim listing the user's groups (matched against external group aliases).
        type: str
        default: groups
      bound_audiences:
        description: The ID token's C(aud) must hold one of these (the client id).
        type: list
        elements: str
        required: true
      allowed_redirect_uris:
        description: The redirect URIs a login may use (the UI's and the CLI's callbacks).
        type: list
        elements: str
        required: true
      oidc_scopes:
        description: Scopes requested beyond C(openid).
        type: list
        elements: str
        default: []
      policies:
        description: Policies every token of this role gets (groups add theirs through identity groups).
        type: list
        elements: str
        default: []
      ttl:
        description: Token TTL in seconds.
        type: int
        default: 3600
      max_ttl:
        description: Token maximum TTL in seconds.
        type: int
        default: 28800
attributes:
  check_mode:
    support: full
    description: Reads the configuration and roles and reports what would be written; writes nothing.
  diff_mode:
    support: full
    description: Shows the configuration and each role before and after; never the client secret.
"""

EXAMPLES = r"""
- name: Vault's UI logs in through Authentik
  turnkey.cluster.vault_oidc_auth:
    url: https://vault.example.com:8200
    token: "{{ vault_login.token }}"
    discovery_url: https://auth.example.com/application/o/vault/
    client_id: vault
    client_secret: "{{ lookup('turnkey.cluster.persistent_secret', 'sso_client_secret_vault', field='value') }}"
    default_role: default
    roles:
      - name: default
        bound_audiences: [vault]
        allowed_redirect_uris: [https://vault.example.com/ui/vault/auth/oidc/oidc/callback]
        oidc_scopes: [email, profile, groups]
"""

RETURN = r"""
config_action:
  description: C(write) or C(none) for the configuration (in check mode, what would happen).
  returned: always
  type: str
roles_changed:
  description: The roles that were (or would be) created or updated.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib


def _wanted_role(role):
    return {"role_type": "oidc", "user_claim": role["user_claim"], "groups_claim": role["groups_claim"],
            "bound_audiences": sorted(role["bound_audiences"]),
            "allowed_redirect_uris": sorted(role["allowed_redirect_uris"]),
            "oidc_scopes": sorted(role["oidc_scopes"]), "token_policies": sorted(role["policies"]),
            "token_ttl": role["ttl"], "token_max_ttl": role["max_ttl"]}


def _wanted_config(params):
    return {"oidc_discovery_url": params["discovery_url"],
            "oidc_discovery_ca_pem": (params["discovery_ca_pem"] or "").strip(),
            "oidc_client_id": params["client_id"], "default_role": params["default_role"] or ""}


def ensure(module, vault):
    params, url = module.params, module.params["url"]
    mount = params["mount"].strip("/")
    adapter = vault.adapter
    answer = vault_lib.read_or_none(url, "reading auth/%s/config" % mount, adapter.get, "/v1/auth/%s/config" % mount)
    live = (answer or {}).get("data") or {}
    wanted = _wanted_config(params)
    have = vault_lib.live_fields(live, wanted)
    have["oidc_discovery_ca_pem"] = (have["oidc_discovery_ca_pem"] or "").strip()
    have["default_role"] = have["default_role"] or ""
    config_action = "write" if (have != wanted or not live.get("oidc_client_id")
                                or params["rotate_client_secret"]) else "none"
    before, after = {"config": have if live else None}, {"config": wanted}
    wanted_roles = [(role["name"], _wanted_role(role)) for role in params["roles"]]
    role_writes = vault_lib.auth_roles_to_write(url, adapter, mount, wanted_roles, before, after)
    result = dict(changed=config_action == "write" or bool(role_writes), config_action=config_action,
                  roles_changed=[name for name, _wanted in role_writes])
    if module._diff:
        result["diff"] = vault_lib.diff_of(vault_lib.json_text(before), vault_lib.json_text(after), "auth/%s" % mount)
    if not result["changed"] or module.check_mode:
        return result
    # Roles first, so the role the configuration names as default exists once the configuration does.
    vault_lib.write_auth_roles(url, adapter, mount, role_writes)
    if config_action == "write":
        body = dict(wanted, oidc_client_secret=params["client_secret"])
        vault_lib.call(url, "writing auth/%s/config (Vault reads %s/.well-known/openid-configuration)"
                       % (mount, params["discovery_url"].rstrip("/")),
                       adapter.post, "/v1/auth/%s/config" % mount, json=body)
    return result


def main():
    argument_spec = vault_lib.connection_args()
    argument_spec.update(
        mount=dict(type="str", default="oidc"),
        discovery_url=dict(type="str", required=True),
        discovery_ca_pem=dict(type="str", default=""),
        client_id=dict(type="str", required=True),
        client_secret=dict(type="str", required=True, no_log=True),
        rotate_client_secret=dict(type="bool", default=False),
        default_role=dict(type="str"),
        roles=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            user_claim=dict(type="str", default="preferred_username"),
            groups_claim=dict(type="str", default="groups"),
            bound_audiences=dict(type="list", elements="str", required=True),
            allowed_redirect_uris=dict(type="list", elements="str", required=True),
            oidc_scopes=dict(type="list", elements="str", default=[]),
            policies=dict(type="list", elements="str", default=[]),
            ttl=dict(type="int", default=3600),
            max_ttl=dict(type="int", default=28800),
        )),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    vault_lib.run_module(module, lambda vault: ensure(module, vault))


if __name__ == "__main__":
    main()
