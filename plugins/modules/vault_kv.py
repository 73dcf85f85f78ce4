#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_kv
short_description: A KV version 2 secret in Vault (or OpenBao), written only when it differs
version_added: 0.1.0
description:
  - Ensures the newest version of the KV v2 secret at O(path) under O(mount) holds exactly O(data).
  - Reads the newest version first and writes a new version only when the data differs, with
    check-and-set on the version it read, so a rerun adds no version and a concurrent writer is not
    overwritten unseen.
  - Values never appear in the result, the diff or a log (O(data) is C(no_log)); the diff names the keys
    that are added, changed or removed.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.TOKEN
options:
  mount:
    description: Where the KV version 2 engine is mounted.
    type: str
    default: kv
  path:
    description: The secret's path inside the mount, for example C(authentik/bootstrap).
    type: str
    required: true
  data:
    description: The secret's keys and values (strings).
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    description: Reads the secret and reports whether a new version would be written; writes nothing.
  diff_mode:
    support: full
    description: Names the keys added, changed or removed; never a value.
"""

EXAMPLES = r"""
- name: The Authentik bootstrap token from the persistent store
  turnkey.cluster.vault_kv:
    url: https://vault.example.com:8200
    token: "{{ vault_login.token }}"
    path: authentik/bootstrap
    data:
      token: "{{ lookup('turnkey.cluster.persistent_secret', 'authentik_bootstrap_token', field='value',
                 store_path=secrets_store.path, vault_password_file=secrets_store.vault_password_file) }}"
  no_log: true
"""

RETURN = r"""
action:
  description: C(create), C(update) or C(none) (in check mode, what would happen).
  returned: always
  type: str
version:
  description: The secret's newest version after the task (in check mode, before it); 0 when absent.
  returned: always
  type: int
keys:
  description: The secret's key names (never values).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib


def _keys_summary(data, other):
    if data is None:
        return "absent\n"
    lines = []
    for key in sorted(data):
        mark = "" if other is not None and key in other and other[key] == data[key] else " (value not shown)"
        lines.append("%s%s" % (key, mark))
    return "\n".join(lines) + "\n"


def ensure(module, vault, retried=False):
    params, url = module.params, module.params["url"]
    mount, path = params["mount"].strip("/"), params["path"].strip("/")
    wanted = {str(key): value if isinstance(value, str) else str(value) for key, value in params["data"].items()}
    answer = vault_lib.read_or_none(url, "reading %s/%s" % (mount, path), vault.secrets.kv.v2.read_secret_version,
                                    path=path, mount_point=mount, raise_on_deleted_version=False)
    current = (answer or {}).get("data", {}).get("data") if answer else None
    version = ((answer or {}).get("data", {}).get("metadata") or {}).get("version") or 0
    action = "none" if current == wanted else "create" if answer is None else "update"
    result = dict(changed=action != "none", action=action, version=version, keys=sorted(wanted))
    if module._diff:
        result["diff"] = vault_lib.diff_of(_keys_summary(current, wanted), _keys_summary(wanted, current),
                                           "%s/%s" % (mount, path))
    if action == "none" or module.check_mode:
        return result
    try:
        written = vault_lib.call(url, "writing %s/%s" % (mount, path), vault.secrets.kv.v2.create_or_update_secret,
                                 path=path, secret=wanted, cas=version, mount_point=mount)
    except vault_lib.VaultFailure as exc:
        if retried or "check-and-set" not in str(exc):
            raise
        # Another writer added a version since our read (check-and-set refused ours): decide again.
        return ensure(module, vault, retried=True)
    result["version"] = written.get("data", {}).get("version", version + 1)
    return result


def main():
    argument_spec = vault_lib.connection_args()
    argument_spec.update(mount=dict(type="str", default="kv"), path=dict(type="str", required=True),
                         data=dict(type="dict", required=True, no_log=True))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    vault_lib.run_module(module, lambda vault: ensure(module, vault))


if __name__ == "__main__":
    main()
