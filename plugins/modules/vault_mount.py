#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_mount
short_description: A secrets engine or an auth method enabled (and tuned) in Vault (or OpenBao)
version_added: 0.1.0
description:
  - Enables a secrets engine (O(kind=secret), for example KV version 2 at C(kv/)) or an auth method
    (O(kind=auth), for example C(kubernetes)) at O(path), and tunes it to O(config).
  - Idempotent - an existing mount of the same type is left alone unless its version option or a tuned value
    differs. A mount of another type at the path is never replaced (that would destroy its data); the task
    fails and names it.
  - O(state=absent) disables the mount, which destroys what it holds; it is never done implicitly.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.vault
  - turnkey.cluster.vault.TOKEN
options:
  kind:
    description: C(secret) for a secrets engine (C(sys/mounts)), C(auth) for an auth method (C(sys/auth)).
    type: str
    choices: [secret, auth]
    required: true
  path:
    description: Where it is mounted, without slashes around it (C(kv), C(kubernetes)).
    type: str
    required: true
  type:
    description: The engine or method type (C(kv), C(kubernetes), C(approle)).
    type: str
    required: true
  version:
    description: The C(version) option of a C(kv) secrets engine (C(2) for KV version 2).
    type: int
  description:
    description: Description of the mount, set when it is enabled.
    type: str
  config:
    description:
      - Tuning, compared with C(sys/mounts/<path>/tune) or C(sys/auth/<path>/tune) - for example
        C(default_lease_ttl) and C(max_lease_ttl) in seconds, C(listing_visibility).
    type: dict
    default: {}
  state:
    description: Whether the mount exists.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the mounts and reports what would be enabled, tuned or disabled; changes nothing.
  diff_mode:
    support: full
    description: Shows type, version and tuning before and after.
"""

EXAMPLES = r"""
- name: KV version 2 at kv/
  turnkey.cluster.vault_mount:
    url: https://vault.example.com:8200
    token: "{{ vault_login.token }}"
    kind: secret
    path: kv
    type: kv
    version: 2

- name: Kubernetes auth, tokens at most an hour
  turnkey.cluster.vault_mount:
    url: https://vault.example.com:8200
    token: "{{ vault_login.token }}"
    kind: auth
    path: kubernetes
    type: kubernetes
    config: {max_lease_ttl: 3600}
"""

RETURN = r"""
action:
  description: C(enable), C(tune), C(disable) or C(none) (in check mode, what would happen).
  returned: always
  type: str
tuned:
  description: The tuning keys that differed and were (or would be) set.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import vault as vault_lib


def _mounts(vault, url, kind):
    lister = vault.sys.list_mounted_secrets_engines if kind == "secret" else vault.sys.list_auth_methods
    answer = vault_lib.call(url, "listing the %s mounts" % kind, lister)
    return answer.get("data", answer)


def _summary(mount):
    if not mount:
        return "absent\n"
    lines = ["type: %s" % mount.get("type")]
    if (mount.get("options") or {}).get("version"):
        lines.append("version: %s" % mount["options"]["version"])
    for key in sorted(mount.get("config") or {}):
        lines.append("%s: %s" % (key, mount["config"][key]))
    return "\n".join(lines) + "\n"


def ensure(module, vault, retried=False):
    params, url = module.params, module.params["url"]
    kind, path = params["kind"], params["path"].strip("/")
    current = _mounts(vault, url, kind).get(path + "/")
    result = dict(changed=False, action="none", tuned=[])
    if params["state"] == "absent":
        if current:
            result.update(changed=True, action="disable")
            if module._diff:
                result["diff"] = vault_lib.diff_of(_summary(current), "absent\n", "%s %s/" % (kind, path))
            if not module.check_mode:
                disable = vault.sys.disable_secrets_engine if kind == "secret" else vault.sys.disable_auth_method
                vault_lib.call(url, "disabling %s/" % path, disable, path)
        return result
    if current and current.get("type") != params["type"]:
        raise vault_lib.VaultFailure(
            "%s/ is already a %s mount, not %s; it is never replaced implicitly (that destroys its data). Fix: "
            "mount %s elsewhere, or disable %s/ deliberately" % (path, current.get("type"), params["type"],
                                                                 params["type"], path))
    wanted_version = str(params["version"]) if params["version"] is not None else None
    options = {"version": wanted_version} if wanted_version else None
    have_version = str(((current or {}).get("options") or {}).get("version") or "")
    tuning = {}
    if current:
        tune_path = ("sys/mounts/%s/tune" if kind == "secret" else "sys/auth/%s/tune") % path
        live = vault_lib.call(url, "reading " + tune_path, vault.adapter.get, "/v1/" + tune_path)
        live = live.get("data", live)
        tuning = {key: value for key, value in params["config"].items() if str(live.get(key)) != str(value)}
        if wanted_version and have_version != wanted_version:
            if kind != "secret" or params["type"] != "kv" or have_version not in ("", "1") or wanted_version != "2":
                raise vault_lib.VaultFailure("%s/ has version %s; only KV 1 -> 2 is an upgrade Vault does in place"
                                             % (path, have_version or "(none)"))
            tuning["options"] = options
        action = "tune" if tuning else "none"
    else:
        action = "enable"
        tuning = dict(params["config"])
    result.update(changed=action != "none", action=action, tuned=sorted(tuning))
    if module._diff:
        after = dict(current or {}, type=params["type"])
        if wanted_version:
            after["options"] = dict(after.get("options") or {}, version=wanted_version)
        after["config"] = dict(after.get("config") or {}, **{k: v for k, v in tuning.items() if k != "options"})
        result["diff"] = vault_lib.diff_of(_summary(current), _summary(after), "%s %s/" % (kind, path))
    if action == "none" or module.check_mode:
        return result
    if action == "enable":
        try:
            if kind == "secret":
                vault_lib.call(url, "enabling %s at %s/" % (params["type"], path), vault.sys.enable_secrets_engine,
                               params["type"], path=path, description=params["description"], options=options)
            else:
                vault_lib.call(url, "enabling auth %s at %s/" % (params["type"], path), vault.sys.enable_auth_method,
                               params["type"], path=path, description=params["description"])
        except vault_lib.VaultFailure as exc:
            if retried or "already in use" not in str(exc):
                raise
            # Another run enabled it between our read and our write: decide again from what is there now.
            return ensure(module, vault, retried=True)
        if not tuning:
            return result
    tune = vault.sys.tune_mount_configuration if kind == "secret" else vault.sys.tune_auth_method
    vault_lib.call(url, "tuning %s/" % path, tune, path, **tuning)
    return result


def main():
    argument_spec = vault_lib.connection_args()
    argument_spec.update(
        kind=dict(type="str", choices=["secret", "auth"], required=True),
        path=dict(type="str", required=True),
        type=dict(type="str", required=True),
        version=dict(type="int"),
        description=dict(type="str"),
        config=dict(type="dict", default={}),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    vault_lib.run_module(module, lambda vault: ensure(module, vault))


if __name__ == "__main__":
    main()
