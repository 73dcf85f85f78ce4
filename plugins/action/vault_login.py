# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs on the controller: the playbook's short-lived Vault token, from its AppRole login in the store.

The first time (and after Vault was initialised again) the login is made with the root token that
initialisation left in the store, which is then revoked. No root token ever leaves this plugin.
"""

from __future__ import annotations

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib
from ansible_collections.turnkey.cluster.plugins.plugin_utils import vault_keys

RECOVERY = ("Fix: make a root token with the unseal keys (`bao operator generate-root`, docs/vault.md#recovery) and "
            "hand it in once with -e vault_config_root_token=...; the run makes the playbook's login again and "
            "revokes that token")


class ActionModule(vault_keys.VaultAction):
    ARGUMENT_SPEC = vault_keys.spec(dict(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        token=dict(type="str", no_log=True),
        login_name=dict(type="str", default="vault_playbook_login"),
        policy_name=dict(type="str", default="turnkey-playbook"),
        policy=dict(type="str"),
        approle_mount=dict(type="str", default="turnkey"),
        token_ttl=dict(type="int", default=900),
        token_max_ttl=dict(type="int", default=1800),
        root_token=dict(type="str", no_log=True),
        fail_on_root_tokens=dict(type="bool", default=True),
    ))

    def work(self, result, args):
        url = args["url"]
        status = vault_lib.seal_status(vault_lib.client(args), url)
        if self.check_mode and (not status.get("initialized") or status.get("sealed")):
            # vault_init / vault_unseal reported what they would do; nothing can be read before they did it.
            result.update(action="none", token=None)
            return result
        vault_lib.require_ready(vault_lib.client(args), url)
        if args["state"] == "absent":
            return self._logout(result, args)
        store = vault_keys.open_store(args)
        creds = store.read(args["login_name"])
        reason = "the store holds no login for the playbook"
        if args["root_token"]:
            reason = "a root token was handed in to make the login again"
        elif creds is not None:
            token, reason = self._login(args, creds["data"])
            if token:
                return self._answer(result, token, bootstrapped=False)
        # No usable login: make it with a root token (the one initialisation stored, or one handed in).
        if not args["policy"]:
            raise vault_lib.VaultFailure("%s; the login is made with policy, which was not given" % reason)
        result.update(changed=True, action="bootstrap", reason=reason)
        if self.diff:
            after = "AppRole %s/ role %s with policy %s; the root token revoked\n" % (
                args["approle_mount"], args["policy_name"], args["policy_name"])
            result["diff"] = vault_lib.diff_of("no playbook login (%s)\n" % reason, after, url)
        if self.check_mode:  # also when vault_init would first adopt a Vault (and its root token)
            result["token"] = None
            return result
        with store.locked():
            # Decided again under the lock: a run that got it first may have made the login (and revoked the root
            # token), or initialised Vault and stored its keys after this run read them.
            again = store.read(args["login_name"])
            if again is not None and again != creds and not args["root_token"]:
                token, _reason = self._login(args, again["data"])
                if token:
                    result.update(changed=False, action="login")
                    result.pop("diff", None)
                    return self._answer(result, token, bootstrapped=False)
            root = args["root_token"] or (vault_keys.read_keys(store, args["keys_name"]) or {}).get("root_token")
            root_client = vault_lib.client(args, token=root) if root else None
            if root_client is None or not self._is_root(root_client):
                raise vault_lib.VaultFailure("Vault at %s: %s, and no live root token to make one with (the stored one "
                                             "is revoked once the login exists). %s" % (url, reason, RECOVERY))
            self._bootstrap(root_client, args, store)
            vault_lib.call(url, "revoking the root token", root_client.auth.token.revoke_self)
        token, reason = self._login(args, store.read(args["login_name"])["data"])
        if not token:
            raise vault_lib.VaultFailure("Vault at %s: the playbook's new login does not work (%s)" % (url, reason))
        return self._answer(result, token, bootstrapped=True)

    @staticmethod
    def _is_root(root_client):
        try:
            return "root" in root_client.auth.token.lookup_self()["data"].get("policies", [])
        except Exception:  # noqa: BLE001 - revoked, expired or from another Vault: not usable
            return False

    @staticmethod
    def _login(args, data):
        vault = vault_lib.client(args)
        try:
            answer = vault.auth.approle.login(role_id=data["role_id"], secret_id=data["secret_id"],
                                              mount_point=data.get("mount") or args["approle_mount"], use_token=False)
        except Exception as exc:  # noqa: BLE001
            text = vault_lib.describe(exc, args["url"])
            if text and "permission denied" not in text:
                raise vault_lib.VaultFailure(text) from None
            return None, "the stored login is refused (a new Vault since it was made?)"
        return answer["auth"], None

    @staticmethod
    def _bootstrap(root_client, args, store):
        url, mount, role = args["url"], args["approle_mount"], args["policy_name"]
        vault_lib.call(url, "writing policy " + role, root_client.sys.create_or_update_acl_policy, role, args["policy"])
        mounts = vault_lib.call(url, "listing auth methods", root_client.sys.list_auth_methods)
        if mount + "/" not in mounts.get("data", mounts):
            vault_lib.call(url, "enabling AppRole at %s/" % mount, root_client.sys.enable_auth_method, "approle",
                           path=mount, description="turnkey.cluster playbook login")
        vault_lib.call(url, "writing AppRole role " + role, root_client.auth.approle.create_or_update_approle, role,
                       token_policies=[role], token_ttl=args["token_ttl"], token_max_ttl=args["token_max_ttl"],
                       token_type="service", secret_id_num_uses=0, secret_id_ttl=0, mount_point=mount)
        role_id = vault_lib.call(url, "reading the role id", root_client.auth.approle.read_role_id, role,
                                 mount_point=mount)["data"]["role_id"]
        secret_id = vault_lib.call(url, "making a secret id", root_client.auth.approle.generate_secret_id, role,
                                   metadata={"made_by": "turnkey.cluster vault_login"},
                                   mount_point=mount)["data"]["secret_id"]
        vault_keys.write_secret(store, args["login_name"], {"role_id": role_id, "secret_id": secret_id, "mount": mount})

    def _answer(self, result, auth, bootstrapped):
        result.update(token=auth["client_token"], accessor=auth["accessor"], policies=auth.get("token_policies", []),
                      ttl=auth.get("lease_duration"), bootstrapped=bootstrapped)
        result.setdefault("action", "login")
        # The token is short-lived and limited to the playbook's policy, but still a secret: hide the whole result.
        result["_ansible_no_log"] = True
        return result

    def _logout(self, result, args):
        if not args["token"]:
            raise vault_lib.VaultFailure("state=absent needs the token to revoke")
        vault = vault_lib.client(args, token=args["token"])
        result.update(action="logout", root_tokens=[])
        if args["fail_on_root_tokens"]:
            result["root_tokens"] = self._root_tokens(vault, args["url"])
        try:
            vault.auth.token.revoke_self()
        except Exception as exc:  # noqa: BLE001 - already expired or revoked: nothing left to do
            text = vault_lib.describe(exc, args["url"])
            if text and "permission denied" not in text:
                raise vault_lib.VaultFailure(text) from None
        if result["root_tokens"]:
            raise vault_lib.VaultFailure(
                "Vault at %s has live tokens with the root policy: %s. Fix: revoke each once you no longer need it "
                "(`bao token revoke -accessor <accessor>`); nothing in this collection keeps a root token"
                % (args["url"], "; ".join("accessor %(accessor)s (%(display_name)s, made %(creation)s)" % entry
                                          for entry in result["root_tokens"])))
        return result

    @staticmethod
    def _root_tokens(vault, url):
        """Every live token whose policies include root (accessors only; the tokens themselves stay unknown)."""
        listing = vault_lib.call(url, "listing token accessors", vault.auth.token.list_accessors)
        found = []
        for accessor in listing["data"]["keys"]:
            try:
                data = vault.auth.token.lookup_accessor(accessor)["data"]
            except Exception:  # noqa: BLE001 - expired between the list and the lookup
                continue
            if "root" in (data.get("policies") or []):
                found.append({"accessor": accessor, "display_name": data.get("display_name"),
                              "creation": data.get("creation_time")})
        return found
