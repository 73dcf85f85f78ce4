#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sso_login_check
short_description: Logs a user in to an OpenID Connect app end to end in real headless Chromium
version_added: 0.1.0
description:
  - Reads the issuer's discovery document, starts an authorization-code flow with PKCE S256, a state and a
    nonce, and drives Debian's headless Chromium (through the system C(/usr/bin/chromedriver), never a
    downloaded driver) through the IdP's login form and consent page.
  - When the browser reaches O(redirect_uri) the code is read from its URL (the app itself need not be
    reachable from the controller) and the state is checked; the code is exchanged at the token endpoint
    with the client's credentials (HTTP Basic); the ID token's signature is checked (RS256 from the JWKS, or
    HS256 with the client secret), then C(iss), C(aud) (must contain O(client_id)), C(exp) and C(nonce).
  - With O(admin_group), the C(groups) claim must contain it when O(expect_admin) is true, and must not
    when it is false.
  - Saves a PNG screenshot of the finished login (the app's landing page when it answered, else the last
    IdP page before the redirect) at O(screenshot), mode 0600.
  - Chromium trusts O(ca_path) through an NSS database in a private temporary HOME (C(certutil) from
    Debian's libnss3-tools); certificate errors are never ignored.
  - With O(vault_url), Vault itself is the relying party and its UI is opened with the token it gives.
  - Fails naming the step (discovery, browser, login, redirect, token, id_token, groups, and for Vault
    vault_auth_url, vault_callback, vault_policies, vault_ui) and why.
author: turnkey.cluster maintainers (!UNKNOWN)
requirements:
  - selenium (Python, on the controller)
  - Debian packages chromium, chromium-driver and libnss3-tools
options:
  issuer:
    description: The app's issuer URL, e.g. C(https://auth.example.com/application/o/grafana/) (Authentik's
      per-provider issuer). The discovery document must name exactly this issuer.
    type: str
    required: true
  client_id:
    description: The app's OAuth2 client id.
    type: str
    required: true
  client_secret:
    description: The app's client secret (confidential client). Required unless O(vault_url) is set (Vault
      holds its own client secret then).
    type: str
  redirect_uri:
    description: The redirect URI registered for the app; the login ends when the browser reaches it.
    type: str
    required: true
  username:
    description: The user who logs in.
    type: str
    required: true
  password:
    description: The user's password.
    type: str
    required: true
  admin_group:
    description: The app's admin group, checked in the C(groups) claim. Without it the claim is not checked.
    type: str
  expect_admin:
    description: Whether the user must be in O(admin_group) (true) or must not be (false).
    type: bool
    default: true
  scopes:
    description: The scopes asked for.
    type: list
    elements: str
    default: [openid, email, profile, groups]
  ca_path:
    description: CA file the IdP's certificate is verified against, by Python and by Chromium. Without it
      the system's trust stores are used.
    type: path
  screenshot:
    description: Where the PNG screenshot is written (parent folders are made).
    type: path
    required: true
  timeout:
    description: Seconds for each HTTP request and for the browser to reach O(redirect_uri).
    type: int
    default: 60
  vault_url:
    description:
      - Vault's (OpenBao's) address. When set, Vault is the relying party, as for an operator logging in to
        Vault's UI; Vault's OIDC auth method O(vault_mount) gives the authorization URL for O(vault_role) and
        O(redirect_uri) (the UI's callback), the browser logs in at the IdP, the code goes to Vault's callback
        (Vault checks the ID token), the Vault token's policies are checked against O(vault_expect_policies)
        and O(vault_forbid_policies), and Vault's UI is opened with that token (token method) and
        photographed once it shows its console. The token is revoked at the end.
      - O(client_secret) is not used then, nor O(admin_group), which the policies stand for.
    type: str
  vault_ca_path:
    description: CA file Vault's certificate is verified against (default O(ca_path)).
    type: path
  vault_mount:
    description: Path of Vault's OIDC auth method.
    type: str
    default: oidc
  vault_role:
    description: The OIDC role of Vault's auth method the login uses (empty means the method's default role).
    type: str
    default: ""
  vault_expect_policies:
    description: Policies the Vault token must carry (token or identity policies).
    type: list
    elements: str
    default: []
  vault_forbid_policies:
    description: Policies the Vault token must not carry (another group's).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: The check only reads (it logs in and writes its screenshot, which is report output, not
      managed state), so it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
