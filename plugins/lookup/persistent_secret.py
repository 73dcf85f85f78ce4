# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: persistent_secret
short_description: Read a secret from the encrypted persistent store
version_added: 0.1.0
description:
  - Returns the data of secrets that C(turnkey.cluster.persistent_secret) keeps, for tasks that hand
    them to a system (for example the sealed-secrets key into the cluster). Use it only in tasks with
    C(no_log) set.
  - The store options not given default to the inventory's C(secrets_store) (C(path), C(vault_password_file),
    C(vault_password_env)), so a role reads the store the way every layer does.
author: turnkey.cluster maintainers (!UNKNOWN)
options:
  _terms:
    description: Names of the secrets.
    type: list
    elements: str
    required: true
  store_path:
    description: The store folder. Default C(secrets_store.path).
    type: path
  vault_password_file:
    description: A file holding the vault password. Default C(secrets_store.vault_password_file).
    type: path
  vault_password_env:
    description:
      - An environment variable holding the vault password; it wins over the file.
      - Default C(secrets_store.vault_password_env), else C(TURNKEY_VAULT_PASSWORD) when C(secrets_store) is set.
    type: str
  field:
    description: Return only this field of the data (for example C(private_key)) instead of the whole data.
    type: str
"""

EXAMPLES = r"""
- name: Put the sealed-secrets key where the controller finds it
  no_log: true
  ansible.builtin.set_fact:
    sealed_secrets_key: "{{ lookup('turnkey.cluster.persistent_secret', 'sealed_secrets', field='private_key') }}"

- name: A store other than the inventory's
  no_log: true
  ansible.builtin.set_fact:
    deploy_key: >-
      {{ lookup('turnkey.cluster.persistent_secret', 'flux_deploy_key', field='private_key',
                store_path='/srv/other/secrets', vault_password_env='OTHER_VAULT_PASSWORD') }}
"""

RETURN = r"""
_raw:
  description: The data of each secret (a dict), or the chosen field of it (a string).
  type: list
  elements: raw
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.turnkey.cluster.plugins.plugin_utils import persistent_store as store_lib

# The inventory's secrets_store keys, and the options they give defaults to.
INVENTORY_STORE = {"path": "store_path", "vault_password_file": "vault_password_file",
                   "vault_password_env": "vault_password_env"}


class LookupModule(LookupBase):
    def _inventory_store(self, variables):
        """The options the inventory's secrets_store gives (templated: its path names inventory_dir)."""
        store = (variables or {}).get("secrets_store")
        if not store:
            return {}
        store = self._templar.template(store)
        given = {"vault_password_env": "TURNKEY_VAULT_PASSWORD"}
        given.update({option: store[key] for key, option in INVENTORY_STORE.items() if store.get(key)})
        return given

    def run(self, terms, variables=None, **kwargs):
        given = {key: value for key, value in kwargs.items() if value is not None}
        self.set_options(var_options=variables, direct={**self._inventory_store(variables), **given})
        if not self.get_option("store_path"):
            raise AnsibleLookupError("persistent_secret: no store; set secrets_store.path in the inventory or "
                                     "pass store_path")
        try:
            password = store_lib.resolve_password(self.get_option("vault_password_file"),
                                                  self.get_option("vault_password_env"))
            store = store_lib.Store(self.get_option("store_path"), password)
            values = []
            for name in terms:
                record = store.read(name)
                if record is None:
                    raise AnsibleLookupError("persistent secret %s does not exist in %s; run layer 00 "
                                             "(--tags persistent_auth) first" % (name, store.path))
                field = self.get_option("field")
                if field and field not in record["data"]:
                    raise AnsibleLookupError("persistent secret %s has no field %s (it has %s)"
                                             % (name, field, ", ".join(sorted(record["data"]))))
                values.append(record["data"][field] if field else record["data"])
            return values
        except store_lib.StoreError as exc:
            raise AnsibleLookupError(str(exc)) from None
