#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_user
short_description: A Proxmox VE user and its exact ACL entries
version_added: 0.1.0
description:
  - Creates, updates or removes a user of the Proxmox VE access control (what C(pveum user) and
    C(pveum acl) do), without a password - automation users log in with API tokens
    (M(turnkey.cluster.proxmox_token)).
  - With O(acls), the access control list entries that name this user are exactly those given - missing
    entries are added, entries on other paths or roles are removed, a changed O(acls[].propagate) is set
    again. Without O(acls) the user's entries are left alone.
  - Removing a user removes its API tokens and its ACL entries too (Proxmox does).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.proxmox
options:
  userid:
    description: The user, C(name@realm), for example C(kubernetes-csi@pve).
    type: str
    required: true
  state:
    description: V(present) - the user exists with these settings; V(absent) - it does not exist.
    type: str
    choices: [present, absent]
    default: present
  enable:
    description: Whether the account is enabled (a disabled user's tokens stop working).
    type: bool
    default: true
  comment:
    description: Comment of the user; not set means the comment is left as it is.
    type: str
  acls:
    description:
      - The ACL entries of this user, exactly. Not set means they are not managed.
    type: list
    elements: dict
    suboptions:
      path:
        description: ACL path, for example C(/), C(/vms/100), C(/storage/local-zfs).
        type: str
        required: true
      role:
        description: Role granted on the path.
        type: str
        required: true
      propagate:
        description: Whether the grant also applies below the path.
        type: bool
        default: true
attributes:
  check_mode:
    support: full
    description: Reads the user and the ACL and reports what would be created, changed or removed.
  diff_mode:
    support: full
    description: Shows the user's settings and ACL entries before and after.
notes:
  - Creating or removing a user needs C(Realm.AllocateUser) on C(/access/realm/<realm>) and C(User.Modify) on
    C(/access/groups); changing ACL entries needs C(Permissions.Modify) on the path.
"""

EXAMPLES = r"""
- name: The CSI plugin's user, allowed its role on the whole datacenter
  turnkey.cluster.proxmox_user:
    userid: kubernetes-csi@pve
    comment: Proxmox CSI plugin (turnkey.cluster)
    acls:
      - {path: /, role: TurnkeyCSI}
"""

RETURN = r"""
userid:
  description: The user.
  returned: always
  type: str
acls:
  description: The user's ACL entries after the module ran, sorted (C(path), C(role), C(propagate)).
  returned: when the user exists or would exist
  type: list
  elements: dict
changes:
  description: What was (or would be) done, C(create), C(enable), C(comment), C(acls) or C(delete).
  returned: always
  type: list
  elements: str
diff:
  description: Settings and ACL entries before and after.
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
    acl_list,
    acl_option,
    acl_plan,
    apply_acls,
    current_acls,
    delete_object,
    get_or_none,
    run_access_module,
    wanted_acls,
)


def read_user(client, userid):
    """The user's settings, or None when it does not exist (Proxmox answers 500 'no such user')."""
    return get_or_none(client, "access/users/%s" % userid, "no such user")


def shown(user, acls):
    """What diff mode compares."""
    view = dict(enable=bool(int(user.get("enable", 1))), comment=user.get("comment", ""))
    if acls is not None:
        view["acls"] = acl_list(acls)
    return view


def run(module, client):
    p = module.params
    userid = p["userid"]
    user = read_user(client, userid)
    result = dict(changed=False, userid=userid, changes=[])
    if p["state"] == "absent":
        if user is None:
            return result
        return delete_object(module, client, result, "access/users/%s" % userid, shown(user, None))

    have_acls = current_acls(client, "user", userid) if user is not None else {}
    want_acls = wanted_acls(p["acls"]) if p["acls"] is not None else have_acls
    put, delete = acl_plan(have_acls, want_acls)
    want = dict(enable=p["enable"], comment=p["comment"] if p["comment"] is not None else
                (user or {}).get("comment", ""))
    if user is None:
        result["changes"] = ["create"] + (["acls"] if put else [])
    else:
        before = shown(user, None)
        result["changes"] = [key for key in ("enable", "comment") if before[key] != want[key]]
        if put or delete:
            result["changes"].append("acls")
    result["acls"] = acl_list(want_acls)
    if not result["changes"]:
        return result
    result["changed"] = True
    if module._diff:
        after = dict(want, acls=acl_list(want_acls)) if p["acls"] is not None else dict(want)
        result["diff"] = dict(before={} if user is None else shown(user, have_acls if p["acls"] is not None else None),
                              after=after)
    if module.check_mode:
        return result
    settings = dict(enable=int(want["enable"]), comment=want["comment"])
    if user is None:
        client.post("access/users", userid=userid, **{k: v for k, v in settings.items() if v != ""})
    elif "enable" in result["changes"] or "comment" in result["changes"]:
        client.put("access/users/%s" % userid, **settings)
    apply_acls(client, "user", userid, put, delete)
    return result


def main():
    module = AnsibleModule(**access_module_args(
        userid=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        enable=dict(type="bool", default=True),
        comment=dict(type="str"),
        acls=acl_option(),
    ))
    run_access_module(module, run, userid=module.params["userid"])


if __name__ == "__main__":
    main()
