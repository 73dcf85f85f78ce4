#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_policy
short_description: An ACL policy in Vault (or OpenBao), written only when it differs
version_added: 0.1.0
description:
  - Ensures the ACL policy O(name) has exactly the rules O(policy), or is absent.
  - Reads the policy first and writes only when the rules differ (compared without surrounding blank
    space), so a rerun is C(changed=false).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.TOKEN
options:
  name:
    description: The policy's name. C(root) and C(default) are Vault's own and refused.
    type: str
    required: true
  policy:
    description: The policy's rules (HCL). Required when O(state=present).
    type: str
  state:
    description: Whether the policy exists.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the policy and reports whether it would be written or deleted; writes nothing.
  diff_mode:
    support: full
    description: Shows the rules before and after (policies hold no secrets).
"""

EXAMPLES = r"""
- name: External Secrets may read the paths it syncs, nothing else
  turnkey.cluster.vault_policy:
    url: https://vault.example.com:8200
    ca_path: /etc/ssl/homelab-ca.pem
    token: "{{ vault_login.token }}"
    name: external-secrets
    policy: |
      path "kv/data/authentik/*" {
        capabilities = ["read"]
      }
"""

RETURN = r"""
name:
  description: The policy's name.
  returned: always
  type: str
action:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib


def ensure(module, vault):
    params, url = module.params, module.params["url"]
    name, state = params["name"], params["state"]
    answer = vault_lib.read_or_none(url, "reading policy %s" % name, vault.sys.read_acl_policy, name)
    current = answer["data"]["policy"] if answer else None
    wanted = params["policy"] if state == "present" else None
    if current is not None and wanted is not None and current.strip() == wanted.strip():
        action = "none"
    elif wanted is None:
        action = "delete" if current is not None else "none"
    else:
        action = "create" if current is None else "update"
    result = dict(changed=action != "none", name=name, action=action)
    if module._diff:
        result["diff"] = vault_lib.diff_of((current or "").strip() + "\n" if current else "",
                                           (wanted or "").strip() + "\n" if wanted else "", "policy " + name)
    if action == "none" or module.check_mode:
        return result
    if action == "delete":
        vault_lib.call(url, "deleting policy %s" % name, vault.sys.delete_acl_policy, name)
    else:
        vault_lib.call(url, "writing policy %s" % name, vault.sys.create_or_update_acl_policy, name, wanted)
    return result


def main():
    argument_spec = vault_lib.connection_args()
    argument_spec.update(name=dict(type="str", required=True), policy=dict(type="str"),
                         state=dict(type="str", choices=["present", "absent"], default="present"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ("policy",))])
    if module.params["name"] in ("root", "default"):
        module.fail_json(msg="policy %s is Vault's own; manage a policy of your own name" % module.params["name"])
    vault_lib.run_module(module, lambda vault: ensure(module, vault))


if __name__ == "__main__":
    main()
