#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_token
short_description: A Proxmox VE API token, created once, rotated only when asked
version_added: 0.1.0
description:
  - Creates, updates or removes an API token of a Proxmox VE user (what C(pveum user token) does).
  - Proxmox shows a token's secret once, when it is created. The module returns it in RV(value) only
    when it creates (or, with O(rotate=true), re-creates) the token; keep it at once (for example with
    C(turnkey.cluster.persistent_secret) type C(provided)) and run the task with C(no_log).
  - An existing token is never re-created by a rerun. If the caller says it does not hold the secret
    (O(secret_known=false)) the module fails and names the fix, O(rotate=true), instead of rotating
    silently - the old secret may still be in use somewhere.
  - Comment, expiry and privilege separation of an existing token are changed in place (the secret stays).
  - With O(acls), the ACL entries that name the token are exactly those given (they matter only with
    O(privsep=true)). Re-creating a token drops its entries in Proxmox; the module puts them back.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.proxmox
options:
  userid:
    description: The user owning the token, C(name@realm).
    type: str
    required: true
  name:
    description: The token id (the part after C(!)), for example C(csi).
    type: str
    required: true
  state:
    description: V(present) - the token exists; V(absent) - it does not exist (its secret stops working).
    type: str
    choices: [present, absent]
    default: present
  privsep:
    description:
      - Privilege separation. V(true) - the token has only what its own ACL entries grant (and the user has);
        V(false) - the token has all of its user's privileges.
    type: bool
    default: true
  comment:
    description: Comment of the token.
    type: str
    default: ''
  expire:
    description: Expiry, seconds since the epoch; V(0) means never.
    type: int
    default: 0
  rotate:
    description:
      - Delete and re-create the token; the old secret stops working and the new one is returned in RV(value).
      - Leave this false in playbooks; pass it for one run when the token must change.
    type: bool
    default: false
  secret_known:
    description:
      - Whether the caller holds the secret of the existing token (for example in its persistent store).
        With V(false) an existing token makes the module fail with a message that names O(rotate), since
        its secret cannot be read back. A token that does not exist yet is simply created.
    type: bool
    default: true
  acls:
    description: The ACL entries of this token, exactly; not set means they are not managed.
    type: list
    elements: dict
    suboptions:
      path:
        description: ACL path, for example C(/).
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
    description: Reads the token and reports whether it would be created, rotated, changed or removed; no secret.
  diff_mode:
    support: full
    description: Shows the token's settings (never its secret) before and after.
notes:
  - Run the task with C(no_log=true) - the secret is in the result when the token was created or rotated.
  - A user may manage its own tokens; other users' tokens need C(User.Modify) on C(/access/groups).
"""

EXAMPLES = r"""
- name: The CSI plugin's token, made once
  turnkey.cluster.proxmox_token:
    userid: kubernetes-csi@pve
    name: csi
    privsep: false
    secret_known: "{{ csi_token_stored }}"
    rotate: "{{ 'proxmox_csi_token' in persistent_secrets_rotate }}"
  no_log: true
  register: csi_token

- name: Keep its secret
  turnkey.cluster.persistent_secret:
    name: proxmox_csi_token
    type: provided
    value: {token_id: "{{ csi_token.full_tokenid }}", secret: "{{ csi_token.value }}"}
    rotate: "{{ csi_token.rotated }}"
  no_log: true
  when: csi_token.value is defined
"""

RETURN = r"""
full_tokenid:
  description: The token's full id, C(user@realm!name).
  returned: always
  type: str
value:
  description: The token's secret. Proxmox shows it only now; it cannot be read back later.
  returned: when the token was created or rotated (not in check mode)
  type: str
created:
  description: Whether the token was (or would be) created where none existed.
  returned: always
  type: bool
rotated:
  description: Whether the token was (or would be) deleted and re-created.
  returned: always
  type: bool
info:
  description: The token's settings after the module ran, C(privsep), C(comment), C(expire).
  returned: when the token exists or would exist
  type: dict
