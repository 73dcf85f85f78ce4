#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_kubernetes_auth
short_description: Vault's Kubernetes auth method configured, with roles bound to service accounts
version_added: 0.1.0
description:
  - Configures the Kubernetes auth method mounted at O(mount) (enable it first with
    M(turnkey.cluster.vault_mount)) - the API server Vault asks to review tokens, its CA and the token
    reviewer's JWT - and ensures each of O(roles), bound to service-account names and namespaces, with its
    policies and token TTLs.
  - Reads the configuration and each role first and writes only what differs; a rerun is C(changed=false).
  - Vault never hands the reviewer JWT back, so it is written with the configuration when anything else of
    it differs, when Vault holds none yet, or when O(rotate_reviewer_jwt=true).
  - Roles not listed are left alone (other layers add their own).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.TOKEN
options:
  mount:
    description: Where the Kubernetes auth method is mounted.
    type: str
    default: kubernetes
  kubernetes_host:
    description: The Kubernetes API server's URL as Vault reaches it (C(https://10.2.3.1:6443)).
    type: str
    required: true
  kubernetes_ca_cert:
    description:
      - PEM CA certificate of the API server. Empty for a Vault inside the cluster, which then reads its
        pod's service-account CA.
    type: str
    default: ''
  token_reviewer_jwt:
    description:
      - JWT of a service account allowed to create TokenReviews (bound to C(system:auth-delegator)).
      - Empty - a Vault inside the cluster uses its pod's own token; otherwise Vault reviews each login with
        the logging-in JWT itself, so that service account needs C(system:auth-delegator).
    type: str
    default: ''
  rotate_reviewer_jwt:
    description: Write O(token_reviewer_jwt) even when nothing else of the configuration differs.
    type: bool
    default: false
  issuer:
    description: The service-account token issuer to validate, when given.
    type: str
  disable_local_ca_jwt:
    description: Do not fall back to the pod's service-account CA and token (set for a Vault outside the cluster).
    type: bool
    default: false
  roles:
    description: Roles of the auth method.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The role's name (ESO's C(role) in its SecretStore).
        type: str
        required: true
      service_accounts:
        description: Service-account names that may log in with this role.
        type: list
        elements: str
        required: true
      namespaces:
        description: Namespaces of those service accounts.
        type: list
        elements: str
        required: true
      policies:
        description: Policies of the tokens this role gives.
        type: list
        elements: str
        required: true
      ttl:
        description: Token TTL in seconds.
        type: int
        default: 3600
      max_ttl:
        description: Token maximum TTL in seconds.
        type: int
        default: 86400
      audience:
        description: The audience the JWT must carry, when given.
        type: str
attributes:
  check_mode:
    support: full
    description: Reads the configuration and roles and reports what would be written; writes nothing.
  diff_mode:
    support: full
    description: Shows host, CA, issuer and each role before and after; never the reviewer JWT.
"""

EXAMPLES = r"""
- name: External Secrets logs in with its service account
  turnkey.cluster.vault_kubernetes_auth:
    url: https://vault.example.com:8200
    token: "{{ vault_login.token }}"
    kubernetes_host: https://10.2.3.1:6443
    kubernetes_ca_cert: "{{ kubernetes_ca }}"
    disable_local_ca_jwt: true
    roles:
      - name: external-secrets
        service_accounts: [external-secrets]
        namespaces: [external-secrets]
        policies: [external-secrets]
        ttl: 3600
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
    wanted = {"bound_service_account_names": sorted(role["service_accounts"]),
              "bound_service_account_namespaces": sorted(role["namespaces"]),
              "token_policies": sorted(role["policies"]), "token_ttl": role["ttl"],
              "token_max_ttl": role["max_ttl"]}
    if role.get("audience"):
        wanted["audience"] = role["audience"]
    return wanted


def ensure(module, vault):
    params, url = module.params, module.params["url"]
    mount = params["mount"].strip("/")
    adapter = vault.adapter
    live = vault_lib.read_or_none(url, "reading auth/%s/config" % mount, adapter.get, "/v1/auth/%s/config" % mount)
    live = (live or {}).get("data") or {}
    wanted = {"kubernetes_host": params["kubernetes_host"],
              "kubernetes_ca_cert": (params["kubernetes_ca_cert"] or "").strip(),
              "disable_local_ca_jwt": params["disable_local_ca_jwt"]}
    if params["issuer"] is not None:
        wanted["issuer"] = params["issuer"]
    have = {key: (live.get(key) or "").strip() if key == "kubernetes_ca_cert" else live.get(key) for key in wanted}
    jwt_missing = bool(params["token_reviewer_jwt"]) and not live.get("token_reviewer_jwt_set")
    config_action = "write" if have != wanted or jwt_missing or (
        params["rotate_reviewer_jwt"] and params["token_reviewer_jwt"]) else "none"
    result = dict(changed=False, config_action=config_action, roles_changed=[])
    before, after = {"config": have}, {"config": wanted}
    wanted_roles = [(role["name"], _wanted_role(role)) for role in params["roles"]]
    role_writes = vault_lib.auth_roles_to_write(url, adapter, mount, wanted_roles, before, after)
    result["roles_changed"] = [name for name, _wanted in role_writes]
    result["changed"] = config_action == "write" or bool(role_writes)
    if module._diff:
        result["diff"] = vault_lib.diff_of(vault_lib.json_text(before), vault_lib.json_text(after), "auth/%s" % mount)
    if not result["changed"] or module.check_mode:
        return result
    if config_action == "write":
        body = dict(wanted)
        if params["token_reviewer_jwt"]:
            body["token_reviewer_jwt"] = params["token_reviewer_jwt"]
        vault_lib.call(url, "writing auth/%s/config" % mount, adapter.post, "/v1/auth/%s/config" % mount, json=body)
    vault_lib.write_auth_roles(url, adapter, mount, role_writes)
    return result


def main():
    argument_spec = vault_lib.connection_args()
    argument_spec.update(
        mount=dict(type="str", default="kubernetes"),
        kubernetes_host=dict(type="str", required=True),
        kubernetes_ca_cert=dict(type="str", default=""),
        token_reviewer_jwt=dict(type="str", default="", no_log=True),
        rotate_reviewer_jwt=dict(type="bool", default=False),
        issuer=dict(type="str"),
        disable_local_ca_jwt=dict(type="bool", default=False),
        roles=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            service_accounts=dict(type="list", elements="str", required=True),
            namespaces=dict(type="list", elements="str", required=True),
            policies=dict(type="list", elements="str", required=True),
            ttl=dict(type="int", default=3600),
            max_ttl=dict(type="int", default=86400),
            audience=dict(type="str"),
        )),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    vault_lib.run_module(module, lambda vault: ensure(module, vault))


if __name__ == "__main__":
    main()
