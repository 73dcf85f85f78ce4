#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authentik_outpost
short_description: A proxy outpost in Authentik and the providers it serves
version_added: 0.1.0
description:
  - Creates, updates or deletes the outpost named O(name) and sets the proxy providers it serves (forward
    auth, M(turnkey.cluster.authentik_proxy_provider)).
  - Authentik's own embedded outpost is targeted by its name, C(authentik Embedded Outpost); it cannot be
    deleted.
  - Reads the outpost first and sends only the managed fields that differ, so a rerun is C(changed=false).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.authentik
options:
  name:
    description: The outpost's name, unique in Authentik.
    type: str
    required: true
  type:
    description: The outpost's type; this module manages proxy outposts.
    type: str
    choices: [proxy]
    default: proxy
  providers:
    description: Names of the proxy providers the outpost serves, exactly (compared as a set).
    type: list
    elements: str
  config:
    description:
      - Settings of the outpost (for example C(authentik_host)). The keys given are set; keys not named are
        kept. An outpost created by the task starts from Authentik's default settings.
    type: dict
"""

EXAMPLES = r"""
- name: The embedded outpost serves Kagent's forward auth
  turnkey.cluster.authentik_outpost:
    url: https://auth.cluster.example.com
    ca_path: /etc/ssl/homelab-ca.pem
    token: "{{ authentik_bootstrap_token }}"
    name: authentik Embedded Outpost
    providers: [kagent]
    config:
      authentik_host: https://auth.cluster.example.com
"""

RETURN = r"""
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
object:
  description: The outpost as Authentik holds it after the task (in check mode, as it would be); empty when deleted.
  returned: always
  type: dict
  sample: {name: authentik Embedded Outpost, type: proxy, providers: [4], config: {authentik_host: "https://auth.example.com"}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import authentik as ak


def main():
    module = AnsibleModule(
        argument_spec=ak.connection_args(
            name=dict(type="str", required=True),
            type=dict(type="str", choices=["proxy"], default="proxy"),
            providers=dict(type="list", elements="str"),
            config=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def work(client):
        name = params["name"]
        wanted = dict(name=name, type=params["type"], config=params["config"], providers=None)
        if params["state"] == "present":
            wanted["providers"] = client.resolve_all(ak.PROXY_PROVIDER, params["providers"],
                                                     hint="turnkey.cluster.authentik_proxy_provider")

        def defaults():
            settings = client.call("reading the outposts' default settings", ak.OUTPOST.api,
                                   "outposts_instances_default_settings_retrieve")
            return dict(providers=[], config=dict(settings.config))

        result, _current = ak.ensure(client, ak.OUTPOST, name, wanted, params["state"], module._diff,
                                     create_defaults=defaults)
        return result

    ak.run_module(module, work)


if __name__ == "__main__":
    main()
