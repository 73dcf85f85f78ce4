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
  - Only a server carrying every one of I(owner_labels) is changed or deleted; a server with the name but
    without them belongs to someone else and is an error, whatever is asked (it is never taken over).
  - What to do is planned from the server as it is and as asked (module_utils hcloud_server_plan), before
    anything is sent; check mode and diff show that plan.
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
  - A write is sent once. When its answer leaves open whether it was done (a timeout, a 502 or 504, a
    broken connection), it is not sent again blindly; the server is read again and the plan made again.
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
    description:
      - The server's labels (replaced as a whole, I(owner_labels) always among them). Left alone when not given.
    type: dict
  owner_labels:
    description:
      - The labels that prove the server is managed here. A new server gets them; an existing server without
        every one of them is refused (error), never changed or deleted.
    type: dict
    default: {managed-by: turnkey.cluster}
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
      - Cloud-init user data, for a Talos node its machine configuration (at most 32 KiB, checked before
        anything is sent). Only sent at creation, never logged or returned; Hetzner does not return it, so
        it is not compared and a different one never replaces a server (give a Talos node a new
        configuration through the Talos API).
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
    description: Reads only and reports the plan's actions; the image, network, firewalls and placement group
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
    owner_labels: {cluster: lab, managed-by: turnkey.cluster}
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
  description: What was (or in check mode would be) done, in order, for example C(create), C(attach_network),
    C(labels), C(firewalls), C(power_off), C(change_type), C(recreate), C(power_on), C(delete).
  returned: always
  type: list
  elements: str
warnings_only:
  description: Differences that were not applied (public network toggles of an existing server).
  returned: always
  type: list
  elements: str
differences:
  description: What a refusal is about (C(owner_labels), C(server_type), C(image), C(location), ...).
  returned: failure
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
from ansible_collections.turnkey.cluster.plugins.module_utils.hcloud_server_plan import Facts, plan

if HAS_HCLOUD:
    from hcloud.firewalls import FirewallResource
    from hcloud.images import Image
    from hcloud.locations import Location
    from hcloud.server_types import ServerType
    from hcloud.servers import ServerCreatePublicNetwork

