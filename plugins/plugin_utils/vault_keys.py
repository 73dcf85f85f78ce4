# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vault's unseal keys and the playbook's login in the persistent store, for the vault_* action plugins.

Controller-side only: the keys and tokens are read and written here and never travel to a target or into
a task result. Both are kept as secrets of type ``provided`` (strings only), so the store's lookup and
``ansible-vault view`` read them like any other.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib
from ansible_collections.turnkey.cluster.plugins.plugin_utils import persistent_store as store_lib

STORE_ARGS = dict(
    store_path=dict(type="path", required=True),
    vault_password_file=dict(type="path"),
    vault_password_env=dict(type="str"),
    keys_name=dict(type="str", default="vault_keys"),
)


def open_store(args):
    password = store_lib.resolve_password(args["vault_password_file"], args["vault_password_env"])
    return store_lib.Store(args["store_path"], password)


def read_keys(store, name):
    """{'unseal_keys': [...], 'root_token', 'secret_threshold', ...} or None when the store holds none."""
    record = store.read(name)
    if record is None:
        return None
    data = dict(record["data"])
    data["unseal_keys"] = data.get("unseal_keys", "").split()
    data["secret_threshold"] = int(data.get("secret_threshold") or len(data["unseal_keys"]) or 1)
    return data


def write_secret(store, name, fields):
    """Writes a provided-type record (strings only), the version after the stored one; returns the backup path
    of the replaced version (None when there was none)."""
    previous = store.read(name)
    record = store_lib.new_record(name, "provided", {"data": {k: str(v) for k, v in fields.items()}}, previous)
    return store.write(name, record)


class VaultAction(ActionBase):
    """Validates the arguments, then runs self.work(result, args); a failure becomes failed=True with its text."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_diff = True
    ARGUMENT_SPEC = {}

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        result["changed"] = False
        try:
            return self.work(result, args)
        except (vault_lib.VaultFailure, store_lib.StoreError) as exc:
            result.update(failed=True, msg=str(exc))
            return result

    def work(self, result, args):
        raise NotImplementedError

    @property
    def check_mode(self):
        return bool(self._task.check_mode)

    @property
    def diff(self):
        return bool(self._task.diff or self._play_context.diff)


def spec(*parts):
    """One argument spec from the connection options, the store options and the plugin's own."""
    merged = vault_lib.connection_args(with_token=False)
    merged.update(STORE_ARGS)
    for part in parts:
        merged.update(part)
    return merged