acls:
  description: The token's ACL entries after the module ran, when O(acls) is set.
  returned: when O(acls) is set and the token exists or would exist
  type: list
  elements: dict
changes:
  description:
    - What was (or would be) done, C(create), C(rotate), C(privsep), C(comment), C(expire), C(acls) or C(delete).
  returned: always
  type: list
  elements: str
diff:
  description: Settings and ACL entries before and after (never the secret).
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

SETTINGS = ("privsep", "comment", "expire")


def read_token(client, path):
    """The token's settings, or None when it (or its user) does not exist."""
    token = get_or_none(client, path, "no such token", "no such user")
    if token is None:
        return None
    return dict(privsep=bool(int(token.get("privsep", 1))), comment=token.get("comment", ""),
                expire=int(token.get("expire", 0) or 0))


def run(module, client):
    p = module.params
    userid, name = p["userid"], p["name"]
    full = "%s!%s" % (userid, name)
    path = "access/users/%s/token/%s" % (userid, name)
    have = read_token(client, path)
    result = dict(changed=False, full_tokenid=full, created=False, rotated=False, changes=[])
    if p["state"] == "absent":
        if have is None:
            return result
        return delete_object(module, client, result, path, have)

    if have is not None and not p["rotate"] and not p["secret_known"]:
        module.fail_json(msg="API token %s exists, but its secret is not known to the caller: Proxmox shows a "
                             "token's secret only when it is created. Rotate it (rotate=true; in the turnkey.cluster "
                             "playbooks -e '{\"persistent_secrets_rotate\": [\"<secret name>\"]}') to get a new "
                             "secret - the old one stops working." % full, full_tokenid=full, changes=[])
    want = dict(privsep=p["privsep"], comment=p["comment"], expire=p["expire"])
    recreate = have is None or p["rotate"]
    # A re-created token has lost its ACL entries in Proxmox.
    have_acls = current_acls(client, "token", full) if have is not None and not recreate else {}
    want_acls = wanted_acls(p["acls"]) if p["acls"] is not None else have_acls
    put, delete = acl_plan(have_acls, want_acls)
    if have is None:
        result.update(created=True, changes=["create"])
    elif p["rotate"]:
        result.update(rotated=True, changes=["rotate"])
    else:
        result["changes"] = [key for key in SETTINGS if have[key] != want[key]]
    if put or delete:
        result["changes"].append("acls")
    result["info"] = want
    if p["acls"] is not None:
        result["acls"] = acl_list(want_acls)
    if not result["changes"]:
        return result
    result["changed"] = True
    if module._diff:
        before = dict(have or {})
        after = dict(want)
        if p["acls"] is not None:
            before["acls"] = acl_list(current_acls(client, "token", full)) if have is not None else []
            after["acls"] = acl_list(want_acls)
        if p["rotate"] and have is not None:
            before["secret"], after["secret"] = "(current, not shown)", "(new, not shown)"
        result["diff"] = dict(before=before if have is not None else {}, after=after)
    if module.check_mode:
        return result
    settings = dict(privsep=int(want["privsep"]), comment=want["comment"], expire=want["expire"])
    if recreate:
        if have is not None:
            client.delete(path)
        answer = client.post(path, **settings)
        result["value"] = answer["value"]
    else:
        client.put(path, **settings)
    apply_acls(client, "token", full, put, delete)
    return result


def main():
    module = AnsibleModule(**access_module_args(
        userid=dict(type="str", required=True),
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        privsep=dict(type="bool", default=True),
        comment=dict(type="str", default=""),
        expire=dict(type="int", default=0),
        rotate=dict(type="bool", default=False),
        secret_known=dict(type="bool", default=True),
        acls=acl_option(),
    ))
    run_access_module(module, run, full_tokenid="%s!%s" % (module.params["userid"], module.params["name"]))


if __name__ == "__main__":
    main()
