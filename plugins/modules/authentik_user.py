#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authentik_user
short_description: A user in Authentik, its groups and its password
version_added: 0.1.0
description:
  - Creates, updates or deletes the Authentik user O(username), with its display name, e-mail, active flag,
    path, attributes and group membership.
  - Reads the user first and sends only the managed fields that differ, so a rerun is C(changed=false).
  - Authentik never returns a password, so it cannot be compared. O(password) is set when the user is
    created, and on every run with O(update_password=always) (then the task always reports a change). Keep
    the password in the persistent store, generated once, so a rebuilt Authentik gets the same one.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.authentik
options:
  username:
    description: The user's login name, unique in Authentik.
    type: str
    required: true
  name:
    description: The display name. When the user is created without it, the username is used.
    type: str
  email:
    description: The e-mail address (the C(email) claim).
    type: str
  groups:
    description:
      - Names of the groups the user is a member of, exactly (compared as a set); the groups must exist
        (M(turnkey.cluster.authentik_group)). Not given means membership is not managed.
    type: list
    elements: str
  is_active:
    description: Whether the user may log in.
    type: bool
  path:
    description: The folder the user is shown in (Authentik's default is C(users)).
    type: str
  attributes:
    description: Attributes to set on the user; the keys given are set, keys not named are kept.
    type: dict
  password:
    description:
      - The user's password. Set when the user is created, and on every run with O(update_password=always);
        it cannot be read back, so it is never compared.
    type: str
  update_password:
    description:
      - V(on_create) - set O(password) only when the task creates the user (a rerun is C(changed=false));
        V(always) - set it on every run (always C(changed=true)).
    type: str
    choices: [on_create, always]
    default: on_create
attributes:
  check_mode:
    support: full
    description: Reads the user and reports what would be created, changed or deleted, and whether the password
      would be set; writes nothing.
  diff_mode:
    support: full
    description: Shows the managed fields before and after, groups by name; a password set shows as
      C(<hidden, changed>).
"""

EXAMPLES = r"""
- name: The operator, admin of Grafana and Authentik, with the password generated once into the store
  turnkey.cluster.authentik_user:
    url: https://auth.cluster.example.com
    ca_path: /etc/ssl/homelab-ca.pem
    token: "{{ authentik_bootstrap_token }}"
    username: operator
    name: Cluster operator
    email: operator@example.com
    groups: [authentik Admins, grafana-admins]
    password: "{{ operator_password }}"
"""

RETURN = r"""
operation:
  description: C(create), C(update), C(delete) or C(none) for the user's fields (in check mode, what would happen).
  returned: always
  type: str
password_set:
  description: Whether the task set (in check mode, would set) the password.
  returned: always
  type: bool
object:
  description: The user as Authentik holds it after the task (in check mode, as it would be); empty when deleted.
  returned: always
  type: dict
  sample: {pk: 7, username: operator, name: Cluster operator, email: operator@example.com, is_active: true}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import authentik as ak


def main():
    module = AnsibleModule(
        argument_spec=ak.connection_args(
            username=dict(type="str", required=True),
            name=dict(type="str"),
            email=dict(type="str"),
            groups=dict(type="list", elements="str"),
            is_active=dict(type="bool"),
            path=dict(type="str"),
            attributes=dict(type="dict"),
            password=dict(type="str", no_log=True),
            update_password=dict(type="str", choices=["on_create", "always"], default="on_create", no_log=False),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def work(client):
        username = params["username"]
        wanted = dict(username=username, name=params["name"], email=params["email"], is_active=params["is_active"],
                      path=params["path"], attributes=params["attributes"])
        if params["state"] == "present":
            wanted["groups"] = client.resolve_all(ak.GROUP, params["groups"], hint="turnkey.cluster.authentik_group")
        result, _current = ak.ensure(client, ak.USER, username, wanted, params["state"], module._diff,
                                     create_defaults=dict(name=username))
        set_password = bool(params["state"] == "present" and params["password"]
                            and (result["operation"] == "create" or params["update_password"] == "always"))
        result["password_set"] = set_password
        if set_password:
            result["changed"] = True
            if "diff" in result:
                if result["operation"] != "create":
                    result["diff"]["before"]["password"] = ak.HIDDEN
                result["diff"]["after"]["password"] = ak.HIDDEN_CHANGED
            if not client.check_mode:
                request = ak.authentik_client.UserPasswordSetRequest(password=params["password"])
                client.call("setting the password of user %s" % username, "CoreApi", "core_users_set_password_create",
                            result["object"]["pk"], request)
        return result

    ak.run_module(module, work)


if __name__ == "__main__":
    main()
