#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: talos_bootstrap
short_description: Bootstrap etcd exactly once in the cluster's life
version_added: 0.1.0
description:
  - Before anything else, every control plane of O(controlplanes) (and O(node)) is asked for its etcd
    members. When any of them lists members, the cluster exists - nothing is bootstrapped (changed=false,
    RV(members_on) names the node that answered), and a rebuilt control plane joins that cluster by itself.
    This matters - C(talosctl bootstrap) on a control plane without etcd data (a rebuilt one, before it
    joined) founds a second etcd cluster beside the running one (split brain).
  - Only when no control plane reports members does it run C(talosctl bootstrap), on the first control
    plane that is configured - O(node) first, then O(controlplanes) in order.
  - A control plane that does not answer at all is retried until O(timeout), then the module fails naming
    it - it may be the one holding etcd, so bootstrapping elsewhere could split the cluster.
  - Talos answering C(AlreadyExists) (C(etcd data directory is not empty)) is success without change.
  - Every control plane still in maintenance mode (no machine config applied) is an error that says so,
    instead of the TLS error C(talosctl) would print.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.talos
  - turnkey.cluster.talos.node
options:
  controlplanes:
    description:
      - Every control plane's address on the Talos API. Each is asked for its etcd members before a
        bootstrap. Default - only O(node).
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds to keep retrying while a control plane does not answer or the chosen node is not ready for
        bootstrap yet (Talos answers C(FailedPrecondition) / C(bootstrap is not available yet) or
        C(Unavailable) while it starts).
    type: int
    default: 120
attributes:
  check_mode:
    support: full
    description: Asks every control plane for its etcd members; reports a change only when none lists any.
  diff_mode:
    support: none
    description: Bootstrap has nothing to compare.
"""

EXAMPLES = r"""
- name: Bootstrap etcd once in the cluster's life
  turnkey.cluster.talos_bootstrap:
    node: 192.168.1.11
    controlplanes: [192.168.1.11, 192.168.1.12, 192.168.1.13]
    talosconfig: "{{ inventory_dir }}/.state/talos/talosconfig"
  run_once: true
"""

RETURN = r"""
bootstrapped:
  description: Whether this run bootstrapped the cluster (false when it already was).
  returned: always
  type: bool
node:
  description: The control plane bootstrapped (or, in check mode, that would be); null when none was.
  returned: always
  type: str
members_on:
  description: The control plane that listed etcd members, so no bootstrap was needed; null otherwise.
  returned: always
  type: str
members:
  description: The etcd members (hostnames) that control plane listed.
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.talos_etcd import etcd_members
from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import (
    call_talosctl,
    find_talosctl,
    node_args,
    talos_argument_spec,
)

# What Talos answers once etcd has data: the cluster is bootstrapped.
ALREADY = ("AlreadyExists", "etcd data directory is not empty")
# What a node that is still starting answers: worth retrying until the timeout.
NOT_YET = ("bootstrap is not available yet", "code = Unavailable")


def answers(module, talosctl, args, what):
    rc, out, err = call_talosctl(module, [talosctl] + args, what)
    return rc == 0, ((err or out).strip().splitlines() or ["no answer"])[-1]


def survey(module, talosctl, candidates):
    """Asks each control plane: ('members', [names]) | ('configured', None) | ('maintenance', None) |
    ('silent', why). A node with members ends the survey: one running cluster is enough to know."""
    p = module.params
    found = {}
    for ip in candidates:
        endpoint = p["endpoint"] if ip == p["node"] else None
        members, _trouble = etcd_members(module, talosctl, p["talosconfig"], ip, endpoint)
        if members:
            return {ip: ("members", members)}
        # no members: a configured node without etcd, one in maintenance mode, or no answer at all
        connection = node_args(p["talosconfig"], ip, endpoint)
        configured, why = answers(module, talosctl, ["version"] + connection, "version on %s" % ip)
        if configured:
            found[ip] = ("configured", None)
            continue
        maintenance, _output = answers(module, talosctl, ["version", "--insecure"] + connection,
                                       "version --insecure on %s" % ip)
        found[ip] = ("maintenance", None) if maintenance else ("silent", why)
    return found


def bootstrap(module, talosctl, node, deadline):
    connection = node_args(module.params["talosconfig"], node, module.params["endpoint"])
    while True:
        rc, out, err = call_talosctl(module, [talosctl, "bootstrap"] + connection, "bootstrap on %s" % node)
        text = (err or out).strip()
        if rc == 0:
            module.exit_json(changed=True, bootstrapped=True, node=node, members_on=None, members=[])
        if any(marker in text for marker in ALREADY):
            module.exit_json(changed=False, bootstrapped=False, node=None, members_on=node, members=[])
        if not any(marker in text for marker in NOT_YET) or time.monotonic() >= deadline:
            break
        time.sleep(5)
    module.fail_json(msg="talosctl bootstrap on %s failed (exit %d): %s" % (node, rc, text), rc=rc)


def main():
    module = AnsibleModule(
        argument_spec=talos_argument_spec(
            node=True,
            controlplanes=dict(type="list", elements="str", default=[]),
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    p = module.params
    talosctl = find_talosctl(module)
    candidates = [p["node"]] + [ip for ip in p["controlplanes"] if ip != p["node"]]
    deadline = time.monotonic() + p["timeout"]
    while True:
        found = survey(module, talosctl, candidates)
        running = [(ip, state[1]) for ip, state in found.items() if state[0] == "members"]
        if running:
            ip, members = running[0]
            module.exit_json(changed=False, bootstrapped=False, node=None, members_on=ip, members=members,
                             msg="etcd already runs (%s lists %s): no bootstrap; a rebuilt control plane joins it"
                                 % (ip, ", ".join(members)))
        silent = ["%s (%s)" % (ip, state[1]) for ip, state in found.items() if state[0] == "silent"]
        if not silent or time.monotonic() >= deadline:
            break
        time.sleep(5)
    if silent:
        module.fail_json(msg="cannot tell whether etcd already runs: %s did not answer on the Talos API; "
                             "bootstrapping another control plane could found a second etcd cluster"
                             % ", ".join(silent))
    configured = [ip for ip in candidates if found[ip][0] == "configured"]
    if not configured:
        module.fail_json(msg="%s still in maintenance mode (no machine config applied): apply its config "
                             "before bootstrap" % (candidates[0] + " is" if len(candidates) == 1 else
                                                   "every control plane (%s) is" % ", ".join(candidates)))
    if module.check_mode:
        module.exit_json(changed=True, bootstrapped=True, node=configured[0], members_on=None, members=[])
    bootstrap(module, talosctl, configured[0], deadline)


if __name__ == "__main__":
    main()
