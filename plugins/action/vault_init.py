# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs on the controller: Vault's unseal keys and root token go from its answer straight into the store."""

from __future__ import annotations

from ansible.utils.display import Display

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib
from ansible_collections.turnkey.cluster.plugins.plugin_utils import vault_keys

display = Display()
# Initialising waits for raft to elect a leader; its answer is the only copy of the keys, never lost to a timeout.
INIT_TIMEOUT = 120


class ActionModule(vault_keys.VaultAction):
    ARGUMENT_SPEC = vault_keys.spec(dict(
        secret_shares=dict(type="int", default=5),
        secret_threshold=dict(type="int", default=3),
        adopt=dict(type="dict", no_log=True, options=dict(
            unseal_keys=dict(type="list", elements="str", required=True, no_log=True),
            root_token=dict(type="str", required=True, no_log=True),
        )),
    ))

    def work(self, result, args):
        if not 1 <= args["secret_threshold"] <= args["secret_shares"] <= 20:
            raise vault_lib.VaultFailure("secret_threshold %d of secret_shares %d: need 1 <= threshold <= shares <= 20"
                                         % (args["secret_threshold"], args["secret_shares"]))
        url = args["url"]
        store = vault_keys.open_store(args)
        status = vault_lib.seal_status(vault_lib.client(args), url)
        stored = vault_keys.read_keys(store, args["keys_name"])
        result.update(path=store.file_of(args["keys_name"]), initialized=bool(status.get("initialized")))
        if not status.get("initialized"):
            return self._initialise(result, args, store, stored)
        if args["adopt"]:
            return self._adopt(result, args, store, stored, status)
        if stored is None:
            raise vault_lib.VaultFailure(
                "Vault at %s is initialised, but the store holds no keys for it (%s). Fix: if it was initialised "
                "outside this collection, hand its unseal keys and root token in once (role variable "
                "vault_config_adopt, docs/vault.md); if the store lost them, restore %s from the store's .backup/ "
                "folder" % (url, store.file_of(args["keys_name"]), store.file_of(args["keys_name"])))
        if status.get("t") and stored["secret_threshold"] != status["t"]:
            raise vault_lib.VaultFailure(
                "Vault at %s needs %s of %s keys, but the store's keys (%s) were made with threshold %d: they belong "
                "to another Vault. Fix: point vault.address at the Vault they belong to, or hand this one's keys in "
                "with vault_config_adopt"
                % (url, status["t"], status.get("n"), store.file_of(args["keys_name"]), stored["secret_threshold"]))
        result["action"] = "none"
        return result

    def _initialise(self, result, args, store, stored):
        # initialized=false while the store holds keys: the Vault was torn down (its storage is new). Its old keys
        # open nothing any more, but they stay in the store's .backup/ - never silently overwritten.
        action = "reinit" if stored is not None else "init"
        result.update(changed=True, action=action, reinitialized=action == "reinit")
        if self.diff:
            result["diff"] = vault_lib.diff_of("uninitialised Vault; store: %s\n" % (
                "keys of an earlier instance" if stored else "no keys"),
                "initialised, %d of %d keys + root token in the store (values not shown)\n" % (
                    args["secret_threshold"], args["secret_shares"]), args["url"])
        if self.check_mode:
            return result
        with store.locked():
            vault = vault_lib.client(dict(args, timeout=INIT_TIMEOUT))
            if vault_lib.seal_status(vault, args["url"]).get("initialized"):
                now = vault_keys.read_keys(store, args["keys_name"])
                if now is not None and now != stored:
                    # A run that held the lock first initialised it and kept its keys: nothing left to do here.
                    result.update(changed=False, action="none")
                    result.pop("diff", None)
                    return result
                raise vault_lib.VaultFailure("Vault at %s was initialised by someone else while this run waited for "
                                             "the store's lock; run again" % args["url"])
            answer = vault_lib.call(args["url"], "initialising Vault", vault.sys.initialize,
                                    secret_shares=args["secret_shares"], secret_threshold=args["secret_threshold"])
            backup = vault_keys.write_secret(store, args["keys_name"], self._fields(
                answer["keys_base64"], answer["root_token"], args, "init"))
        if backup:
            result["backup_file"] = backup
        if action == "reinit":
            display.warning("Vault at %s was not initialised although the store held its keys: a new Vault (after a "
                            "teardown of its storage). It is initialised again; the previous keys are kept in %s"
                            % (args["url"], backup))
        return result

    def _adopt(self, result, args, store, stored, status):
        keys, root_token = args["adopt"]["unseal_keys"], args["adopt"]["root_token"]
        if stored is not None and stored["unseal_keys"] == keys:
            result["action"] = "none"
            return result
        result.update(changed=True, action="adopt")
        if self.diff:
            result["diff"] = vault_lib.diff_of("store: %s\n" % ("other keys" if stored else "no keys"),
                                               "store: the adopted Vault's keys (values not shown)\n", args["url"])
        if self.check_mode:
            return result
        with store.locked():
            backup = vault_keys.write_secret(store, args["keys_name"], self._fields(
                keys, root_token, dict(args, secret_shares=status.get("n") or len(keys),
                                       secret_threshold=status.get("t") or len(keys)), "adopt"))
        if backup:
            result["backup_file"] = backup
            display.warning("the store held other keys for Vault at %s; they are kept in %s" % (args["url"], backup))
        return result

    @staticmethod
    def _fields(keys, root_token, args, origin):
        return {"unseal_keys": " ".join(keys), "root_token": root_token, "vault_url": args["url"], "origin": origin,
                "secret_shares": args["secret_shares"], "secret_threshold": args["secret_threshold"]}