notes:
  - Always C(changed=false). The tokens are never returned, only the ID token's claims.
"""

EXAMPLES = r"""
- name: The operator logs in to Grafana through Authentik and is an admin
  turnkey.cluster.sso_login_check:
    issuer: https://auth.cluster.example.com/application/o/grafana/
    client_id: grafana
    client_secret: "{{ grafana_sso.client_secret }}"
    redirect_uri: https://grafana.cluster.example.com/login/generic_oauth
    username: operator
    password: "{{ operator_password }}"
    admin_group: grafana-admins
    expect_admin: true
    ca_path: /etc/turnkey/ca.pem
    screenshot: "{{ report_dir }}/sso-grafana.png"

- name: The operator logs in to Vault's UI through Authentik and gets the admin policy
  turnkey.cluster.sso_login_check:
    issuer: https://auth.cluster.example.com/application/o/vault/
    client_id: vault
    redirect_uri: https://vault.cluster.example.com/ui/vault/auth/oidc/oidc/callback
    username: operator
    password: "{{ operator_password }}"
    vault_url: https://vault.cluster.example.com
    vault_expect_policies: [turnkey-sso-admin]
    ca_path: /etc/turnkey/ca.pem
    screenshot: "{{ report_dir }}/sso-vault.png"
"""

RETURN = r"""
claims:
  description: The validated ID token's claims (no tokens); with O(vault_url), C(iss), C(aud), C(vault_user)
    and C(vault_policies) (the Vault token's policies).
  returned: success
  type: dict
  sample: {"iss": "https://auth.example.com/application/o/grafana/", "aud": "grafana", "groups": ["grafana-admins"]}
screenshot:
  description: Path of the PNG screenshot, when the browser got that far.
  returned: always
  type: str
failed_step:
  description: The step that failed.
  returned: failure
  type: str
  sample: token
steps:
  description: One entry per step done, with C(step), C(ok) and C(detail); a failure is the last entry.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ..module_utils.sso_login import SELENIUM_IMPORT_ERROR, Login, StepFailed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            issuer=dict(type="str", required=True),
            client_id=dict(type="str", required=True),
            client_secret=dict(type="str", no_log=True),
            redirect_uri=dict(type="str", required=True),
            username=dict(type="str", required=True),
            password=dict(type="str", required=True, no_log=True),
            admin_group=dict(type="str"),
            expect_admin=dict(type="bool", default=True),
            scopes=dict(type="list", elements="str", default=["openid", "email", "profile", "groups"]),
            ca_path=dict(type="path"),
            screenshot=dict(type="path", required=True),
            timeout=dict(type="int", default=60),
            vault_url=dict(type="str"),
            vault_ca_path=dict(type="path"),
            vault_mount=dict(type="str", default="oidc"),
            vault_role=dict(type="str", default=""),
            vault_expect_policies=dict(type="list", elements="str", default=[]),
            vault_forbid_policies=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    if not module.params["vault_url"] and not module.params["client_secret"]:
        module.fail_json(msg="client_secret is required unless vault_url is set")
    if SELENIUM_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("selenium"), exception=SELENIUM_IMPORT_ERROR)
    login = Login(module.params)
    try:
        claims = login.run()
    except StepFailed as exc:
        login.report.append({"step": exc.step, "ok": False, "detail": exc.msg})
        module.fail_json(msg="SSO login of %s to %s failed at step %s: %s" % (
            module.params["username"], module.params["client_id"], exc.step, exc.msg),
            failed_step=exc.step, steps=login.report, screenshot=login.screenshot, changed=False)
    module.exit_json(changed=False, claims=claims, screenshot=login.screenshot, steps=login.report)


if __name__ == "__main__":
    main()
