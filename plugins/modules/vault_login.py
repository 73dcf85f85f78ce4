#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_login
short_description: The playbook's short-lived Vault token (AppRole login from the store), and its logout
version_added: 0.1.0
description:
  - O(state=present) logs in with the playbook's AppRole credentials from the persistent store (secret
    O(login_name)) and returns a token with only the policy O(policy_name), valid O(token_ttl) seconds.
  - When the store holds no working login (the first run, or a Vault initialised again), the login is made
    with a root token - the one M(turnkey.cluster.vault_init) stored, or O(root_token) - that writes the policy
    O(policy), enables AppRole at O(approle_mount), makes the role and a secret id, keeps them in the store
    (the previous ones in C(.backup/)), and is then revoked. The root token never leaves the controller plugin.
  - O(state=absent) revokes O(token); with O(fail_on_root_tokens) it first lists every live token (by accessor)
    and fails, naming them, when one carries the root policy.
  - Logging in and out are not changes (C(changed=false)); making the login is.
  - Runs on the controller (action plugin). The whole result is hidden from output (it holds the token).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.STORE
options:
  state:
    description: C(present) logs in, C(absent) revokes O(token).
    type: str
    choices: [present, absent]
    default: present
  token:
    description: The token to revoke (O(state=absent)).
    type: str
  login_name:
    description: The secret in the store with the playbook's AppRole credentials.
    type: str
    default: vault_playbook_login
  policy_name:
    description: The playbook's policy, also the AppRole role's name.
    type: str
    default: turnkey-playbook
  policy:
    description: The playbook's policy rules (HCL), written when the login is made.
    type: str
  approle_mount:
    description: Where the playbook's AppRole auth method is mounted.
    type: str
    default: turnkey
  token_ttl:
    description: Lifetime of the playbook's tokens in seconds.
    type: int
    default: 900
  token_max_ttl:
    description: Longest lifetime of the playbook's tokens in seconds, renewals included.
    type: int
    default: 1800
  root_token:
    description:
      - A root token for recovery, when the store's login and root token no longer work (revoked after use).
    type: str
  fail_on_root_tokens:
    description: With O(state=absent), fail when any live token carries the root policy.
    type: bool
    default: true
attributes:
  action:
    support: full
    description: Runs on the controller.
  check_mode:
    support: full
    description: Logs in (a token is not a change, later tasks need it to read); reports a login that would be made
      without making it, and then returns no token.
  diff_mode:
    support: full
    description: Describes the login that would be made.
"""

EXAMPLES = r"""
- name: Log in as the playbook
  turnkey.cluster.vault_login:
    url: https://vault.example.com:8200
    store_path: "{{ inventory_dir }}/secrets"
    vault_password_env: TURNKEY_VAULT_PASSWORD
    policy: "{{ lookup('ansible.builtin.template', 'playbook-policy.hcl.j2') }}"
  register: vault_login

- name: Log out; fail if a root token is live
  turnkey.cluster.vault_login:
    url: https://vault.example.com:8200
    store_path: "{{ inventory_dir }}/secrets"
    state: absent
    token: "{{ vault_login.token }}"
"""

RETURN = r"""
token:
  description: The playbook's token (C(null) in check mode when the login would first be made).
  returned: state=present
  type: str
accessor:
  description: The token's accessor.
  returned: state=present and a token was made
  type: str
policies:
  description: The token's policies.
  returned: state=present and a token was made
  type: list
  elements: str
bootstrapped:
  description: Whether the login was made (and the root token revoked) by this task.
  returned: state=present and a token was made
  type: bool
action:
  description: C(bootstrap), C(login) or C(logout).
  returned: always
  type: str
root_tokens:
  description: Live tokens with the root policy (accessor, display name, creation time).
  returned: state=absent
  type: list
  elements: dict
"""
