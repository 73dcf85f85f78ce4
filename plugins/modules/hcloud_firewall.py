#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hcloud_firewall
short_description: Manage a Hetzner Cloud firewall, its rules and what it applies to
version_added: 0.1.0
description:
  - Ensures a firewall (found by name) with exactly the given rules and labels, applied to the given label
    selectors and servers, or that it is absent.
  - Inbound traffic to a server behind a firewall is denied unless a rule allows it; outbound is open while
    there are no C(out) rules. So a firewall listing only the ports a Talos node needs closes everything else.
  - The rules are replaced as a whole (C(set_rules)) when they differ (order does not matter). With
    I(apply_to), missing targets are applied and unlisted ones removed; without it they are left alone.
  - Check mode works on an empty project. 429 answers are ridden through; a failure returns Hetzner's error as
    C(hcloud_error).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.hcloud
options:
  name:
    description: Firewall name.
    type: str
    required: true
  rules:
    description: The firewall's rules, as a whole.
    type: list
    elements: dict
    default: []
    suboptions:
      description:
        description: What the rule is for.
        type: str
      direction:
        description: V(in) (source_ips) or V(out) (destination_ips).
        type: str
        choices: [in, out]
        default: in
      protocol:
        description: Protocol.
        type: str
        choices: [tcp, udp, icmp, esp, gre]
        required: true
      port:
        description: Port or range C(from-to), for tcp and udp.
        type: str
      source_ips:
        description: CIDRs allowed in (for V(in)).
        type: list
        elements: str
        default: []
      destination_ips:
        description: CIDRs allowed out (for V(out)).
        type: list
        elements: str
        default: []
  apply_to:
    description:
      - What the firewall applies to, as a whole. Each entry has one of C(label_selector) (every server whose
        labels match, now and later) or C(server) (a server name).
      - Left alone when not given.
    type: list
    elements: dict
    suboptions:
      label_selector:
        description: A label selector, for example C(cluster=lab,role=controlplane).
        type: str
      server:
        description: A server name.
        type: str
  labels:
    description: The firewall's labels (replaced as a whole). Left alone when not given.
    type: dict
  state:
    description: Whether the firewall exists; V(absent) first removes it from everything it applies to.
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
    description: Returns the rules, labels and targets before and after.
"""

EXAMPLES = r"""
- name: Talos nodes - Talos API from the admins, KubeSpan from anywhere, all else closed
  turnkey.cluster.hcloud_firewall:
    name: lab-talos
    rules:
      - {description: Talos API, protocol: tcp, port: "50000", source_ips: [203.0.113.0/24]}
      - {description: KubeSpan, protocol: udp, port: "51820", source_ips: [0.0.0.0/0, "::/0"]}
    apply_to:
      - label_selector: cluster=lab,managed-by=turnkey.cluster
    labels: {cluster: lab}
"""

RETURN = r"""
firewall:
  description: The firewall after the task (C(id), C(name), C(labels), C(rules), C(apply_to)); null when absent.
  returned: always
  type: dict
changes:
  description: What was (or would be) done, for example C(create), C(rules), C(apply cluster=lab), C(labels).
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
    HcloudFailure,
    deadline_after,
    hcloud_argument_spec,
    run_module,
)

if HAS_HCLOUD:
    from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule


def rule_key(rule):
    """A comparable form of a rule (a dict of the options or the library's FirewallRule)."""
    get = rule.get if isinstance(rule, dict) else (lambda key: getattr(rule, key))
    return (get("direction") or "in", get("protocol"), get("port") or "", tuple(sorted(get("source_ips") or [])),
            tuple(sorted(get("destination_ips") or [])), get("description") or "")


def rule_view(key):
    direction, protocol, port, sources, destinations, description = key
    return {"direction": direction, "protocol": protocol, "port": port or None, "source_ips": list(sources),
            "destination_ips": list(destinations), "description": description or None}


def target_key(entry, names):
    """('label_selector', selector) or ('server', name) for an applied_to entry of the library."""
    if entry.type == "label_selector":
        return ("label_selector", entry.label_selector.selector)
    return ("server", names.get(entry.server.id, str(entry.server.id)))


def view(firewall, targets):
    if firewall is None:
        return None
    return {"id": firewall.id, "name": firewall.name, "labels": dict(firewall.labels or {}),
            "rules": [rule_view(k) for k in sorted(rule_key(r) for r in firewall.rules or [])],
            "apply_to": [{kind: value} for kind, value in sorted(targets)]}


class Firewall:
    def __init__(self, module, api):
        self.module = module
        self.api = api
        self.client = api.client
        self.deadline = deadline_after(module.params["timeout"])

    def targets(self, firewall):
        names = {}
        gone = set()
        for entry in firewall.applied_to or []:
            if entry.type == "server":
                try:
                    names[entry.server.id] = self.api.call(self.client.servers.get_by_id, entry.server.id).name
                except HcloudFailure as failure:
                    if failure.code != "not_found":
                        raise
                    gone.add(entry.server.id)  # deleted meanwhile: nothing to compare or remove
        return {target_key(entry, names) for entry in firewall.applied_to or []
                if not (entry.type == "server" and entry.server.id in gone)}

    def resource(self, kind, value, required=True):
        if kind == "label_selector":
            return FirewallResource(type="label_selector", label_selector=FirewallResourceLabelSelector(value))
        server = self.api.call(self.client.servers.get_by_name, value)
        if server is None:
            if not required:
                return None
            raise HcloudFailure("not_found", "server %s not found" % value, {"server": value})
        return FirewallResource(type="server", server=server)

    def wait(self, actions, what):
        self.api.wait_actions(actions, self.deadline, what)


