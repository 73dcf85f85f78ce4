#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authentik_oauth2_provider
short_description: An OAuth2/OpenID Connect provider in Authentik
version_added: 0.1.0
description:
  - Creates, updates or deletes the OAuth2/OIDC provider named O(name), the client an application logs in
    with (client id and secret, strict redirect URIs, flows, signing key, the scopes' claims).
  - Reads the provider first and sends only the managed fields that differ, so a rerun is C(changed=false);
    one changed redirect URI updates this provider only.
  - Authentik returns the client secret to administrators, so O(client_secret) is compared with the stored one
    (never shown; the diff says C(<hidden>) or C(<hidden, changed>)). Generate it once into the persistent
    store and pass it here, so a rebuilt Authentik gets the same secret the application already has.
  - Flows are named by slug, the signing key by the certificate keypair's name, scope mappings by name or by
    Authentik's managed id; all must exist.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.authentik
options:
  name:
    description: The provider's name, unique in Authentik (for example C(grafana-oauth2)).
    type: str
    required: true
  client_type:
    description: V(confidential) for a server-side application that keeps a secret; V(public) for one that cannot.
    type: str
    choices: [confidential, public]
    default: confidential
  client_id:
    description: The client id the application uses; Authentik generates one when the provider is created without it.
    type: str
  client_secret:
    description: The client secret; Authentik generates one when the provider is created without it.
    type: str
  redirect_uris:
    description:
      - The redirect URIs the provider accepts, exactly (compared regardless of order). Required to create the
        provider.
    type: list
    elements: dict
    suboptions:
      url:
        description: The URI (the application's callback).
        type: str
        required: true
      matching_mode:
        description: V(strict) - the URI as written; V(regex) - a regular expression.
        type: str
        choices: [strict, regex]
        default: strict
      redirect_uri_type:
        description: V(authorization) - a login callback; V(logout) - a post-logout redirect.
        type: str
        choices: [authorization, logout]
        default: authorization
  authorization_flow:
    description: Slug of the flow that authorizes the application, for example
      C(default-provider-authorization-implicit-consent). Required to create the provider.
    type: str
  invalidation_flow:
    description: Slug of the flow that ends the session, for example C(default-provider-invalidation-flow).
      Required to create the provider.
    type: str
  authentication_flow:
    description: Slug of the flow for users not logged in yet; Authentik's default authentication flow when not set.
    type: str
  signing_key:
    description: Name of the certificate keypair that signs the tokens (RS256), for example
      C(authentik Self-signed Certificate). Without one Authentik signs with the client secret (HS256).
    type: str
  property_mappings:
    description:
      - The scope mappings of the provider, exactly (compared as a set), each by name or by managed id, for
        example C(goauthentik.io/providers/oauth2/scope-openid).
    type: list
    elements: str
  sub_mode:
    description: What the C(sub) claim holds.
    type: str
    choices: [hashed_user_id, user_id, user_uuid, user_username, user_email, user_upn]
  issuer_mode:
    description: V(per_provider) - the issuer is the application's own URL; V(global) - one issuer for all.
    type: str
    choices: [global, per_provider]
  include_claims_in_id_token:
    description: Put the scopes' claims (C(groups), C(email)) into the ID token, not only into userinfo.
    type: bool
  access_code_validity:
    description: How long an authorization code is valid, for example C(minutes=1).
    type: str
  access_token_validity:
    description: How long an access token is valid, for example C(minutes=5).
    type: str
  refresh_token_validity:
    description: How long a refresh token is valid, for example C(days=30).
    type: str
"""

EXAMPLES = r"""
- name: Grafana's provider, its secret generated once into the store
  turnkey.cluster.authentik_oauth2_provider:
    url: https://auth.cluster.example.com
    ca_path: /etc/ssl/homelab-ca.pem
    token: "{{ authentik_bootstrap_token }}"
    name: grafana-oauth2
    client_id: grafana
    client_secret: "{{ grafana_client_secret }}"
    redirect_uris:
      - url: https://grafana.cluster.example.com/login/generic_oauth
    authorization_flow: default-provider-authorization-implicit-consent
    invalidation_flow: default-provider-invalidation-flow
    signing_key: authentik Self-signed Certificate
    issuer_mode: per_provider
    include_claims_in_id_token: true
    property_mappings:
      - goauthentik.io/providers/oauth2/scope-openid
      - goauthentik.io/providers/oauth2/scope-email
      - goauthentik.io/providers/oauth2/scope-profile
      - Groups Mapping
"""

RETURN = r"""
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
object:
  description:
    - The provider as Authentik holds it after the task (in check mode, as it would be), without the client
      secret; empty when deleted.
  returned: always
  type: dict
  sample: {pk: 3, name: grafana-oauth2, client_id: grafana, client_type: confidential}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import authentik as ak

SCALARS = ("client_type", "client_id", "client_secret", "sub_mode", "issuer_mode", "include_claims_in_id_token",
           "access_code_validity", "access_token_validity", "refresh_token_validity")


def main():
    module = AnsibleModule(
        argument_spec=ak.connection_args(
            name=dict(type="str", required=True),
            client_type=dict(type="str", choices=["confidential", "public"], default="confidential"),
            client_id=dict(type="str"),
            client_secret=dict(type="str", no_log=True),
            redirect_uris=dict(type="list", elements="dict", options=dict(
                url=dict(type="str", required=True),
                matching_mode=dict(type="str", choices=["strict", "regex"], default="strict"),
                redirect_uri_type=dict(type="str", choices=["authorization", "logout"], default="authorization"),
            )),
            authorization_flow=dict(type="str"),
            invalidation_flow=dict(type="str"),
            authentication_flow=dict(type="str"),
            signing_key=dict(type="str", no_log=False),
            property_mappings=dict(type="list", elements="str"),
            sub_mode=dict(type="str", choices=["hashed_user_id", "user_id", "user_uuid", "user_username",
                                               "user_email", "user_upn"]),
            issuer_mode=dict(type="str", choices=["global", "per_provider"]),
            include_claims_in_id_token=dict(type="bool"),
            access_code_validity=dict(type="str"),
            access_token_validity=dict(type="str", no_log=False),
            refresh_token_validity=dict(type="str", no_log=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    uris = [(entry["redirect_uri_type"], entry["url"]) for entry in params["redirect_uris"] or []]
    duplicated = sorted({url for kind, url in uris if uris.count((kind, url)) > 1})
    if duplicated:
        module.fail_json(msg="provider %s: redirect URI(s) given twice: %s" % (params["name"], ", ".join(duplicated)))

    def work(client):
        wanted = {field: params[field] for field in SCALARS}
        wanted.update(name=params["name"], redirect_uris=params["redirect_uris"])
        if params["state"] == "present":
            wanted.update(ak.provider_refs(client, params))
            if params["signing_key"] is not None:
                wanted["signing_key"] = client.resolve(ak.KEYPAIR, params["signing_key"])
        result, _current = ak.ensure(client, ak.OAUTH2_PROVIDER, params["name"], wanted, params["state"], module._diff,
                                     required=dict(ak.PROVIDER_REQUIRED, redirect_uris="redirect_uris"))
        return result

    ak.run_module(module, work)


if __name__ == "__main__":
    main()
