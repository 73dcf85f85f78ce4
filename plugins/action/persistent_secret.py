# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs on the controller: the store, the vault password and the keys never travel to a target.

The result carries public facts only (certificate, public key, versions), never secret material, so the
task can show its diff and still print no secret, even at -vvv.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.turnkey.cluster.plugins.plugin_utils import persistent_store as store_lib

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    type=dict(type="str", required=True, choices=list(store_lib.SECRET_TYPES)),
    store_path=dict(type="path", required=True),
    vault_password_file=dict(type="path"),
    vault_password_env=dict(type="str"),
    length=dict(type="int", default=64),
    comment=dict(type="str"),
    common_name=dict(type="str", default="sealed-secret"),
    validity_days=dict(type="int", default=3650),
    rotate=dict(type="bool", default=False),
    renew_certificate=dict(type="bool", default=False),
    value=dict(type="raw", no_log=True),
    talosctl_path=dict(type="path"),
    from_controlplane_config=dict(type="path"),
    force_new_identity=dict(type="bool", default=False),
)

REFUSED_TALOS_ROTATION = (
    "rotating talos_secrets without from_controlplane_config makes a NEW cluster identity (new CAs, tokens and "
    "keys): the running cluster's nodes would not trust machine configs rendered from it. To recover the "
    "running cluster's bundle, give from_controlplane_config (a control plane's machine config, see "
    "docs/persistent-secrets.md); to start a new cluster on purpose, set force_new_identity=true "
    "(role variable persistent_secrets_talos_force_new_identity)")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_diff = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del validation
        try:
            return self._ensure(result, args)
        except store_lib.StoreError as exc:
            result.update(failed=True, msg="persistent secret %s: %s" % (args["name"], exc))
            return result

    def _ensure(self, result, args):
        if args["type"] == "token" and not 16 <= args["length"] <= 4096:
            raise store_lib.StoreError("length %d: tokens are 16 to 4096 characters" % args["length"])
        if args["renew_certificate"] and args["type"] != "sealed_secrets_keypair":
            raise store_lib.StoreError("renew_certificate applies to sealed_secrets_keypair only")
        if args["from_controlplane_config"] and args["type"] != "talos_secrets":
            raise store_lib.StoreError("from_controlplane_config applies to talos_secrets only")
        if args["value"] is not None and args["type"] != "provided":
            raise store_lib.StoreError("value applies to type provided only; the other types are generated here")
        if args["force_new_identity"] and args["type"] != "talos_secrets":
            raise store_lib.StoreError("force_new_identity applies to talos_secrets only")
        password = store_lib.resolve_password(args["vault_password_file"], args["vault_password_env"])
        store = store_lib.Store(args["store_path"], password)
        planned = self._decide_and_write(result, args, store, may_write=False)
        if planned["action"] == "none" or self._task.check_mode:
            return planned
        # Decide again under the store's lock: a run that got there first has written it, and this one keeps
        # what it wrote instead of generating a second, different secret.
        with store.locked():
            return self._decide_and_write(result, args, store, may_write=True)

    def _decide_and_write(self, result, args, store, may_write):
        name, secret_type = args["name"], args["type"]
        current = store.read(name)
        if current is not None and current.get("type") != secret_type:
            raise store_lib.StoreError("the store holds %s as a %s, not a %s; pick another name or remove %s "
                                       "deliberately" % (name, current.get("type"), secret_type, store.file_of(name)))
        if current is None:
            action = "create"
        elif args["rotate"]:
            action = "rotate"
        elif args["renew_certificate"]:
            action = "renew"
        else:
            action = None
        if (action == "rotate" and secret_type == "talos_secrets" and not args["from_controlplane_config"]
                and not args["force_new_identity"]):
            raise store_lib.StoreError(REFUSED_TALOS_ROTATION)
        result.update(changed=action is not None, path=store.file_of(name), action=action or "none",
                      created=action == "create", rotated=action == "rotate", renewed=action == "renew")
        if self._task.diff or self._play_context.diff:
            before = "absent\n" if current is None else self._summary(current)
            after = before if action is None else "%s version %d (%s, value not shown)\n" % (
                secret_type, (current or {}).get("version", 0) + 1, action)
            result["diff"] = {"before": before, "after": after, "before_header": store.file_of(name),
                              "after_header": store.file_of(name)}
        if action is None:
            result["public"] = store_lib.public_facts(current)
            return result
        if self._task.check_mode:
            return result
        if secret_type == "provided" and args["value"] is None:
            # Without a value the task only reports (and checks the store can be read): nothing to write.
            raise store_lib.StoreError("no value was given to %s it with; a provided secret is written from the "
                                       "answer of the API that issued it" % action)
        if not may_write:
            return result
        if action == "renew":
            material = store_lib.renew_certificate(current, args)
        else:
            material = store_lib.generate(secret_type, args)
        if action == "rotate" and secret_type == "sealed_secrets_keypair":
            material = store_lib.retire_key(current, material)
        record = store_lib.new_record(name, secret_type, material, current)
        backup = store.write(name, record)
        if backup:
            result["backup_file"] = backup
        result["public"] = store_lib.public_facts(record)
        return result

    @staticmethod
    def _summary(record):
        return "%s version %d (updated %s)\n" % (record["type"], record["version"], record["updated"])
