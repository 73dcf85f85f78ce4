#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authentik_application
short_description: An application in Authentik, bound to its provider
version_added: 0.1.0
description:
  - Creates, updates or deletes the Authentik application with the slug O(slug), bound to the OAuth2 or
    proxy provider named O(provider). With an OAuth2 provider and per-provider issuer mode, the slug is in
    the issuer URL (C(https://<authentik>/application/o/<slug>/)).
  - Reads the application first and sends only the managed fields that differ, so a rerun is
    C(changed=false).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.authentik
options:
  slug:
    description: The application's slug, unique in Authentik; used in URLs.
    type: str
    required: true
  name:
    description: The display name. Required to create the application.
    type: str
  provider:
    description: Name of the OAuth2 or proxy provider the application uses (it must exist; a provider serves one
      application).
    type: str
  group:
    description: The group the application is listed under on the user's page.
    type: str
  meta_launch_url:
    description: The URL the user's application page opens.
    type: str
  meta_description:
    description: The description shown on the user's application page.
    type: str
  meta_publisher:
    description: The publisher shown on the user's application page.
    type: str
  open_in_new_tab:
    description: Whether the launch URL opens in a new tab.
    type: bool
  policy_engine_mode:
    description: V(any) - one bound policy passing grants access; V(all) - every policy must pass.
    type: str
    choices: [all, any]
"""

EXAMPLES = r"""
- name: Grafana's application, bound to its OAuth2 provider
  turnkey.cluster.authentik_application:
    url: https://auth.cluster.example.com
    ca_path: /etc/ssl/homelab-ca.pem
    token: "{{ authentik_bootstrap_token }}"
    slug: grafana
    name: Grafana
    provider: grafana-oauth2
    meta_launch_url: https://grafana.cluster.example.com
    open_in_new_tab: true
"""

RETURN = r"""
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
object:
  description: The application as Authentik holds it after the task (in check mode, as it would be); empty when
    deleted.
  returned: always
  type: dict
  sample: {slug: grafana, name: Grafana, provider: 3, meta_launch_url: "https://grafana.cluster.example.com"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import authentik as ak

FIELDS = ("slug", "name", "group", "meta_launch_url", "meta_description", "meta_publisher", "open_in_new_tab",
          "policy_engine_mode")


def main():
    module = AnsibleModule(
        argument_spec=ak.connection_args(
            slug=dict(type="str", required=True),
            name=dict(type="str"),
            provider=dict(type="str"),
            group=dict(type="str"),
            meta_launch_url=dict(type="str"),
            meta_description=dict(type="str"),
            meta_publisher=dict(type="str"),
            open_in_new_tab=dict(type="bool"),
            policy_engine_mode=dict(type="str", choices=["all", "any"]),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def work(client):
        wanted = {field: params[field] for field in FIELDS}
        if params["state"] == "present" and params["provider"] is not None:
            wanted["provider"] = client.resolve((ak.OAUTH2_PROVIDER, ak.PROXY_PROVIDER), params["provider"],
                                                hint="turnkey.cluster.authentik_oauth2_provider or _proxy_provider")
        result, _current = ak.ensure(client, ak.APPLICATION, params["slug"], wanted, params["state"], module._diff,
                                     required=dict(name="name"))
        return result

    ak.run_module(module, work)


if __name__ == "__main__":
    main()
