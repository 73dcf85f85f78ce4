#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authentik_proxy_provider
short_description: A proxy provider (forward auth) in Authentik, for applications without OIDC
version_added: 0.1.0
description:
  - Creates, updates or deletes the proxy provider named O(name). In mode V(forward_single) the ingress asks
    an outpost (M(turnkey.cluster.authentik_outpost)) whether a request to O(external_host) is logged in, and
    sends the user through Authentik's login when not.
  - Reads the provider first and sends only the managed fields that differ, so a rerun is C(changed=false).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.authentik
options:
  name:
    description: The provider's name, unique in Authentik.
    type: str
    required: true
  external_host:
    description: The URL users open, for example C(https://kagent.cluster.example.com). Required to create the
      provider.
    type: str
  mode:
    description:
      - V(forward_single) - forward auth for one application (the ingress asks the outpost);
        V(forward_domain) - forward auth for a whole domain (with O(cookie_domain));
        V(proxy) - the outpost proxies to O(internal_host).
    type: str
    choices: [proxy, forward_single, forward_domain]
    default: forward_single
  internal_host:
    description: The upstream the outpost proxies to (mode V(proxy) only).
    type: str
  cookie_domain:
    description: The domain of the session cookie (mode V(forward_domain)).
    type: str
  skip_path_regex:
    description: Paths that need no login, one regular expression a line.
    type: str
  authorization_flow:
    description: Slug of the flow that authorizes the application. Required to create the provider.
    type: str
  invalidation_flow:
    description: Slug of the flow that ends the session. Required to create the provider.
    type: str
  authentication_flow:
    description: Slug of the flow for users not logged in yet; Authentik's default authentication flow when not set.
    type: str
  access_token_validity:
    description: How long a login is valid, for example C(hours=1).
    type: str
  property_mappings:
    description: The scope mappings of the provider, exactly (compared as a set), each by name or by managed id.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Forward auth for Kagent, which has no OIDC login of its own
  turnkey.cluster.authentik_proxy_provider:
    url: https://auth.cluster.example.com
    ca_path: /etc/ssl/homelab-ca.pem
    token: "{{ authentik_bootstrap_token }}"
    name: kagent
    external_host: https://kagent.cluster.example.com
    mode: forward_single
    authorization_flow: default-provider-authorization-implicit-consent
    invalidation_flow: default-provider-invalidation-flow
    access_token_validity: hours=1
"""

RETURN = r"""
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
object:
  description: The provider as Authentik holds it after the task (in check mode, as it would be); empty when deleted.
  returned: always
  type: dict
  sample: {pk: 4, name: kagent, external_host: "https://kagent.cluster.example.com", mode: forward_single}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import authentik as ak

FIELDS = ("name", "external_host", "mode", "internal_host", "cookie_domain", "skip_path_regex", "access_token_validity")


def main():
    module = AnsibleModule(
        argument_spec=ak.connection_args(
            name=dict(type="str", required=True),
            external_host=dict(type="str"),
            mode=dict(type="str", choices=["proxy", "forward_single", "forward_domain"], default="forward_single"),
            internal_host=dict(type="str"),
            cookie_domain=dict(type="str"),
            skip_path_regex=dict(type="str"),
            authorization_flow=dict(type="str"),
            invalidation_flow=dict(type="str"),
            authentication_flow=dict(type="str"),
            access_token_validity=dict(type="str", no_log=False),
            property_mappings=dict(type="list", elements="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def work(client):
        wanted = {field: params[field] for field in FIELDS}
        if params["state"] == "present":
            wanted.update(ak.provider_refs(client, params))
        result, _current = ak.ensure(client, ak.PROXY_PROVIDER, params["name"], wanted, params["state"], module._diff,
                                     required=dict(ak.PROVIDER_REQUIRED, external_host="external_host"))
        return result

    ak.run_module(module, work)


if __name__ == "__main__":
    main()
