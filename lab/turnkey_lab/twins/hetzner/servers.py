"""Servers: create/get/list/update/delete, and their actions (power, rescue, snapshot, type, network)."""

from __future__ import annotations

import re
import secrets
import time

from . import actions, catalog, common, firewalls, images, networks, placement
from .errors import api_error, invalid_input

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,63}}$){_LABEL}(\.{_LABEL})*$")
USER_DATA_MAX = 32 * 1024


def view(data: dict, server: dict) -> dict:
    n = server["id"]
    return {
        "id": n, "name": server["name"], "status": server["status"], "created": server["created"],
        "public_net": {
            # Documentation ranges (RFC 5737 / 3849): never routable, obviously fake.
            "ipv4": {"id": n, "ip": f"203.0.113.{n % 250 + 1}", "blocked": False,
                     "dns_ptr": f"static.{n % 250 + 1}.113.0.203.clients.your-server.de"},
            "ipv6": {"id": n + 1, "ip": f"2001:db8:{n:x}::/64", "blocked": False, "dns_ptr": []},
            "floating_ips": [], "firewalls": firewalls.for_server(data, server)},
        "private_net": [dict(net) for net in server["private_net"]],
        "server_type": catalog.lookup(catalog.SERVER_TYPES, server["server_type"]),
        "location": catalog.lookup(catalog.LOCATIONS, server["location"]),
        "image": images.view_of(data, server["image"]),
        "iso": None, "rescue_enabled": server["rescue_enabled"],
        "locked": bool(actions.running_on(data, "server", n)), "backup_window": None,
        "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21990232555520,
        "protection": {"delete": False, "rebuild": False}, "labels": dict(server["labels"]), "volumes": [],
        "load_balancers": [], "primary_disk_size": server["primary_disk_size"],
        "placement_group": placement.view_of(data, server.get("placement_group")),
    }


def _one(call, ident: int | None = None) -> dict:
    return common.get(call.data, "servers", call.id() if ident is None else ident, "server")


def create(call):
    body, data = call.body, call.data
    common.require(body, "name", "server_type", "image")
    if not _HOSTNAME.match(body["name"]):
        raise invalid_input({"name": ["must be a valid hostname (RFC 1123)"]})
    common.unique_name(data, "servers", body["name"], "server")
    server_type = catalog.lookup(catalog.SERVER_TYPES, body["server_type"])
    if not server_type:
        raise invalid_input({"server_type": ["server type not found"]})
    location = catalog.lookup(catalog.LOCATIONS, body.get("location", "fsn1"))
    if not location:
        raise invalid_input({"location": ["location not found"]})
    image = images.find(data, body["image"])
    if not image or image["status"] != "available":
        raise invalid_input({"image": ["image not found or not available"]})
    if len(body.get("user_data", "").encode()) > USER_DATA_MAX:
        raise invalid_input({"user_data": ["is too long (32 KiB at most)"]})
    labels = common.checked_labels(body.get("labels"))
    nets = [common.get(data, "networks", n, "network") for n in body.get("networks", [])]
    walls = [common.get(data, "firewalls", f["firewall"], "firewall") for f in body.get("firewalls", [])]
    group = body.get("placement_group")
    if group is not None:
        placement.check_room(data, common.get(data, "placement_groups", group, "placement group"))
    ident = actions.new_id(data, "server", 10000001)
    server = {"id": ident, "name": body["name"], "status": "initializing", "created": actions.iso(time.time()),
              "server_type": server_type["name"], "location": location["name"], "image": image["id"],
              "labels": labels, "private_net": [], "rescue_enabled": False, "placement_group": group,
              "primary_disk_size": server_type["disk"], "user_data": body.get("user_data")}
    data["servers"][str(ident)] = server
    for net in nets:
        networks.attach(data, server, net, None, [])
    for wall in walls:
        firewalls.apply(wall, {"type": "server", "server": {"id": ident}})
    stuck = call.twin.faults.take("stuck_initializing", server["name"])
    create_action = call.start("create_server", [(ident, "server")], "server_created")
    if stuck:
        create_action["_due"] = None
    follow = []
    if body.get("start_after_create", True):
        follow.append(call.start("start_server", [(ident, "server")], "server_running", after=create_action))
    server["_start_after"] = bool(follow)
    # Hetzner returns a root password only when no SSH key is given.
    password = None if body.get("ssh_keys") else secrets.token_urlsafe(15)
    return {"server": view(data, server), "action": actions.view(create_action),
            "next_actions": [actions.view(a) for a in follow], "root_password": password}


def _created(data, action):
    server = data["servers"].get(str(action["resources"][0]["id"]))
    if server is None:
        return ("server_deleted", "the server was deleted")
    server["status"] = "starting" if server.pop("_start_after", False) else "off"
    return None


def _status_effect(status: str):
    def effect(data, action):
        server = data["servers"].get(str(action["resources"][0]["id"]))
        if server is None:
            return ("server_deleted", "the server was deleted")
        server["status"] = status
        return None
    return effect


def _power(command: str, operation: str, during: str | None, after: str, need: tuple[str, ...]):
    """An action route: refuse when locked; no-op success when already in the target state."""
    def handler(call):
        server = _one(call)
        common.unlocked(call.data, "server", server["id"], "server")
        if server["status"] not in need:
            action = actions.start(call.data, command, [(server["id"], "server")], 0.0)  # already there
        else:
            if during:
                server["status"] = during
            action = call.start(command, [(server["id"], "server")], f"status:{after}", operation=operation)
        return common.ok({"action": actions.view(action)}, 201)
    return handler


