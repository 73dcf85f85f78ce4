#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hcloud_network
short_description: Manage a Hetzner Cloud private network and its subnets
version_added: 0.1.0
description:
  - Ensures a private network (found by name) with its IP range, labels and subnets exists, or is absent.
  - Missing subnets are added; subnets that are not listed are left alone (removing one would cut the servers
    on it off). A different IP range is changed with C(change_ip_range) (Hetzner only allows growing it).
  - Check mode works on an empty project (nothing has to exist yet). 429 answers are ridden through; a
    failure returns Hetzner's error as C(hcloud_error).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.hcloud
options:
  name:
    description: Network name.
    type: str
    required: true
  ip_range:
    description: The network's range, for example C(10.3.0.0/16). Required to create it.
    type: str
  subnets:
    description: Subnets that must exist in the network.
    type: list
    elements: dict
    default: []
    suboptions:
      ip_range:
        description: The subnet's range, inside I(ip_range).
        type: str
        required: true
      type:
        description: Subnet type.
        type: str
        choices: [cloud, server, vswitch]
        default: cloud
      network_zone:
        description: Network zone, for example C(eu-central).
        type: str
        default: eu-central
      vswitch_id:
        description: The vSwitch of a V(vswitch) subnet.
        type: int
  labels:
    description: The network's labels (replaced as a whole). Left alone when not given.
    type: dict
  state:
    description: Whether the network exists. V(absent) fails while servers are attached (C(resource_in_use)).
    type: str
    choices: [present, absent]
    default: present
  timeout:
    description: Seconds the task may take, actions included.
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    description: Reads only and reports what would change.
  diff_mode:
    support: full
    description: Returns the network (ip_range, labels, subnets) before and after.
"""

EXAMPLES = r"""
- name: The private network of the Hetzner nodes
  turnkey.cluster.hcloud_network:
    name: lab
    ip_range: 10.3.0.0/16
    subnets:
      - {ip_range: 10.3.0.0/24, network_zone: eu-central}
    labels: {cluster: lab, managed-by: turnkey.cluster}
"""

RETURN = r"""
network:
  description: The network after the task (C(id), C(name), C(ip_range), C(labels), C(subnets)); null when absent.
  returned: always
  type: dict
  sample: {id: 4000001, name: lab, ip_range: 10.3.0.0/16, labels: {cluster: lab},
           subnets: [{ip_range: 10.3.0.0/24, type: cloud, network_zone: eu-central, gateway: 10.3.0.1}]}
changes:
  description: What was (or would be) done, for example C(create), C(add_subnet 10.3.0.0/24), C(labels).
  returned: always
  type: list
  elements: str
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
    HAS_HCLOUD,
    deadline_after,
    hcloud_argument_spec,
    run_module,
)

if HAS_HCLOUD:
    from hcloud.networks import NetworkSubnet


def view(network):
    if network is None:
        return None
    return {"id": network.id, "name": network.name, "ip_range": network.ip_range,
            "labels": dict(network.labels or {}),
            "subnets": [{"ip_range": s.ip_range, "type": s.type, "network_zone": s.network_zone,
                         "gateway": s.gateway} for s in network.subnets or []]}


def subnet_object(wanted):
    return NetworkSubnet(type=wanted["type"], ip_range=wanted["ip_range"], network_zone=wanted["network_zone"],
                         vswitch_id=wanted.get("vswitch_id"))


def run(module, api, result):
    params = module.params
    client = api.client
    deadline = deadline_after(params["timeout"])
    changes = result["changes"]
    network = api.call(client.networks.get_by_name, params["name"])
    before = view(network)
    result["network"] = before

    if params["state"] == "absent":
        if network is not None:
            changes.append("delete")
            if not module.check_mode:
                api.call_unlocked(deadline, client.networks.delete, network)
            result.update(network=None, diff={"before": before, "after": None})
        return

    wanted_subnets = params["subnets"]
    if network is None:
        if not params["ip_range"]:
            module.fail_json(msg="Network %s does not exist; creating it needs ip_range" % params["name"], **result)
        changes.append("create")
        after = {"id": None, "name": params["name"], "ip_range": params["ip_range"], "labels": params["labels"] or {},
                 "subnets": [{"ip_range": s["ip_range"], "type": s["type"], "network_zone": s["network_zone"]}
                             for s in wanted_subnets]}
        if not module.check_mode:
            network = api.call(client.networks.create, name=params["name"], ip_range=params["ip_range"],
                               subnets=[subnet_object(s) for s in wanted_subnets], labels=params["labels"] or {})
            after = view(api.call(client.networks.get_by_id, network.id))
        result.update(network=after, diff={"before": None, "after": after})
        return

    after = dict(before, subnets=list(before["subnets"]))
    if params["ip_range"] and params["ip_range"] != network.ip_range:
        changes.append("change_ip_range")
        after["ip_range"] = params["ip_range"]
        if not module.check_mode:
            api.wait_action(api.call_unlocked(deadline, client.networks.change_ip_range, network, params["ip_range"]),
                            deadline, "changing the range of network %s" % network.name)
    if params["labels"] is not None and params["labels"] != before["labels"]:
        changes.append("labels")
        after["labels"] = dict(params["labels"])
        if not module.check_mode:
            api.call(client.networks.update, network, labels=params["labels"])
    existing = {s["ip_range"] for s in before["subnets"]}
    for wanted in wanted_subnets:
        if wanted["ip_range"] in existing:
            continue
        changes.append("add_subnet %s" % wanted["ip_range"])
        after["subnets"].append({"ip_range": wanted["ip_range"], "type": wanted["type"],
                                 "network_zone": wanted["network_zone"]})
        if not module.check_mode:
            api.wait_action(api.call_unlocked(deadline, client.networks.add_subnet, network, subnet_object(wanted)),
                            deadline, "adding subnet %s" % wanted["ip_range"])
    if changes:
        if not module.check_mode:
            after = view(api.call(client.networks.get_by_id, network.id))
        result.update(network=after, diff={"before": before, "after": after})


def main():
    options = dict(
        name=dict(type="str", required=True),
        ip_range=dict(type="str"),
        subnets=dict(type="list", elements="dict", default=[], options=dict(
            ip_range=dict(type="str", required=True),
            type=dict(type="str", default="cloud", choices=["cloud", "server", "vswitch"]),
            network_zone=dict(type="str", default="eu-central"),
            vswitch_id=dict(type="int"),
        )),
        labels=dict(type="dict"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        timeout=dict(type="int", default=300),
    )
    module = AnsibleModule(argument_spec=hcloud_argument_spec(**options), supports_check_mode=True)
    run_module(module, run, {"changed": False, "network": None, "changes": []},
               "Could not manage network %s" % module.params["name"])


if __name__ == "__main__":
    main()
