#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_init
short_description: Initialise Vault (or OpenBao) exactly once, its keys kept in the persistent store
version_added: 0.1.0
description:
  - Initialises an uninitialised Vault with O(secret_shares) Shamir unseal keys of which O(secret_threshold)
    unseal it, and writes the keys and the root token straight from Vault's answer into the layer 00
    persistent store (secret O(keys_name), type C(provided) - encrypted, atomic, 0600), under the store's lock.
  - An initialised Vault is never initialised again. A Vault that answers C(initialized=false) while the store
    holds keys is a new instance (its storage was torn down) - it is initialised again, the previous keys go to
    the store's C(.backup/) folder, and the task warns - they are never silently overwritten.
  - A Vault initialised elsewhere is taken over with O(adopt) - its keys and root token, handed in once; keys
    that differ from the stored ones replace them, the old ones kept in C(.backup/).
  - An initialised Vault whose store holds no keys, or keys of another threshold, fails the task naming the fix.
  - Runs on the controller (action plugin); no key or token is ever in the result.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.STORE
options:
  secret_shares:
    description: Number of unseal key shares made at initialisation.
    type: int
    default: 5
  secret_threshold:
    description: Number of shares that unseal Vault.
    type: int
    default: 3
  adopt:
    description: Keys of a Vault initialised outside this collection, to keep in the store.
    type: dict
    suboptions:
      unseal_keys:
        description: Its unseal keys (base64), at least the threshold of them.
        type: list
        elements: str
        required: true
      root_token:
        description: Its root token (revoked by M(turnkey.cluster.vault_login) once the playbook's login exists).
        type: str
        required: true
attributes:
  action:
    support: full
    description: Runs on the controller.
  check_mode:
    support: full
    description: Reports whether Vault would be initialised (or adopted); initialises and writes nothing.
  diff_mode:
    support: full
    description: Describes the state before and after; never a key.
"""

EXAMPLES = r"""
- name: Initialise Vault once; keys and root token into the store
  turnkey.cluster.vault_init:
    url: https://vault.example.com:8200
    ca_path: /etc/ssl/homelab-ca.pem
    store_path: "{{ inventory_dir }}/secrets"
    vault_password_env: TURNKEY_VAULT_PASSWORD
"""

RETURN = r"""
action:
  description: C(init), C(reinit) (a new Vault where the store held keys), C(adopt) or C(none).
  returned: always
  type: str
initialized:
  description: Whether Vault was initialised before the task.
  returned: always
  type: bool
reinitialized:
  description: Whether a new Vault was initialised while the store held an earlier instance's keys.
  returned: when Vault was not initialised
  type: bool
path:
  description: The store file of the keys.
  returned: always
  type: str
backup_file:
  description: Where the previous keys went.
  returned: when stored keys were replaced
  type: str
"""