def update(call):
    server = _one(call)
    if "name" in call.body and not _HOSTNAME.match(call.body["name"]):
        raise invalid_input({"name": ["must be a valid hostname (RFC 1123)"]})
    common.rename_and_relabel(call, "servers", server, "server")
    return {"server": view(call.data, server)}


def delete(call):
    server = _one(call)
    server["status"] = "deleting"
    return {"action": actions.view(call.start("delete_server", [(server["id"], "server")], "server_deleted"))}


def _deleted(data, action):
    ident = action["resources"][0]["id"]
    data["servers"].pop(str(ident), None)
    # As the API does: a deleted server is no longer among the resources a firewall is applied to.
    for firewall in data["firewalls"].values():
        firewall["applied_to"] = [entry for entry in firewall["applied_to"]
                                  if not (entry["type"] == "server" and entry["server"]["id"] == ident)]
    return None


def rescue(enable: bool):
    def handler(call):
        server = _one(call)
        common.unlocked(call.data, "server", server["id"], "server")
        command = "enable_rescue" if enable else "disable_rescue"
        action = call.start(command, [(server["id"], "server")], "rescue_on" if enable else "rescue_off")
        answer = {"action": actions.view(action)}
        if enable:
            answer["root_password"] = secrets.token_urlsafe(15)
        return common.ok(answer, 201)
    return handler


def _rescue(value: bool):
    def effect(data, action):
        server = data["servers"].get(str(action["resources"][0]["id"]))
        if server is not None:
            server["rescue_enabled"] = value
        return None
    return effect


def change_type(call):
    common.require(call.body, "server_type", "upgrade_disk")
    server = _one(call)
    common.unlocked(call.data, "server", server["id"], "server")
    if server["status"] != "off":
        raise api_error("server_not_stopped", "server must be stopped before changing its type")
    target = catalog.lookup(catalog.SERVER_TYPES, call.body["server_type"])
    if not target or target["name"] == server["server_type"] or target["disk"] < server["primary_disk_size"]:
        raise api_error("invalid_server_type", "the server type does not fit this server")
    server["_new_type"] = [target["name"], bool(call.body["upgrade_disk"])]
    action = call.start("change_server_type", [(server["id"], "server")], "type_changed")
    return {"action": actions.view(action)}


def _type_changed(data, action):
    server = data["servers"].get(str(action["resources"][0]["id"]))
    if server is None:
        return ("server_deleted", "the server was deleted")
    name, upgrade_disk = server.pop("_new_type")
    server["server_type"] = name
    if upgrade_disk:
        server["primary_disk_size"] = catalog.lookup(catalog.SERVER_TYPES, name)["disk"]
    return None


def attach(call):
    common.require(call.body, "network")
    server = _one(call)
    common.unlocked(call.data, "server", server["id"], "server")
    network = common.get(call.data, "networks", call.body["network"], "network")
    networks.attach(call.data, server, network, call.body.get("ip"), call.body.get("alias_ips", []))
    action = call.start("attach_to_network", [(server["id"], "server"), (network["id"], "network")])
    return {"action": actions.view(action)}


def detach(call):
    common.require(call.body, "network")
    server = _one(call)
    common.unlocked(call.data, "server", server["id"], "server")
    network = common.get(call.data, "networks", call.body["network"], "network")
    networks.detach(server, network["id"])
    action = call.start("detach_from_network", [(server["id"], "server"), (network["id"], "network")])
    return {"action": actions.view(action)}


def register(twin) -> None:
    twin.route("GET", "/servers", lambda c: common.ok(common.listed(
        c, "servers", [view(c.data, s) for s in _filtered_status(c, c.data["servers"].values())])))
    twin.route("POST", "/servers", lambda c: common.ok(create(c), 201))
    twin.route("GET", "/servers/{id}", lambda c: common.ok({"server": view(c.data, _one(c))}))
    twin.route("PUT", "/servers/{id}", lambda c: common.ok(update(c)))
    twin.route("DELETE", "/servers/{id}", lambda c: common.ok(delete(c)))
    power = {
        "poweron": ("start_server", "start_server", "starting", "running", ("off",)),
        "poweroff": ("stop_server", "stop_server", None, "off", ("running", "starting", "stopping")),
        "shutdown": ("shutdown_server", "shutdown_server", "stopping", "off", ("running",)),
        "reboot": ("reboot_server", "reboot_server", None, "running", ("running",)),
        "reset": ("reset_server", "reset_server", None, "running", ("running",)),
    }
    for name, (command, operation, during, after, need) in power.items():
        twin.route("POST", f"/servers/{{id}}/actions/{name}", _power(command, operation, during, after, need))
    twin.route("POST", "/servers/{id}/actions/enable_rescue", rescue(True))
    twin.route("POST", "/servers/{id}/actions/disable_rescue", rescue(False))
    twin.route("POST", "/servers/{id}/actions/create_image", lambda c: common.ok(images.create_from(c, _one(c)), 201))
    twin.route("POST", "/servers/{id}/actions/change_type", lambda c: common.ok(change_type(c), 201))
    twin.route("POST", "/servers/{id}/actions/attach_to_network", lambda c: common.ok(attach(c), 201))
    twin.route("POST", "/servers/{id}/actions/detach_from_network", lambda c: common.ok(detach(c), 201))
    common.action_routes(twin, "servers", "server")
    twin.effects.update({
        "server_created": _created, "server_running": _status_effect("running"), "server_deleted": _deleted,
        "status:running": _status_effect("running"), "status:off": _status_effect("off"),
        "rescue_on": _rescue(True), "rescue_off": _rescue(False), "type_changed": _type_changed,
    })


def _filtered_status(call, servers):
    wanted = call.query.get("status")
    return [s for s in servers if not wanted or s["status"] == wanted]