# Re-reads after an answer that left open whether a write was done, before giving up.
REREADS = 3


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
    """The reads and writes of one server; what to do comes from the plan (module_utils/hcloud_server_plan)."""

    def __init__(self, module, api):
        self.module = module
        self.api = api
        self.client = api.client
        self.params = module.params
        self.deadline = deadline_after(self.params["timeout"])

    # -- reads -----------------------------------------------------------------------------------------
    def get(self):
        return self.api.call(self.client.servers.get_by_name, self.params["name"])

    def refresh(self, server):
        return self.api.call(self.client.servers.get_by_id, server.id)

    def image(self):
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
        else:
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
        raise HcloudFailure("not_found", what, {"image": params["image"] or params["image_selector"]})

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
        if str(name).isdigit():
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

    def direct_firewalls(self, server, ids):
        """Which of these firewall ids are applied to the server directly (not through a label selector)."""
        direct = set()
        for ident in ids:
            firewall = self.api.call(self.client.firewalls.get_by_id, ident)
            if any(entry.type == "server" and entry.server and entry.server.id == server.id
                   for entry in firewall.applied_to or []):
                direct.add(ident)
        return direct

    def facts(self, server, current):
        """What the plan needs besides the server's view (reads only; in check mode a missing network or
        firewall is one an earlier task of the same run would create)."""
        params, check = self.params, self.module.check_mode
        facts = Facts()
        if params["state"] == "absent":
            return facts
        if params["network"]:
            network = self.named("network", params["network"], required=not check)
            facts.network_id = network.id if network else None
        if params["firewalls"] is not None:
            facts.firewalls = []
            for name in params["firewalls"]:
                firewall = self.named("firewall", name, required=not check)
                facts.firewalls.append((name, firewall.id if firewall else None))
        if current is not None:
            facts.image_matches = self.image_matches(server)
            if params["firewalls"] is not None:
                wanted = {ident for _name, ident in facts.firewalls}
                facts.direct_firewalls = self.direct_firewalls(server, set(current["firewalls"]) - wanted)
        return facts

    # -- writes (each sent once, see HcloudApi.write) --------------------------------------------------
    def write(self, function, *args, **kwargs):
        return self.api.write(self.deadline, function, *args, **kwargs)

    def wait(self, action, what):
        return self.api.wait_action(action, self.deadline, what)

    def delete(self, server):
        self.wait(self.write(self.client.servers.delete, server), "deleting server %s" % server.name)

    def create(self, steps):
        params, spec = self.params, steps.create
        image = self.image()
        group = None
        if spec["placement_group"]:
            group = self.named("placement group", spec["placement_group"], required=True)
        firewalls = [self.named("firewall", ident, required=True) for ident in steps.firewalls_add]
        # Created stopped when it joins a network: the fixed IP is attached before the first boot.
        start = params["state"] != "stopped" and not spec["network"]
        made = self.write(
            self.client.servers.create, name=params["name"], server_type=ServerType(name=spec["server_type"]),
            image=Image(id=image.id), location=Location(name=spec["location"]), labels=steps.labels,
            firewalls=firewalls or None, placement_group=group, user_data=params["user_data"],
            start_after_create=start,
            public_net=ServerCreatePublicNetwork(enable_ipv4=params["enable_ipv4"], enable_ipv6=params["enable_ipv6"]))
        self.wait(made.action, "creating server %s" % params["name"])
        for action in made.next_actions or []:
            self.wait(action, "starting server %s" % params["name"])
        return made.server

    def attach(self, server, network_name, ip):
        network = self.named("network", network_name, required=True)
        action = self.write(self.client.servers.attach_to_network, server, network, ip=ip)
        self.wait(action, "attaching server %s to network %s" % (server.name, network.name))

    def power_on(self, server):
        self.wait(self.write(self.client.servers.power_on, server), "powering server %s on" % server.name)

    def power_off(self, server):
        """ACPI shutdown, then a hard power-off when the server is not off within shutdown_timeout."""
        self.wait(self.write(self.client.servers.shutdown, server), "shutting server %s down" % server.name)
        until = min(self.deadline, time.monotonic() + self.params["shutdown_timeout"])
        interval = 0.2
        while self.refresh(server).status != "off":
            if time.monotonic() >= until:
                self.wait(self.write(self.client.servers.power_off, server), "powering server %s off" % server.name)
                break
            time.sleep(interval)
            interval = min(interval * 2, 5.0)

    def change_type(self, server):
        action = self.write(self.client.servers.change_type, server, ServerType(name=self.params["server_type"]),
                            upgrade_disk=False)
        self.wait(action, "changing the type of server %s" % server.name)

    def set_firewalls(self, server, add, remove):
        resource = [FirewallResource(type="server", server=server)]
        for ident in add:
            firewall = self.named("firewall", ident, required=True)
            self.api.wait_actions(self.write(self.client.firewalls.apply_to_resources, firewall, resource),
                                  self.deadline, "applying firewall %s" % firewall.name)
        for ident in remove:
            firewall = self.named("firewall", ident, required=True)
            self.api.wait_actions(self.write(self.client.firewalls.remove_from_resources, firewall, resource),
                                  self.deadline, "removing firewall %s" % firewall.name)

    def apply(self, steps, server, done):
        """Does the plan's actions in order, appending each to `done`; returns the server."""
        params = self.params
        for action in steps.actions:
            self.doing = action
            if action in ("delete", "recreate"):
                self.delete(server)
                server = None
            elif action == "create":
                server = self.create(steps)
            elif action == "attach_network":
                self.attach(server, steps.create.get("network") or params["network"],
                            steps.create.get("ip") if steps.create else params["ip"])
            elif action == "labels":
                self.write(self.client.servers.update, server, labels=steps.labels)
            elif action == "firewalls":
                self.set_firewalls(server, steps.firewalls_add, steps.firewalls_remove)
            elif action == "power_off":
                self.power_off(server)
            elif action == "change_type":
                self.change_type(server)
            elif action == "power_on":
                self.power_on(server)
            done.append(action)
        return server


def run(module, api, result):
    """Read, plan, apply. An answer that leaves open whether a write was done is never followed by the same
    write blindly: the server is read again and planned again (what the plan no longer asks was done)."""
    runner = Server(module, api)
    done = result["changes"]
    first = unsure = None
    for attempt in range(REREADS + 1):
        server = runner.get()
        current = view(server)
        steps = plan(module.params, current, runner.facts(server, current))
        if unsure is not None and unsure not in steps.actions:
            done.append(unsure)  # the write whose answer was lost had been done
        if first is None:
            first = steps
            result["server"] = current
            result["warnings_only"] = steps.warnings
            if steps.before is not None or steps.after is not None:
                result["diff"] = {"before": steps.before, "after": steps.after}
        if steps.error:
            extra = {"differences": steps.differences} if steps.differences else {}
            module.fail_json(msg=steps.error, **dict(result, **extra))
        if module.check_mode:
            done.extend(steps.actions)
            if not done:
                result.pop("diff", None)
            return
        try:
            server = runner.apply(steps, server, done)
        except HcloudFailure as failure:
            if not failure.ambiguous or attempt == REREADS:
                raise
            unsure = runner.doing
            module.warn("%s: the answer left open whether it was done; reading the server again (%s)"
                        % (failure.message, failure.code))
            continue
        result["server"] = view(runner.refresh(server)) if server is not None else None
        if not done:
            result.pop("diff", None)
        return


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
        owner_labels=dict(type="dict", default={"managed-by": "turnkey.cluster"}),
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
