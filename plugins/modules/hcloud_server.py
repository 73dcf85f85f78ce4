#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hcloud_server
short_description: Manage a Hetzner Cloud server (a Talos node made from a snapshot)
version_added: 0.1.0
description:
  - Creates, updates, powers and deletes one Hetzner Cloud server, found by its name.
  - A new server is made from an image (I(image), for example the Talos snapshot's id) or from the newest
    available snapshot matching I(image_selector), with its labels, server type, location, placement group,
    firewalls and user data; it is created stopped, attached to the private I(network) with the fixed I(ip),
    and then powered on (unless I(state=stopped)).
  - On an existing server, labels are updated and firewalls applied or removed in place. A different
    server type needs a power-off, so it is only changed with I(allow_restart=true) (C(change_type), the disk
    is kept so the type can be changed back). A different image, location, placement group or private IP
    can only be had by deleting and recreating the server, which is refused unless I(allow_destructive=true).
  - Actions are polled with exponential backoff until I(timeout); 429 answers are ridden through (see
    I(rate_limit_wait)); a failure returns Hetzner's error as C(hcloud_error).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.hcloud
options:
  name:
    description: Server name (a hostname); the server is found by it.
    type: str
    required: true
  state:
    description:
      - V(present) creates the server (started) when missing and leaves the power state of an existing one.
      - V(started) and V(stopped) also ensure the power state (V(stopped) shuts the server down through ACPI,
        and powers it off when it is not off within I(shutdown_timeout)).
      - V(absent) deletes it.
    type: str
    choices: [present, started, stopped, absent]
    default: present
  image:
    description:
      - Image id (digits) or name to create the server from. Mutually exclusive with I(image_selector); one of
        them is required to create a server.
    type: str
  image_selector:
    description:
      - Label selector of a snapshot, for example C(os=talos,talos-version=v1.13.9); the newest available one
        is used. An existing server matches when its image carries these labels.
    type: str
  compare_image:
    description:
      - Whether the image of an existing server is compared with I(image) or I(image_selector). With V(false)
        the image is only used to create the server, so a node made from an older snapshot and upgraded in
        place (Talos) is not a difference.
    type: bool
    default: true
  server_type:
    description: Server type, for example C(cx22). Required to create a server.
    type: str
  location:
    description: Location, for example C(fsn1). Required to create a server.
    type: str
  placement_group:
    description: Name of a placement group to create the server in.
    type: str
  labels:
    description: The server's labels (replaced as a whole). Left alone when not given.
    type: dict
  firewalls:
    description:
      - Names of the firewalls applied to the server directly. Firewalls applied directly and not listed are
        removed; firewalls that reach the server through a label selector are left alone.
      - Left alone when not given (or use a firewall with a label selector, see M(turnkey.cluster.hcloud_firewall)).
    type: list
    elements: str
  network:
    description: Name or id of the private network the server is attached to.
    type: str
  ip:
    description: The server's fixed address in I(network). Without it Hetzner picks one.
    type: str
  enable_ipv4:
    description:
      - Whether the server gets a public IPv4 address. Only applied at creation; a difference on an existing
        server is reported as a warning.
    type: bool
    default: true
  enable_ipv6:
    description: Whether the server gets a public IPv6 network; like I(enable_ipv4).
    type: bool
    default: true
  user_data:
    description:
      - Cloud-init user data, for a Talos node its machine configuration (at most 32 KiB). Only sent at
        creation, never logged or returned; Hetzner does not return it, so it is not compared.
    type: str
  allow_restart:
    description: Allow powering the server off (and on again) to change its server type.
    type: bool
    default: false
  allow_destructive:
    description:
      - Allow deleting and recreating the server when its image, location, placement group or private IP
        differs. Its disk is lost. Implies I(allow_restart).
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds an ACPI shutdown may take before the server is powered off hard.
    type: int
    default: 60
  timeout:
    description: Seconds the whole task may take, all actions included.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    description: Reads only and reports what would change; the image, network, firewalls and placement group
      may be missing then (an earlier task of the same check run would create them).
  diff_mode:
    support: full
    description: Returns the server's managed fields before and after (user data excluded).
notes:
  - I(user_data) is create-time only; to give an existing Talos node a new configuration use the Talos API.
  - The lab's Hetzner twin does not simulate C(rebuild), so a destructive change deletes and recreates.
"""

EXAMPLES = r"""
- name: A Talos worker from the snapshot, on the private network with a fixed address
  turnkey.cluster.hcloud_server:
    name: hcloud-worker1
    image_selector: os=talos,talos-version=v1.13.9
    server_type: cx22
    location: fsn1
    placement_group: lab-talos
    network: lab
    ip: 10.3.0.10
    labels: {cluster: lab, role: worker, managed-by: turnkey.cluster}
    state: started

- name: Bigger server type (powers the server off and on again)
  turnkey.cluster.hcloud_server:
    name: hcloud-worker1
    server_type: cx32
    allow_restart: true

- name: Delete it
  turnkey.cluster.hcloud_server:
    name: hcloud-worker1
    state: absent
"""

RETURN = r"""
server:
  description:
    - The server after the task (null when absent, or in check mode before creation) with C(id), C(name),
      C(status), C(server_type), C(location), C(image), C(labels), C(ipv4), C(ipv6), C(private_ips),
      C(firewalls), C(placement_group).
  returned: always
  type: dict
  sample: {id: 10000002, name: hcloud-worker1, status: running, server_type: cx22, location: fsn1,
           image: 300000001, labels: {role: worker}, ipv4: 203.0.113.3, ipv6: "2001:db8:989682::/64",
           private_ips: [{network: 4000001, ip: 10.3.0.10}], firewalls: [5000001], placement_group: lab-talos}
changes:
  description: What was (or in check mode would be) done, in order, for example C(create), C(labels),
    C(change_type), C(recreate), C(power_on).
  returned: always
  type: list
  elements: str
warnings_only:
  description: Differences that were not applied (public network toggles of an existing server).
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

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.hcloud import (
    HAS_HCLOUD,
    HcloudFailure,
    deadline_after,
    hcloud_argument_spec,
    run_module,
)

if HAS_HCLOUD:
    from hcloud.firewalls import FirewallResource
    from hcloud.images import Image
    from hcloud.locations import Location
    from hcloud.server_types import ServerType
    from hcloud.servers import ServerCreatePublicNetwork


def view(server):
    """The fields this module manages and reports, in plain types."""
    if server is None:
        return None
    net = server.public_net
    return {
        "id": server.id, "name": server.name, "status": server.status,
        "server_type": server.server_type.name if server.server_type else None,
        "location": server.location.name if server.location else None,
        "image": server.image.id if server.image else None,
        "labels": dict(server.labels or {}),
        "ipv4": net.ipv4.ip if net and net.ipv4 else None,
        "ipv6": net.ipv6.ip if net and net.ipv6 else None,
        "private_ips": [{"network": p.network.id, "ip": p.ip} for p in server.private_net or []],
        "firewalls": sorted(f.firewall.id for f in (net.firewalls or [])) if net else [],
        "placement_group": server.placement_group.name if server.placement_group else None,
    }


class Server:
    def __init__(self, module, api):
        self.module = module
        self.api = api
        self.client = api.client
        self.params = module.params
        self.deadline = deadline_after(self.params["timeout"])
        self.changes = []
        self.warnings = []

    # -- lookups ---------------------------------------------------------------------------------------
    def get(self):
        return self.api.call(self.client.servers.get_by_name, self.params["name"])

    def refresh(self, server):
        return self.api.call(self.client.servers.get_by_id, server.id)

    def image(self, required):
        """The image to create from: by id, by name, or the newest available snapshot matching the selector."""
        params = self.params
        if params["image_selector"]:
            # Filtered here: the library sends get_all(status=...) as the wrong query parameter.
            images = [image for image in self.api.call(self.client.images.get_all, type=["snapshot"],
                                                       label_selector=params["image_selector"])
                      if image.status == "available"]
            if images:
                return max(images, key=lambda image: image.id)
            what = "no available snapshot matches %s" % params["image_selector"]
        elif params["image"]:
            if params["image"].isdigit():
                try:
                    return self.api.call(self.client.images.get_by_id, int(params["image"]))
                except HcloudFailure as failure:
                    if failure.code != "not_found":
                        raise
            else:
                images = self.api.call(self.client.images.get_all, name=params["image"])
                if images:
                    return images[0]
            what = "image %s not found" % params["image"]
        else:
            what = "image or image_selector is required to create a server"
        if required:
            raise HcloudFailure("not_found", what, {"image": params["image"] or params["image_selector"]})
        return None

    def image_matches(self, server):
        """Whether an existing server's image is the one asked for (by id/name, or by the selector's labels)."""
        params = self.params
        if not params["compare_image"] or server.image is None or not (params["image"] or params["image_selector"]):
            return True  # nothing asked, or the image was deleted since: nothing to compare
        if params["image_selector"]:
            matching = self.api.call(self.client.images.get_all, type=["snapshot"],
                                     label_selector=params["image_selector"])
            return server.image.id in {image.id for image in matching}
        if params["image"].isdigit():
            return server.image.id == int(params["image"])
        return params["image"] in (server.image.name, str(server.image.id))

    def named(self, kind, name, required):
        """A network, firewall or placement group by name (or id); None when missing and not required."""
        clients = {"network": self.client.networks, "firewall": self.client.firewalls,
                   "placement group": self.client.placement_groups}
        found = None
        if name.isdigit():
            try:
                found = self.api.call(clients[kind].get_by_id, int(name))
            except HcloudFailure as failure:
                if failure.code != "not_found":
                    raise
        else:
            found = self.api.call(clients[kind].get_by_name, name)
        if found is None and required:
            raise HcloudFailure("not_found", "%s %s not found" % (kind, name), {kind.replace(" ", "_"): name})
        return found

    # -- desired state ---------------------------------------------------------------------------------
    def desired(self, current, network, firewalls):
        """The view the server should have, for the diff (None where the module leaves a field alone)."""
        params = self.params
        after = dict(current or {"id": None, "name": params["name"], "status": None, "ipv4": None, "ipv6": None,
                                 "private_ips": [], "firewalls": [], "labels": {}, "image": None,
                                 "placement_group": None})
        after.pop("id", None)
        for key in ("server_type", "location", "placement_group"):
            if params[key] is not None:
                after[key] = params[key]
        if params["labels"] is not None:
            after["labels"] = dict(params["labels"])
        if params["image"] or params["image_selector"]:
            after["image"] = params["image"] or "<newest snapshot matching %s>" % params["image_selector"]
        if params["network"]:
            others = [p for p in after["private_ips"] if network is None or p["network"] != network.id]
            mine = {"network": network.id if network else params["network"], "ip": params["ip"] or "<auto>"}
            after["private_ips"] = others + [mine]
        if firewalls is not None:
            after["firewalls"] = sorted(f.id if f is not None else name for name, f in firewalls)
        state = params["state"]
        if state == "started" or (state == "present" and current is None):
            after["status"] = "running"
        elif state == "stopped":
            after["status"] = "off"
        if current is not None:
            for key in ("ipv4", "ipv6"):
                after[key] = current[key]
            if current["image"] is not None and self.image_matches_cached:
                after["image"] = current["image"]
        return after

    # -- steps -----------------------------------------------------------------------------------------
    def wait(self, action, what):
        return self.api.wait_action(action, self.deadline, what)

    def delete(self, server):
        action = self.api.call_unlocked(self.deadline, self.client.servers.delete, server)
        self.wait(action, "deleting server %s" % server.name)

    def create(self, network, firewalls, group):
        params = self.params
        image = self.image(required=True)
        # Created stopped when it joins a network: the fixed IP is attached before the first boot.
        start = params["state"] != "stopped" and not network
        made = self.api.call(
            self.client.servers.create, name=params["name"], server_type=ServerType(name=params["server_type"]),
            image=Image(id=image.id), location=Location(name=params["location"]), labels=params["labels"] or {},
            firewalls=[f for _name, f in firewalls or []] or None, placement_group=group,
            user_data=params["user_data"], start_after_create=start,
            public_net=ServerCreatePublicNetwork(enable_ipv4=params["enable_ipv4"],
                                                 enable_ipv6=params["enable_ipv6"]))
        self.changes.append("create")
        self.wait(made.action, "creating server %s" % params["name"])
        for action in made.next_actions or []:
            self.wait(action, "starting server %s" % params["name"])
        server = made.server
        if network:
            self.attach(server, network)
            if params["state"] != "stopped":
                self.power_on(server)
        return self.refresh(server)

    def attach(self, server, network):
        action = self.api.call_unlocked(self.deadline, self.client.servers.attach_to_network, server, network,
                                        ip=self.params["ip"])
        self.wait(action, "attaching server %s to network %s" % (server.name, network.name))
        self.changes.append("attach_network")

    def power_on(self, server):
        action = self.api.call_unlocked(self.deadline, self.client.servers.power_on, server)
        self.wait(action, "powering server %s on" % server.name)
        self.changes.append("power_on")

    def power_off(self, server):
        """ACPI shutdown, then a hard power-off when the server is not off within shutdown_timeout."""
        action = self.api.call_unlocked(self.deadline, self.client.servers.shutdown, server)
        self.wait(action, "shutting server %s down" % server.name)
        until = min(self.deadline, time.monotonic() + self.params["shutdown_timeout"])
        interval = 0.2
        while self.refresh(server).status != "off":
            if time.monotonic() >= until:
                action = self.api.call_unlocked(self.deadline, self.client.servers.power_off, server)
                self.wait(action, "powering server %s off" % server.name)
                break
            time.sleep(interval)
            interval = min(interval * 2, 5.0)
        self.changes.append("power_off")

    def set_firewalls(self, server, current_ids, firewalls):
        """Applies the missing firewalls and removes direct ones that are not listed."""
        wanted = {f.id: f for _name, f in firewalls}
        resource = [FirewallResource(type="server", server=server)]
        for ident, firewall in sorted(wanted.items()):
            if ident not in current_ids:
                self.api.wait_actions(self.api.call_unlocked(self.deadline, self.client.firewalls.apply_to_resources,
                                                             firewall, resource),
                                      self.deadline, "applying firewall %s" % firewall.name)
        for ident in sorted(set(current_ids) - set(wanted)):
            firewall = self.api.call(self.client.firewalls.get_by_id, ident)
            direct = any(entry.type == "server" and entry.server and entry.server.id == server.id
                         for entry in firewall.applied_to or [])
            if direct:
                self.api.wait_actions(self.api.call_unlocked(self.deadline,
                                                             self.client.firewalls.remove_from_resources,
                                                             firewall, resource),
                                      self.deadline, "removing firewall %s" % firewall.name)

    def firewall_changes(self, server, current_ids, firewalls):
        """(to add, to remove) firewall ids; only direct attachments can be removed."""
        wanted = {f.id for _name, f in firewalls if f is not None}
        missing = [name for name, f in firewalls if f is None]
        add = sorted(wanted - set(current_ids)) + missing
        remove = []
        for ident in sorted(set(current_ids) - wanted):
            firewall = self.api.call(self.client.firewalls.get_by_id, ident)
            if any(entry.type == "server" and entry.server and entry.server.id == server.id
                   for entry in firewall.applied_to or []):
                remove.append(ident)
        return add, remove


def destructive_differences(runner, server, current, network):
    params = runner.params
    found = []
    runner.image_matches_cached = runner.image_matches(server)
    if not runner.image_matches_cached:
        found.append("image")
    if params["location"] and params["location"] != current["location"]:
        found.append("location")
    if params["placement_group"] is not None and params["placement_group"] != current["placement_group"]:
        found.append("placement_group")
    if params["network"] and params["ip"] and network is not None:
        mine = [p["ip"] for p in current["private_ips"] if p["network"] == network.id]
        if mine and mine[0] != params["ip"]:
            found.append("private IP (%s, asked %s)" % (mine[0], params["ip"]))
    return found


def run(module, api, result):
    params = module.params
    runner = Server(module, api)
    runner.image_matches_cached = True
    result["warnings_only"] = runner.warnings
    result["changes"] = runner.changes
    server = runner.get()
    current = view(server)
    result["server"] = current

    if params["state"] == "absent":
        if server is not None:
            runner.changes.append("delete")
            if not module.check_mode:
                runner.delete(server)
            result.update(changed=True, server=None, diff={"before": current, "after": None})
        return

    check = module.check_mode
    network = runner.named("network", params["network"], required=not check) if params["network"] else None
    firewalls = None
    if params["firewalls"] is not None:
        firewalls = [(name, runner.named("firewall", name, required=not check)) for name in params["firewalls"]]
    group = None
    if params["placement_group"]:
        group = runner.named("placement group", params["placement_group"], required=not check)

    if server is None:
        missing = [key for key in ("server_type", "location") if not params[key]]
        if not (params["image"] or params["image_selector"]):
            missing.append("image or image_selector")
        if missing:
            module.fail_json(msg="Server %s does not exist; creating it needs %s" % (params["name"],
                                                                                     ", ".join(missing)), **result)
        if check:
            runner.image(required=False)  # a snapshot an earlier task of this check run would build
            runner.changes.append("create")
        else:
            server = runner.create(network, firewalls, group)
        result.update(changed=True, server=view(server),
                      diff={"before": None, "after": runner.desired(None, network, firewalls)})
        return

    destructive = destructive_differences(runner, server, current, network)
    if params["enable_ipv4"] != (current["ipv4"] is not None) or params["enable_ipv6"] != (current["ipv6"] is not None):
        runner.warnings.append("the public network of an existing server is not changed (enable_ipv4/enable_ipv6 "
                               "apply at creation; recreate the server to change it)")
    after = runner.desired(current, network, firewalls)
    if destructive:
        if not params["allow_destructive"]:
            module.fail_json(msg="Server %s differs in %s, which only deleting and recreating it can change (its "
                                 "disk is lost); set allow_destructive: true to allow that"
                                 % (params["name"], ", ".join(destructive)),
                             differences=destructive, diff={"before": current, "after": after}, **result)
        runner.changes.append("recreate")
        # What is not asked for is kept from the server being replaced.
        for key in ("server_type", "location", "placement_group", "labels"):
            if params[key] is None:
                params[key] = current[key]
        if network is None and current["private_ips"]:
            network = api.call(api.client.networks.get_by_id, current["private_ips"][0]["network"])
            params["ip"] = current["private_ips"][0]["ip"]
        if group is None and params["placement_group"]:
            group = runner.named("placement group", params["placement_group"], required=not check)
        if not check:
            runner.delete(server)
            server = runner.create(network, firewalls, group)
        result.update(changed=True, server=view(server), diff={"before": current, "after": after})
        return

    # In-place updates.
    if params["labels"] is not None and params["labels"] != current["labels"]:
        runner.changes.append("labels")
        if not check:
            api.call(api.client.servers.update, server, labels=params["labels"])
    if firewalls is not None:
        add, remove = runner.firewall_changes(server, current["firewalls"], firewalls)
        if add or remove:
            runner.changes.append("firewalls")
            if not check:
                runner.set_firewalls(server, current["firewalls"], firewalls)
    if network is not None or (check and params["network"]):
        attached = network is not None and any(p["network"] == network.id for p in current["private_ips"])
        if not attached:
            if check:
                runner.changes.append("attach_network")
            else:
                runner.attach(server, network)
    was_running = current["status"] in ("running", "starting", "initializing")
    if params["server_type"] and params["server_type"] != current["server_type"]:
        if not (params["allow_restart"] or params["allow_destructive"]):
            module.fail_json(msg="Server %s is %s, asked %s: changing the type needs a power-off; set "
                                 "allow_restart: true to allow it" % (params["name"], current["server_type"],
                                                                      params["server_type"]),
                             differences=["server_type"], diff={"before": current, "after": after}, **result)
        if not check:
            if current["status"] != "off":
                runner.power_off(server)
            action = api.call_unlocked(runner.deadline, api.client.servers.change_type, server,
                                       ServerType(name=params["server_type"]), upgrade_disk=False)
            runner.wait(action, "changing the type of server %s" % params["name"])
        runner.changes.append("change_type")
        if was_running and params["state"] != "stopped":
            if not check:
                runner.power_on(server)
            else:
                runner.changes.append("power_on")
    state = params["state"]
    status = server.status if check else runner.refresh(server).status
    if state == "started" and status not in ("running", "starting") and "power_on" not in runner.changes:
        if check:
            runner.changes.append("power_on")
        else:
            runner.power_on(server)
    if state == "stopped" and status != "off":
        if check:
            runner.changes.append("power_off")
        else:
            runner.power_off(server)
    changed = bool(runner.changes)
    result.update(changed=changed, server=current if check else view(runner.refresh(server)))
    if changed:
        result["diff"] = {"before": current, "after": after}


def main():
    options = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "started", "stopped", "absent"]),
        image=dict(type="str"),
        image_selector=dict(type="str"),
        compare_image=dict(type="bool", default=True),
        server_type=dict(type="str"),
        location=dict(type="str"),
        placement_group=dict(type="str"),
        labels=dict(type="dict"),
        firewalls=dict(type="list", elements="str"),
        network=dict(type="str"),
        ip=dict(type="str"),
        enable_ipv4=dict(type="bool", default=True),
        enable_ipv6=dict(type="bool", default=True),
        user_data=dict(type="str", no_log=True),
        allow_restart=dict(type="bool", default=False),
        allow_destructive=dict(type="bool", default=False),
        shutdown_timeout=dict(type="int", default=60),
        timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=hcloud_argument_spec(**options), supports_check_mode=True,
                           mutually_exclusive=[("image", "image_selector")], required_by={"ip": "network"})
    run_module(module, run, {"changed": False, "server": None, "changes": [], "warnings_only": []},
               "Could not manage server %s" % module.params["name"])


if __name__ == "__main__":
    main()
