#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: talos_apply
short_description: Apply a machine config to a Talos node, only when it changes and without surprise reboots
version_added: 0.1.0
description:
  - Finds out whether the node runs in maintenance mode (it answers C(talosctl version --insecure)) or is
    configured (it requires the talosconfig's client certificate).
  - In maintenance mode the config is applied with C(talosctl apply-config --insecure); the node installs
    and comes up configured.
  - On a configured node the config is first sent with C(--dry-run). When Talos answers C(No changes.)
    nothing is applied. Otherwise the dry run's diff is reported with every value outside the allow-list of
    safe machine-config paths hidden (see notes) and the config is applied. With O(mode=auto) a change
    Talos can take live is applied without a reboot; a change that needs a reboot is B(staged) for the next
    reboot unless O(allow_reboot=true).
  - A staged config keeps differing from the running one until the node reboots. So that a rerun does not
    stage it again (and report a change every time), the SHA-256 of what was staged is kept beside the
    config in C(<config>.staged); while the same config waits for its reboot the module reports no change
    and warns. The marker is removed once the node runs the config.
  - Runs on the controller and calls the real C(talosctl) with argument lists, never through a shell.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.talos
  - turnkey.cluster.talos.node
options:
  config:
    description: The rendered machine config of the node (see M(turnkey.cluster.talos_machine_config)).
    type: path
    required: true
  mode:
    description:
      - How a change is applied on a configured node. C(auto) - live when Talos can, else staged (or a
        reboot with O(allow_reboot)). The others are passed to C(talosctl apply-config --mode); C(no-reboot)
        fails when the change needs a reboot.
    type: str
    choices: [auto, no-reboot, reboot, staged]
    default: auto
  allow_reboot:
    description: With O(mode=auto), reboot the node for a change that needs it instead of staging it.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Asks the node (version, dry run) and reports what would be applied; applies nothing.
  diff_mode:
    support: full
    description:
      - The dry run's config diff with only allow-listed values shown; in maintenance mode a note that the
        whole config is applied.
notes:
  - The dry run's diff is Talos' own unified diff of the node's config and the new one. Each line's value is
    shown only when its path in the config is on the allow-list of C(module_utils/talos_redact.py) (machine
    type, install disk and image, addresses, routes, hostname, labels, kubelet and control-plane arguments,
    cluster name, endpoint and networks, versions and images, ...). Every other value - tokens, certificates
    and keys, registry credentials, WireGuard keys, file contents, inline manifests, anything unknown - is
    shown as C((hidden <tag>)); equal values get equal tags within one run. To place each line the module
    asks C(talosctl machineconfig patch) for the config as Talos encodes it; when the diff does not fit
    that, every value of the diff is hidden.
"""

EXAMPLES = r"""
- name: Apply the node's config (staged if it needs a reboot)
  turnkey.cluster.talos_apply:
    node: 192.168.1.11
    talosconfig: "{{ inventory_dir }}/.state/talos/talosconfig"
    config: "{{ inventory_dir }}/.state/talos/cp1.yaml"

- name: Apply and let the node reboot when the change needs it
  turnkey.cluster.talos_apply:
    node: 192.168.1.11
    talosconfig: "{{ inventory_dir }}/.state/talos/talosconfig"
    config: "{{ inventory_dir }}/.state/talos/cp1.yaml"
    allow_reboot: true
"""

RETURN = r"""
maintenance:
  description: Whether the node was in maintenance mode.
  returned: always
  type: bool
mode:
  description: The mode the config was (or would be) applied with; C(none) when nothing changed.
  returned: always
  type: str
  sample: no-reboot
reboot_required:
  description: Whether Talos said the change needs a reboot.
  returned: always
  type: bool
staged:
  description: Whether the config waits on the node for its next reboot.
  returned: always
  type: bool
config_diff:
  description: The dry run's config diff, only allow-listed values shown (empty when nothing changed).
  returned: always
  type: str
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.turnkey.cluster.plugins.module_utils.talos_redact import Redactor
from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import (
    call_talosctl,
    find_talosctl,
    in_maintenance,
    node_args,
    run_talosctl,
    talos_argument_spec,
    write_private,
)

NO_CHANGES = "No changes."
WITH_REBOOT = "with a reboot"
# An empty strategic merge patch: `machineconfig patch` then prints the config as Talos encodes it.
NO_OP_PATCH = "machine: {}"


def shown_diff(module, talosctl, config, diff):
    """The dry run's diff with only allow-listed values shown, each line placed in the config as Talos
    encodes it (the text the node diffed against). The config is never part of a result or an error."""
    rc, encoded, _err = call_talosctl(module, [talosctl, "machineconfig", "patch", config, "--patch", NO_OP_PATCH],
                                      "machineconfig patch")
    return Redactor().dry_run_diff(diff, encoded if rc == 0 else "")


def dry_run(module, talosctl, connection, config):
    """(config diff or '' when unchanged, whether a reboot is needed) from `apply-config --dry-run`."""
    out, err = run_talosctl(module, talosctl, ["apply-config", "--dry-run", "--mode", "auto", "--file", config]
                            + connection, "apply-config --dry-run on %s" % module.params["node"])
    text = out + err
    reboot = WITH_REBOOT in text.split("Config diff:", 1)[0]
    diff = text.split("Config diff:", 1)[1].strip() if "Config diff:" in text else text.strip()
    return ("" if diff == NO_CHANGES else diff), reboot


def main():
    module = AnsibleModule(
        argument_spec=talos_argument_spec(
            node=True,
            config=dict(type="path", required=True),
            mode=dict(type="str", choices=["auto", "no-reboot", "reboot", "staged"], default="auto"),
            allow_reboot=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    talosctl = find_talosctl(module)
    try:
        with open(p["config"], "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    except OSError as exc:
        module.fail_json(msg="cannot read the machine config %s: %s" % (p["config"], to_native(exc)))
    marker = p["config"] + ".staged"
    connection = node_args(p["talosconfig"], p["node"], p["endpoint"])
    result = dict(changed=False, maintenance=False, mode="none", reboot_required=False, staged=False,
                  config_diff="")

    if in_maintenance(module, talosctl, p["talosconfig"], p["node"], p["endpoint"]):
        result.update(changed=True, maintenance=True, mode="maintenance")
        if module._diff:
            result["diff"] = dict(prepared="%s is in maintenance mode: its whole config (%s) is applied" % (
                p["node"], p["config"]))
        if not module.check_mode:
            run_talosctl(module, talosctl, ["apply-config", "--insecure", "--file", p["config"],
                                            "--nodes", p["node"], "--endpoints", p["endpoint"] or p["node"]],
                         "apply-config --insecure on %s" % p["node"])
        module.exit_json(**result)

    diff, reboot = dry_run(module, talosctl, connection, p["config"])
    waiting = _read(marker) == digest
    if not diff:
        if os.path.exists(marker) and not module.check_mode:
            os.unlink(marker)  # the node runs the config: nothing waits any more
        module.exit_json(**result)
    shown = shown_diff(module, talosctl, p["config"], diff)
    result.update(reboot_required=reboot, config_diff=shown)
    if waiting:
        module.warn("%s: this config is staged and waits for the node's next reboot" % p["node"])
        result.update(staged=True, mode="staged")
        module.exit_json(**result)

    mode = p["mode"]
    if mode == "auto":
        mode = ("reboot" if p["allow_reboot"] else "staged") if reboot else "no-reboot"
    result.update(changed=True, mode=mode, staged=mode == "staged")
    if module._diff:
        result["diff"] = dict(prepared=shown)
    if module.check_mode:
        module.exit_json(**result)
    run_talosctl(module, talosctl, ["apply-config", "--mode", mode, "--file", p["config"]] + connection,
                 "apply-config on %s" % p["node"])
    if mode == "staged":
        write_private(marker, digest.encode())
        module.warn("%s: the change needs a reboot; it is staged for the node's next reboot" % p["node"])
    elif os.path.exists(marker):
        os.unlink(marker)
    module.exit_json(**result)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


if __name__ == "__main__":
    main()