def wanted_targets(params):
    wanted = set()
    for entry in params["apply_to"] or []:
        given = [(kind, entry[kind]) for kind in ("label_selector", "server") if entry.get(kind)]
        if len(given) != 1:
            raise HcloudFailure("invalid_input", "each apply_to entry needs exactly one of label_selector, server",
                                {"apply_to": entry})
        wanted.add(given[0])
    return wanted


def run(module, api, result):
    params = module.params
    client = api.client
    runner = Firewall(module, api)
    changes = result["changes"]
    check = module.check_mode
    firewall = api.call(client.firewalls.get_by_name, params["name"])
    targets = runner.targets(firewall) if firewall is not None else set()
    before = view(firewall, targets)
    result["firewall"] = before

    if params["state"] == "absent":
        if firewall is not None:
            if targets:
                changes.append("remove_from_resources")
                if not check:
                    resources = [r for r in (runner.resource(k, v, required=False) for k, v in sorted(targets)) if r]
                    runner.wait(api.call_unlocked(runner.deadline, client.firewalls.remove_from_resources, firewall,
                                                  resources), "removing firewall %s" % firewall.name)
            changes.append("delete")
            if not check:
                api.call_unlocked(runner.deadline, client.firewalls.delete, firewall)
            result.update(firewall=None, diff={"before": before, "after": None})
        return

    wanted_rules = sorted(rule_key(rule) for rule in params["rules"])
    apply_to = wanted_targets(params) if params["apply_to"] is not None else None
    rules = [FirewallRule(direction=r["direction"], protocol=r["protocol"], port=r["port"],
                          source_ips=r["source_ips"] if r["direction"] == "in" else None,
                          destination_ips=r["destination_ips"] if r["direction"] == "out" else None,
                          description=r["description"]) for r in params["rules"]]
    after = {"id": before["id"] if before else None, "name": params["name"],
             "labels": dict(params["labels"]) if params["labels"] is not None else (before or {}).get("labels", {}),
             "rules": [rule_view(k) for k in wanted_rules],
             "apply_to": [{k: v} for k, v in sorted(apply_to if apply_to is not None else targets)]}

    if firewall is None:
        changes.append("create")
        if not check:
            resources = [runner.resource(k, v) for k, v in sorted(apply_to or ())]
            made = api.call(client.firewalls.create, name=params["name"], rules=rules, labels=params["labels"] or {},
                            resources=resources or None)
            runner.wait(made.actions, "creating firewall %s" % params["name"])
            firewall = api.call(client.firewalls.get_by_id, made.firewall.id)
            after = view(firewall, runner.targets(firewall))
        result.update(firewall=after, diff={"before": None, "after": after})
        return

    if sorted(rule_key(r) for r in firewall.rules or []) != wanted_rules:
        changes.append("rules")
        if not check:
            runner.wait(api.call_unlocked(runner.deadline, client.firewalls.set_rules, firewall, rules),
                        "setting the rules of firewall %s" % firewall.name)
    if params["labels"] is not None and params["labels"] != before["labels"]:
        changes.append("labels")
        if not check:
            api.call(client.firewalls.update, firewall, labels=params["labels"])
    if apply_to is not None:
        add = sorted(apply_to - targets)
        remove = sorted(targets - apply_to)
        changes.extend("apply %s" % value for _kind, value in add)
        changes.extend("remove %s" % value for _kind, value in remove)
        if not check and add:
            runner.wait(api.call_unlocked(runner.deadline, client.firewalls.apply_to_resources, firewall,
                                          [runner.resource(k, v) for k, v in add]),
                        "applying firewall %s" % firewall.name)
        if not check and remove:
            resources = [r for r in (runner.resource(k, v, required=False) for k, v in remove) if r]
            runner.wait(api.call_unlocked(runner.deadline, client.firewalls.remove_from_resources, firewall,
                                          resources), "removing firewall %s" % firewall.name)
    if changes:
        if not check:
            firewall = api.call(client.firewalls.get_by_id, firewall.id)
            after = view(firewall, runner.targets(firewall))
        result.update(firewall=after, diff={"before": before, "after": after})


def main():
    options = dict(
        name=dict(type="str", required=True),
        rules=dict(type="list", elements="dict", default=[], options=dict(
            description=dict(type="str"),
            direction=dict(type="str", default="in", choices=["in", "out"]),
            protocol=dict(type="str", required=True, choices=["tcp", "udp", "icmp", "esp", "gre"]),
            port=dict(type="str"),
            source_ips=dict(type="list", elements="str", default=[]),
            destination_ips=dict(type="list", elements="str", default=[]),
        )),
        apply_to=dict(type="list", elements="dict", options=dict(
            label_selector=dict(type="str"),
            server=dict(type="str"),
        )),
        labels=dict(type="dict"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        timeout=dict(type="int", default=300),
    )
    module = AnsibleModule(argument_spec=hcloud_argument_spec(**options), supports_check_mode=True)
    run_module(module, run, {"changed": False, "firewall": None, "changes": []},
               "Could not manage firewall %s" % module.params["name"])


if __name__ == "__main__":
    main()
