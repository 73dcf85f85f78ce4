# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs on the controller: the unseal keys go from the store to Vault and nowhere else."""

from __future__ import annotations

import time

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib
from ansible_collections.turnkey.cluster.plugins.plugin_utils import vault_keys


class ActionModule(vault_keys.VaultAction):
    ARGUMENT_SPEC = vault_keys.spec(dict(wait_timeout=dict(type="int", default=120)))

    def work(self, result, args):
        url = args["url"]
        vault = vault_lib.client(args)
        status = vault_lib.seal_status(vault, url)
        if not status.get("initialized"):
            if self.check_mode:  # vault_init would have initialised it (and unsealing follows)
                result.update(changed=True, action="unseal", sealed=True)
                return result
            raise vault_lib.VaultFailure("Vault at %s is not initialised. Fix: %s" % (url, vault_lib.FIX_UNINITIALISED))
        if not status.get("sealed"):
            result.update(action="none", sealed=False)
            return self._active(result, vault, args)
        result.update(changed=True, action="unseal", sealed=True)
        if self.diff:
            result["diff"] = vault_lib.diff_of("sealed\n", "unsealed\n", url)
        if self.check_mode:
            return result
        store = vault_keys.open_store(args)
        stored = vault_keys.read_keys(store, args["keys_name"])
        if not stored or not stored["unseal_keys"]:
            raise vault_lib.VaultFailure("Vault at %s is sealed and the store holds no unseal keys for it (%s). Fix: "
                                         "unseal it by hand (`bao operator unseal`), then hand its keys in once with "
                                         "vault_config_adopt (docs/vault.md)" % (url, store.file_of(args["keys_name"])))
        with store.locked():  # two runs at once: the second finds Vault unsealed, or the keys the first stored
            if vault_lib.seal_status(vault, url).get("sealed"):
                stored = vault_keys.read_keys(store, args["keys_name"])
                self._unseal(vault, url, stored, status, store.file_of(args["keys_name"]))
        result["sealed"] = False
        return self._active(result, vault, args)

    def _unseal(self, vault, url, stored, status, where):
        # Start from no progress, so a share someone left half-entered cannot mix with the store's.
        if not self._submit(vault, url, None, where).get("sealed"):
            return
        for key in stored["unseal_keys"]:
            answer = self._submit(vault, url, key, where)
            if not answer.get("sealed"):
                break
        else:
            raise vault_lib.VaultFailure(
                "Vault at %s is still sealed after all %d keys of %s: they are not this Vault's keys (or fewer than "
                "its threshold %s). Fix: point vault.address at the Vault they belong to, or hand this one's keys in "
                "with vault_config_adopt" % (url, len(stored["unseal_keys"]), where, status.get("t")))

    @staticmethod
    def _submit(vault, url, key, where):
        try:
            return vault.sys.submit_unseal_key(key=key, reset=key is None)
        except Exception as exc:  # noqa: BLE001 - a wrong key is a 400 with a cryptic text
            if "vault is unsealed" in str(exc):  # someone else (another run, a supervisor) unsealed it meanwhile
                return {"sealed": False}
            text = vault_lib.describe(exc, url)
            if text:
                raise vault_lib.VaultFailure(text) from None
            raise vault_lib.VaultFailure("Vault at %s refused an unseal key of %s (%s): they are not this Vault's "
                                         "keys. Fix: point vault.address at the Vault they belong to, or hand this "
                                         "one's keys in with vault_config_adopt" % (url, where, exc)) from None

    def _active(self, result, vault, args):
        """An unsealed raft node needs a moment to become the active node; later tasks need that, not standby."""
        deadline = time.monotonic() + args["wait_timeout"]
        while True:
            try:
                health = vault.sys.read_health_status(method="GET")
                health = health if isinstance(health, dict) else health.json()
            except Exception as exc:  # noqa: BLE001
                health = {"error": str(exc)}
            if health.get("initialized") and not health.get("sealed") and not health.get("standby") \
                    and "error" not in health:
                return result
            if time.monotonic() > deadline:
                raise vault_lib.VaultFailure("Vault at %s is unsealed but did not become active within %d s (%s). Fix: "
                                             "look at its log; a raft cluster needs a quorum of its nodes"
                                             % (args["url"], args["wait_timeout"], health))
            time.sleep(0.5)
