#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authentik_scope_mapping
short_description: An OAuth2 scope mapping (claims of a scope) in Authentik
version_added: 0.1.0
description:
  - Creates, updates or deletes the scope mapping named O(name). When a client asks for scope
    O(scope_name), the claims the Python O(expression) returns are added to the ID token and userinfo.
  - The usual one is the C(groups) claim, which applications map to their roles.
  - Reads the mapping first and sends only the managed fields that differ, so a rerun is C(changed=false).
  - Authentik's own mappings (C(goauthentik.io/providers/oauth2/scope-*)) need no task; refer to them by
    their managed id in M(turnkey.cluster.authentik_oauth2_provider).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.authentik
options:
  name:
    description: The mapping's name, unique in Authentik.
    type: str
    required: true
  scope_name:
    description: The scope that triggers the mapping, for example C(groups). Required to create the mapping.
    type: str
  expression:
    description: The Python expression returning the claims (a dict). Required to create the mapping.
    type: str
  description:
    description: Shown to the user on the consent screen; empty means the user is not told.
    type: str
"""

EXAMPLES = r"""
- name: The groups claim, which Grafana, Harbor and Vault map to their roles
  turnkey.cluster.authentik_scope_mapping:
    url: https://auth.cluster.example.com
    ca_path: /etc/ssl/homelab-ca.pem
    token: "{{ authentik_bootstrap_token }}"
    name: Groups Mapping
    scope_name: groups
    description: Your group memberships
    expression: "return {'groups': [group.name for group in request.user.ak_groups.all()]}"
"""

RETURN = r"""
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
object:
  description: The mapping as Authentik holds it after the task (in check mode, as it would be); empty when deleted.
  returned: always
  type: dict
  sample: {pk: 5c0f2b9a-3d1e-4c7b-8a6f-2e9d0c1b3a4f, name: Groups Mapping, scope_name: groups}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import authentik as ak


def main():
    module = AnsibleModule(
        argument_spec=ak.connection_args(
            name=dict(type="str", required=True),
            scope_name=dict(type="str"),
            expression=dict(type="str"),
            description=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def work(client):
        wanted = {field: params[field] for field in ("name", "scope_name", "expression", "description")}
        result, _current = ak.ensure(client, ak.SCOPE_MAPPING, params["name"], wanted, params["state"], module._diff,
                                     required=dict(scope_name="scope_name", expression="expression"))
        return result

    ak.run_module(module, work)


if __name__ == "__main__":
    main()
