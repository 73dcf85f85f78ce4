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
author: turnkey.cluster maintainers (!UNKNOWN)
options:
  _terms:
    description: Names of the secrets.
    type: list
    elements: str
    required: true
  store_path:
    description: The store folder.
    type: path
    required: true
  vault_password_file:
    description: A file holding the vault password.
    type: path
  vault_password_env:
    description: An environment variable holding the vault password; it wins over the file.
    type: str
  field:
    description: Return only this field of the data (for example C(private_key)) instead of the whole data.
    type: str
"""

EXAMPLES = r"""
- name: Put the sealed-secrets key where the controller finds it
  no_log: true
  ansible.builtin.set_fact:
    sealed_secrets_key: >-
      {{ lookup('turnkey.cluster.persistent_secret', 'sealed_secrets', field='private_key',
                store_path=secrets_store.path, vault_password_file=secrets_store.vault_password_file) }}
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


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
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
