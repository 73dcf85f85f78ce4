#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_role
short_description: A Proxmox VE role with an exact list of privileges
version_added: 0.1.0
description:
  - Creates, updates or removes a custom role of the Proxmox VE access control (what C(pveum role) does).
  - The role ends up with exactly the privileges of O(privs) - missing ones are added, extra ones removed -
    and RV(diff) shows the list before and after.
  - Built-in roles (C(Administrator), C(PVEAuditor), ...) cannot be changed; asking to change one fails.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.proxmox
options:
  name:
    description: The role id.
    type: str
    required: true
  privs:
    description:
      - The privileges of the role, for example C(VM.Audit) or C(Datastore.AllocateSpace). Order and duplicates
        do not matter. An unknown privilege fails with Proxmox's own error.
      - Required when O(state=present).
    type: list
    elements: str
  state:
    description: V(present) - the role exists with exactly O(privs); V(absent) - it does not exist.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the role and reports whether it would be created, changed or removed.
  diff_mode:
    support: full
    description: Shows the sorted privilege list before and after.
notes:
  - Needs C(Sys.Modify) on C(/access) to create, change or remove a role; reading roles needs nothing.
"""

EXAMPLES = r"""
- name: The role of the Proxmox CSI plugin
  turnkey.cluster.proxmox_role:
    name: TurnkeyCSI
    privs: [VM.Audit, VM.Config.Disk, Datastore.Allocate, Datastore.AllocateSpace, Datastore.Audit]
"""

RETURN = r"""
name:
  description: The role id.
  returned: always
  type: str
privs:
  description: The role's privileges after the module ran (sorted); empty when it is absent.
  returned: always
  type: list
  elements: str
added:
  description: Privileges that were (or would be) added.
  returned: always
  type: list
  elements: str
removed:
  description: Privileges that were (or would be) removed.
  returned: always
  type: list
  elements: str
changes:
  description: What was (or would be) done, C(create), C(update) or C(delete).
  returned: always
  type: list
  elements: str
diff:
  description: The privilege list before and after.
  returned: in diff mode
  type: dict
retried:
  description: How many transient failures (lock timeouts, 5xx, connection errors) were absorbed.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox_access import (
    access_module_args,
    delete_object,
    run_access_module,
)


def read_role(client, name):
    """(privileges, special) of the role, or (None, False) when it does not exist."""
    roles = {role["roleid"]: role for role in client.get("access/roles") or []}
    if name not in roles:
        return None, False
    privs = client.get("access/roles/%s" % name) or {}
    return sorted(key for key, value in privs.items() if value in (1, "1", True)), bool(roles[name].get("special"))


def run(module, client):
    p = module.params
    name = p["name"]
    have, special = read_role(client, name)
    result = dict(changed=False, name=name, added=[], removed=[], changes=[], privs=have or [])
    if p["state"] == "absent":
        if have is None:
            return result
        if special:
            module.fail_json(msg="role %s is a built-in role of Proxmox VE: it cannot be removed" % name, name=name)
        result.update(removed=have, privs=[])
        return delete_object(module, client, result, "access/roles/%s" % name, dict(privs=have))
    if p["privs"] is None:
        module.fail_json(msg="privs is required when state=present", name=name)
    want = sorted(set(p["privs"]))
    before = have or []
    result.update(added=sorted(set(want) - set(before)), removed=sorted(set(before) - set(want)), privs=want)
    if have is not None and have == want:
        return result
    if special:
        module.fail_json(msg="role %s is a built-in role of Proxmox VE: its privileges cannot be changed "
                             "(add %s, remove %s); use a role of your own" % (
                                 name, ", ".join(result["added"]) or "none", ", ".join(result["removed"]) or "none"),
                         name=name, added=result["added"], removed=result["removed"])
    result.update(changed=True, changes=["create" if have is None else "update"])
    if module._diff:
        result["diff"] = dict(before={} if have is None else dict(privs=have), after=dict(privs=want))
    if not module.check_mode:
        if have is None:
            client.post("access/roles", roleid=name, privs=",".join(want))
        else:
            client.put("access/roles/%s" % name, privs=",".join(want))  # no append: the list replaces
    return result


def main():
    module = AnsibleModule(**access_module_args(
        name=dict(type="str", required=True),
        privs=dict(type="list", elements="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ))
    run_access_module(module, run, name=module.params["name"])


if __name__ == "__main__":
    main()
