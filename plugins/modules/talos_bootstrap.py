#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: talos_bootstrap
short_description: Bootstrap etcd on the first Talos control plane, exactly once
version_added: 0.1.0
description:
  - Runs C(talosctl bootstrap) against one configured control plane.
  - A cluster already bootstrapped (Talos answers C(AlreadyExists), C(etcd data directory is not empty))
    is success with no change, so running it again is harmless.
  - A node still in maintenance mode (no machine config applied) is an error that says so, instead of the
    TLS error C(talosctl) would print.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.talos
  - turnkey.cluster.talos.node
options:
  timeout:
    description:
      - Seconds to keep retrying while the node is not ready for bootstrap yet (Talos answers
        C(FailedPrecondition) / C(bootstrap is not available yet) or C(Unavailable) while it starts).
    type: int
    default: 120
attributes:
  check_mode:
    support: full
    description: Asks the node for its etcd members; reports a change only when etcd does not run yet.
  diff_mode:
    support: none
    description: Bootstrap has nothing to compare.
"""

EXAMPLES = r"""
- name: Bootstrap etcd once
  turnkey.cluster.talos_bootstrap:
    node: 192.168.1.11
    talosconfig: "{{ inventory_dir }}/.state/talos/talosconfig"
  run_once: true
"""

RETURN = r"""
bootstrapped:
  description: Whether this run bootstrapped the cluster (false when it already was).
  returned: always
  type: bool
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import (
    find_talosctl,
    in_maintenance,
    node_args,
    talos_argument_spec,
)

# What Talos answers once etcd has data: the cluster is bootstrapped.
ALREADY = ("AlreadyExists", "etcd data directory is not empty")
# What a node that is still starting answers: worth retrying until the timeout.
NOT_YET = ("bootstrap is not available yet", "code = Unavailable")


def main():
    module = AnsibleModule(
        argument_spec=talos_argument_spec(
            node=True,
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    p = module.params
    talosctl = find_talosctl(module)
    if in_maintenance(module, talosctl, p["talosconfig"], p["node"], p["endpoint"]):
        module.fail_json(msg="%s is still in maintenance mode (no machine config applied): apply its config "
                             "before bootstrap" % p["node"])
    connection = node_args(p["talosconfig"], p["node"], p["endpoint"])
    env = {"LC_ALL": "C"}
    if module.check_mode:
        # etcd answers its member list only once bootstrapped
        rc, _out, _err = module.run_command([talosctl, "etcd", "members"] + connection, environ_update=env)
        module.exit_json(changed=rc != 0, bootstrapped=rc != 0)
    deadline = time.monotonic() + p["timeout"]
    while True:
        rc, out, err = module.run_command([talosctl, "bootstrap"] + connection, environ_update=env)
        text = (err or out).strip()
        if rc == 0:
            module.exit_json(changed=True, bootstrapped=True)
        if any(marker in text for marker in ALREADY):
            module.exit_json(changed=False, bootstrapped=False)
        if not any(marker in text for marker in NOT_YET) or time.monotonic() >= deadline:
            break
        time.sleep(5)
    module.fail_json(msg="talosctl bootstrap on %s failed (exit %d): %s" % (p["node"], rc, text), rc=rc)


if __name__ == "__main__":
    main()
