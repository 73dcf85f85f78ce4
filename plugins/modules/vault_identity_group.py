#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_identity_group
short_description: An external identity group in Vault with its policies and the alias an auth method maps to it
version_added: 0.1.0
description:
  - Ensures the external identity group O(name) with exactly O(policies) and, when O(alias) is given, one group
    alias named O(alias) on the auth method mounted at O(mount) - so a login through that method whose groups
    claim holds O(alias) gets the group's policies (Vault's external groups).
  - Reads the group (by name) and its alias first and writes only what differs; a rerun is C(changed=false).
  - O(state=absent) deletes the group (and with it its alias).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.TOKEN
options:
  name:
    description: The identity group's name.
    type: str
    required: true
  policies:
    description: The policies the group's members get.
    type: list
    elements: str
    default: []
  alias:
    description: The group name as the auth method reports it (the identity provider's group).
    type: str
  mount:
    description: The auth method (its mount path) whose logins the alias maps; required with O(alias).
    type: str
  state:
    description: Whether the group exists.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the group and its alias and reports what would be written; writes nothing.
  diff_mode:
    support: full
    description: Shows the group's type, policies and alias before and after.
"""

EXAMPLES = r"""
- name: Authentik's vault-admins get the policy turnkey-sso-admin
  turnkey.cluster.vault_identity_group:
    url: https://vault.example.com:8200
    token: "{{ vault_login.token }}"
    name: vault-admins
    policies: [turnkey-sso-admin]
    alias: vault-admins
    mount: oidc
"""

RETURN = r"""
id:
  description: The group's id (none when it does not exist, or would only be created in check mode).
  returned: always
  type: str
action:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib


def _text(value):
    return json.dumps(value, indent=2, sort_keys=True) + "\n" if value is not None else ""


def _accessor(vault, url, mount, check_mode):
    methods = vault_lib.call(url, "listing the auth methods", vault.adapter.get, "/v1/sys/auth")
    methods = methods.get("data") or methods
    method = methods.get(mount.strip("/") + "/")
    if not method and check_mode:  # an earlier task of the same check run would enable it
        return "(the accessor of %s/, once enabled)" % mount.strip("/")
    if not method:
        raise vault_lib.VaultFailure("no auth method is mounted at %s/: enable it first (turnkey.cluster.vault_mount "
                                     "kind=auth)" % mount.strip("/"))
    return method["accessor"]


def ensure(module, vault):
    params, url, adapter = module.params, module.params["url"], vault.adapter
    name = params["name"]
    answer = vault_lib.read_or_none(url, "reading identity group %s" % name, adapter.get,
                                    "/v1/identity/group/name/%s" % name)
    live = (answer or {}).get("data") if answer else None
    alias = (live or {}).get("alias") or {}
    before = None if not live else {"type": live.get("type"), "policies": sorted(live.get("policies") or []),
                                    "alias": alias.get("name"), "alias_mount_accessor": alias.get("mount_accessor")}
    if params["state"] == "absent":
        result = dict(changed=live is not None, action="delete" if live else "none", id=(live or {}).get("id"))
        if module._diff:
            result["diff"] = vault_lib.diff_of(_text(before), "", "identity group " + name)
        if live and not module.check_mode:
            vault_lib.call(url, "deleting identity group %s" % name, adapter.delete,
                           "/v1/identity/group/name/%s" % name)
        return result
    accessor = _accessor(vault, url, params["mount"], module.check_mode) if params["alias"] else None
    after = {"type": "external", "policies": sorted(params["policies"]), "alias": params["alias"],
             "alias_mount_accessor": accessor}
    if before is not None and before["type"] != "external":
        raise vault_lib.VaultFailure("identity group %s exists as an internal group; an alias needs an external one. "
                                     "Fix: delete it (bao delete identity/group/name/%s) or pick another name"
                                     % (name, name))
    group_write = before is None or before["policies"] != after["policies"]
    alias_now = (before["alias"], before["alias_mount_accessor"]) if before else None
    alias_write = bool(params["alias"]) and alias_now != (params["alias"], accessor)
    action = "create" if before is None else ("update" if group_write or alias_write else "none")
    result = dict(changed=action != "none", action=action, id=(live or {}).get("id"))
    if module._diff:
        result["diff"] = vault_lib.diff_of(_text(before), _text(after), "identity group " + name)
    if action == "none" or module.check_mode:
        return result
    if group_write:
        written = vault_lib.call(url, "writing identity group %s" % name, adapter.post,
                                 "/v1/identity/group/name/%s" % name,
                                 json={"type": "external", "policies": params["policies"]})
        if isinstance(written, dict) and (written.get("data") or {}).get("id"):  # 204 on an update
            result["id"] = written["data"]["id"]
    if result["id"] is None:
        result["id"] = vault_lib.call(url, "reading identity group %s" % name, adapter.get,
                                      "/v1/identity/group/name/%s" % name)["data"]["id"]
    if alias_write:
        body = {"name": params["alias"], "mount_accessor": accessor, "canonical_id": result["id"]}
        if alias.get("id"):
            vault_lib.call(url, "updating the alias of identity group %s" % name, adapter.post,
                           "/v1/identity/group-alias/id/%s" % alias["id"], json=body)
        else:
            vault_lib.call(url, "writing the alias of identity group %s" % name, adapter.post,
                           "/v1/identity/group-alias", json=body)
    return result


def main():
    argument_spec = vault_lib.connection_args()
    argument_spec.update(
        name=dict(type="str", required=True),
        policies=dict(type="list", elements="str", default=[]),
        alias=dict(type="str"),
        mount=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_by={"alias": ("mount",)})
    vault_lib.run_module(module, lambda vault: ensure(module, vault))


if __name__ == "__main__":
    main()
