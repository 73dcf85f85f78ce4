#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_unseal
short_description: Unseal Vault (or OpenBao) with the keys in the persistent store
version_added: 0.1.0
description:
  - When Vault is sealed (after a restart or a node reboot), submits the unseal keys that
    M(turnkey.cluster.vault_init) kept in the persistent store, from a reset unseal progress, until it is
    unsealed; then waits until the node is active (not standby).
  - An unsealed Vault is left alone (C(changed=false)). Keys that do not unseal it fail the task, naming the
    store file and the fix.
  - Runs on the controller (action plugin); the keys never leave it.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.STORE
options:
  wait_timeout:
    description: Seconds to wait for the unsealed node to become active.
    type: int
    default: 120
attributes:
  action:
    support: full
    description: Runs on the controller.
  check_mode:
    support: full
    description: Reports whether Vault would be unsealed; submits no key.
  diff_mode:
    support: full
    description: Shows sealed and unsealed.
"""

EXAMPLES = r"""
- name: Unseal Vault after a restart
  turnkey.cluster.vault_unseal:
    url: https://vault.example.com:8200
    store_path: "{{ inventory_dir }}/secrets"
    vault_password_env: TURNKEY_VAULT_PASSWORD
"""

RETURN = r"""
action:
  description: C(unseal) or C(none).
  returned: always
  type: str
sealed:
  description: Whether Vault is sealed after the task (in check mode, before it).
  returned: always
  type: bool
"""
