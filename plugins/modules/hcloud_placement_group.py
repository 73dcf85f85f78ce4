#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hcloud_placement_group
short_description: Manage a Hetzner Cloud placement group
version_added: 0.1.0
description:
  - Ensures a placement group (found by name) of type C(spread) with the given labels exists, or is absent.
    Servers of a C(spread) group run on different physical hosts; a group holds at most 10 servers.
  - 429 answers are ridden through; a failure returns Hetzner's error as C(hcloud_error).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.hcloud
options:
  name:
    description: Placement group name.
    type: str
    required: true
  type:
    description: Placement group type; a different type of an existing group is refused (it cannot change).
    type: str
    choices: [spread]
    default: spread
  labels:
    description: The group's labels (replaced as a whole). Left alone when not given.
    type: dict
  state:
    description: Whether the group exists (V(absent) fails while servers are in it).
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads only and reports what would change.
  diff_mode:
    support: full
    description: Returns the group (name, type, labels) before and after.
"""

EXAMPLES = r"""
- name: Spread the Hetzner nodes over different hosts
  turnkey.cluster.hcloud_placement_group:
    name: lab-talos
    labels: {cluster: lab}
"""

RETURN = r"""
placement_group:
  description: The group after the task (C(id), C(name), C(type), C(labels), C(servers)); null when absent.
  returned: always
  type: dict
hcloud_error:
  description: Hetzner's error, C(code), C(message) and C(details).
  returned: failure
  type: dict
hcloud_rate_limit:
  description: How many 429 answers were ridden through (C(throttled)) and the seconds spent waiting.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.hcloud import (
    HcloudFailure,
    hcloud_argument_spec,
    run_module,
)


def view(group):
    if group is None:
        return None
    return {"id": group.id, "name": group.name, "type": group.type, "labels": dict(group.labels or {}),
            "servers": list(group.servers or [])}


def run(module, api, result):
    params = module.params
    client = api.client
    group = api.call(client.placement_groups.get_by_name, params["name"])
    before = view(group)
    result["placement_group"] = before
    if params["state"] == "absent":
        if group is not None:
            if not module.check_mode:
                api.call(client.placement_groups.delete, group)
            result.update(changed=True, placement_group=None, diff={"before": before, "after": None})
        return
    if group is None:
        after = {"id": None, "name": params["name"], "type": params["type"], "labels": params["labels"] or {},
                 "servers": []}
        if not module.check_mode:
            made = api.call(client.placement_groups.create, name=params["name"], type=params["type"],
                            labels=params["labels"] or {})
            after = view(made.placement_group)
        result.update(changed=True, placement_group=after, diff={"before": None, "after": after})
        return
    if group.type != params["type"]:
        raise HcloudFailure("invalid_input", "placement group %s is of type %s; the type cannot change"
                            % (group.name, group.type), {"type": group.type})
    if params["labels"] is not None and params["labels"] != before["labels"]:
        after = dict(before, labels=dict(params["labels"]))
        if not module.check_mode:
            after = view(api.call(client.placement_groups.update, group, labels=params["labels"]))
        result.update(changed=True, placement_group=after, diff={"before": before, "after": after})


def main():
    options = dict(
        name=dict(type="str", required=True),
        type=dict(type="str", default="spread", choices=["spread"]),
        labels=dict(type="dict"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = AnsibleModule(argument_spec=hcloud_argument_spec(**options), supports_check_mode=True)
    run_module(module, run, {"changed": False, "placement_group": None},
               "Could not manage placement group %s" % module.params["name"])


if __name__ == "__main__":
    main()
