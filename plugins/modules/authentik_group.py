#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authentik_group
short_description: A group in Authentik
version_added: 0.1.0
description:
  - Creates, updates or deletes the Authentik group named O(name) (for example the admin group an
    application's role mapping names, which the C(groups) claim then carries).
  - Reads the group first and sends only the managed fields that differ, so a rerun is C(changed=false).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.authentik
options:
  name:
    description: The group's name, unique in Authentik.
    type: str
    required: true
  is_superuser:
    description: Whether members are Authentik superusers. Not given means it is left as it is.
    type: bool
  parents:
    description:
      - Names of the groups this group is a child of (Authentik 2026.5 lets a group have several), exactly;
        compared as a set. Not given means the parents are not managed.
    type: list
    elements: str
    aliases: [parent]
  attributes:
    description:
      - Attributes to set on the group. The keys given are set; keys not named are kept, so Authentik's own
        keys survive.
    type: dict
"""

EXAMPLES = r"""
- name: The group Grafana maps to its Admin role
  turnkey.cluster.authentik_group:
    url: https://auth.cluster.example.com
    ca_path: /etc/ssl/homelab-ca.pem
    token: "{{ authentik_bootstrap_token }}"
    name: grafana-admins
    attributes:
      managed_by: turnkey.cluster
"""

RETURN = r"""
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
object:
  description: The group as Authentik holds it after the task (in check mode, as it would be); empty when deleted.
  returned: always
  type: dict
  sample: {pk: 1e7b0d9e-0a4f-4d8e-9d55-0a3b2c1d4e5f, name: grafana-admins, is_superuser: false, parents: []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import authentik as ak


def main():
    module = AnsibleModule(
        argument_spec=ak.connection_args(
            name=dict(type="str", required=True),
            is_superuser=dict(type="bool"),
            parents=dict(type="list", elements="str", aliases=["parent"]),
            attributes=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def work(client):
        wanted = dict(is_superuser=params["is_superuser"], attributes=params["attributes"])
        if params["state"] == "present":
            wanted["parents"] = client.resolve_all(ak.GROUP, params["parents"], hint="turnkey.cluster.authentik_group")
        result, _current = ak.ensure(client, ak.GROUP, params["name"], dict(wanted, name=params["name"]),
                                     params["state"], module._diff)
        return result

    ak.run_module(module, work)


if __name__ == "__main__":
    main()
