# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The connection options every turnkey.cluster vault_* module and action plugin shares
    # (module_utils/vault.py, CONNECTION_ARGS).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Vault's (or OpenBao's) address, C(https://host:8200). Plain C(http) is refused unless
        O(validate_certs=false), because tokens and unseal keys would travel in clear.
    type: str
    required: true
  ca_path:
    description: CA bundle that signed Vault's certificate; the system's trust store when not given.
    type: path
  validate_certs:
    description: Verify Vault's TLS certificate. Leave it on; off is for throw-away test servers only.
    type: bool
    default: true
  timeout:
    description: Seconds one request to Vault may take.
    type: int
    default: 30
requirements:
  - hvac (Python library, on the controller)
notes:
  - An unreachable, uninitialised or sealed Vault fails the task before any change, naming the fix.
"""

    # Modules that act with a token (the playbook's short-lived token from turnkey.cluster.vault_login).
    TOKEN = r"""
options:
  token:
    description:
      - The Vault token to act with - the playbook's short-lived token from M(turnkey.cluster.vault_login),
        never a root token.
    type: str
    required: true
"""

    # The action plugins that read or write the persistent store (vault_init, vault_unseal, vault_login).
    STORE = r"""
options:
  store_path:
    description: The persistent store folder (C(secrets_store.path)).
    type: path
    required: true
  vault_password_file:
    description: A file holding the store's vault password.
    type: path
  vault_password_env:
    description: An environment variable holding the store's vault password; it wins over the file.
    type: str
  keys_name:
    description: The secret in the store that holds the unseal keys and the initial root token.
    type: str
    default: vault_keys
"""
