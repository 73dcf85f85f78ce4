#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate_spec
short_description: Check the cluster spec's cross-field rules before anything is touched
version_added: 0.1.0
description:
  - Checks the rules of the turnkey.cluster spec that involve more than one field, for example unique
    node names, addresses and VM ids, addresses inside their networks, VIPs and load-balancer pools that
    do not collide with nodes or the gateway, an odd number of control planes, a compatible version
    matrix, the credentials the running layer needs, and single sign-on and DNS settings that fit together
    (unique app slugs and users, https redirect URIs unique across apps, admin groups among the app's groups,
    users' groups known, Authentik over https, app hosts inside the DNS zone, a complete DNS secondary).
  - Types of the cluster-wide variables are checked by the role C(turnkey.cluster.validate) argument
    specification; types of the node variables by this module's I(nodes) option.
  - Fails with every problem found at once; each names the field and how to fix it.
author: turnkey.cluster maintainers (!UNKNOWN)
options:
  spec:
    description:
      - The cluster-wide variables, keyed by their names (C(cluster_name), C(cluster_domain),
        C(cluster_network), C(cluster_versions), C(talos_image), C(proxmox), C(hetzner), C(hybrid), C(gitops),
        C(sso_apps), C(sso_users), C(sso_groups), C(authentik), C(dns), C(secrets_store), C(vault), C(charts)).
      - Pass no secret here. The rules only need to know whether a credential is set, so the role
        C(turnkey.cluster.validate) replaces C(proxmox.token_secret), C(hetzner.token), C(dns.api_key) and
        C(dns.secondary.api_key) by C(set) or an empty string (a secondary's key that is not named at all stays
        C(null)).
    type: dict
    required: true
  nodes:
    description:
      - One entry per inventory host in the group C(cluster), as the filter
        C(turnkey.cluster.cluster_nodes) builds it from the inventory.
      - Keys are C(name), C(roles) (role groups the host is in), C(providers) (provider groups),
        C(ip), C(vmid), C(cores), C(memory_mb), C(balloon_mb) and C(disk_gb); their types are checked
        here so that each error can name the host and the host variable.
    type: list
    elements: dict
    required: true
  layer:
    description:
      - The layer about to run; only the credentials this layer needs are required.
    type: str
    required: true
    choices: [persistent_auth, infrastructure, services, configuration]
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
"""

EXAMPLES = r"""
- name: Validate the cluster spec for layer 00
  turnkey.cluster.validate_spec:
    layer: persistent_auth
    spec:
      cluster_name: "{{ cluster_name }}"
      cluster_domain: "{{ cluster_domain }}"
      cluster_network: "{{ cluster_network }}"
      cluster_versions: "{{ cluster_versions }}"
      gitops: "{{ gitops }}"
      secrets_store: "{{ secrets_store }}"
    nodes:
      - name: cp1
        roles: [controlplane]
        providers: [proxmox]
        ip: 10.2.1.1
        vmid: 1500
        cores: 4
        memory_mb: 12288
        balloon_mb: 3072
        disk_gb: 40
"""

RETURN = r"""
nodes:
  description: How many nodes of each role and provider the spec describes.
  returned: success
  type: dict
  sample: {controlplane: 3, worker: 4, proxmox: 6, hetzner: 1}
errors:
  description: Every problem found, each naming the field and the fix.
  returned: failure
  type: list
  elements: str
  sample: ["cluster_network.api_vip: 10.2.1.1 is ... Fix: pick a free address ..."]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import LAYERS, validate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            spec=dict(type="dict", required=True),
            nodes=dict(type="list", elements="dict", required=True),
            layer=dict(type="str", required=True, choices=list(LAYERS)),
        ),
        supports_check_mode=True,
    )
    nodes = module.params["nodes"]
    errors = validate(module.params["spec"], nodes, module.params["layer"])
    if errors:
        module.fail_json(msg="The cluster spec has %d problem(s):\n- %s" % (len(errors), "\n- ".join(errors)),
                         errors=errors)
    counts = {}
    for node in nodes:
        for key in (node.get("roles") or []) + (node.get("providers") or []):
            counts[key] = counts.get(key, 0) + 1
    module.exit_json(changed=False, nodes=counts)


if __name__ == "__main__":
    main()
