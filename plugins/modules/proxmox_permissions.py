#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_permissions
short_description: Fail before anything changes when the Proxmox VE credentials lack a privilege
version_added: 0.1.0
description:
  - A preflight. Reads the caller's effective privileges on each path of O(required) from Proxmox VE
    (C(GET /access/permissions?path=...), which applies ACL propagation, roles, groups and, for an API
    token with privilege separation, the intersection with its user's privileges) and fails when any is
    missing, listing every missing privilege with its path in RV(missing).
  - Read-only; it runs in check mode too, so C(--check) reports missing privileges as well.
  - The privileges each layer of the collection needs, and why, are in C(docs/proxmox-privileges.md).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.proxmox
options:
  required:
    description:
      - What the caller must have. Each entry names privileges that must all be granted on each of its
        paths, for example C(paths=[/vms/100, /vms/101]) with C(privs=[VM.Allocate]).
    type: list
    elements: dict
    required: true
    suboptions:
      paths:
        description: ACL paths, for example C(/vms/100), C(/storage/local-zfs), C(/sdn/zones/localnetwork/vmbr0).
        type: list
        elements: str
        required: true
      privs:
        description: Privileges, for example C(VM.Allocate).
        type: list
        elements: str
        required: true
  purpose:
    description: What the privileges are for, named in the failure message (for example C(layer 01)).
    type: str
    default: this play
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
notes:
  - Reading one's own permissions needs no privilege.
"""

EXAMPLES = r"""
- name: The token may create and start the node VMs
  turnkey.cluster.proxmox_permissions:
    purpose: layer 01
    required:
      - paths: [/vms/1500, /vms/1501]
        privs: [VM.Allocate, VM.Audit, VM.PowerMgmt]
      - paths: [/storage/local-zfs]
        privs: [Datastore.AllocateSpace]
"""

RETURN = r"""
missing:
  description: Every missing privilege, one entry per path (paths and privileges sorted); empty when none is.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The ACL path.
      type: str
    privs:
      description: The privileges missing on it.
      type: list
      elements: str
granted:
  description: The caller's privileges on each checked path (sorted), as Proxmox VE reports them.
  returned: always
  type: dict
retried:
  description: How many transient failures (lock timeouts, 5xx, connection errors) were absorbed.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox_access import (
    access_module_args,
    run_access_module,
)


def wanted_privileges(required):
    """{path: set of privileges} from the entries of O(required)."""
    wanted = {}
    for entry in required:
        for path in entry["paths"]:
            wanted.setdefault(path, set()).update(entry["privs"])
    return wanted


def check(module, client):
    wanted = wanted_privileges(module.params["required"])
    granted, missing = {}, []
    for path in sorted(wanted):
        # Proxmox answers {path: {privilege: propagate}}, or {} when nothing is granted there. Not
        # client.get(): the endpoint's own parameter is called 'path'.
        answer = client.retry(lambda: client.api("access/permissions").get(path=path),  # noqa: B023 - called now
                              "GET access/permissions") or {}
        have = answer.get(path) or {}
        granted[path] = sorted(have)
        lacking = sorted(wanted[path] - set(have))
        if lacking:
            missing.append(dict(path=path, privs=lacking))
    if missing:
        caller = module.params["api_token_id"] or module.params["api_user"]
        module.fail_json(
            msg="The Proxmox VE credentials %s lack %d privilege(s) %s needs; nothing was changed. Missing: %s. "
                "Grant them (docs/proxmox-privileges.md has the pveum commands)."
                % (caller, sum(len(entry["privs"]) for entry in missing), module.params["purpose"],
                   "; ".join("%s: %s" % (entry["path"], ", ".join(entry["privs"])) for entry in missing)),
            missing=missing, granted=granted)
    return dict(changed=False, missing=[], granted=granted)


def main():
    module = AnsibleModule(**access_module_args(
        required=dict(type="list", elements="dict", required=True, options=dict(
            paths=dict(type="list", elements="str", required=True),
            privs=dict(type="list", elements="str", required=True),
        )),
        purpose=dict(type="str", default="this play"),
    ))
    run_access_module(module, check)


if __name__ == "__main__":
    main()
