"""Networks and subnets, and the private IPs servers get in them.

Lab deviation: Hetzner only takes RFC 1918 ranges; the twin also takes loopback ones, since the lab's
nodes (Talos node twins) listen on 127.x addresses.
"""

from __future__ import annotations

import ipaddress
import time

from . import actions, common
from .errors import api_error, invalid_input


def _range(value: str, field: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(value)
    except ValueError:
        raise invalid_input({field: ["must be an IPv4 network in CIDR notation"]}) from None
    if not (net.is_private or net.is_loopback):
        raise invalid_input({field: ["must be a private (RFC 1918) range"]})
    return net


def _gateway(network: dict) -> str:
    return str(next(ipaddress.IPv4Network(network["ip_range"]).hosts()))


def _subnet(network: dict, spec: dict) -> dict:
    outer = ipaddress.IPv4Network(network["ip_range"])
    inner = _range(spec.get("ip_range") or str(outer), "ip_range")
    if not inner.subnet_of(outer):
        raise invalid_input({"ip_range": [f"must lie inside the network's {outer}"]})
    for existing in network["subnets"]:
        if inner.overlaps(ipaddress.IPv4Network(existing["ip_range"])):
            raise api_error("conflict", f"subnet {inner} overlaps {existing['ip_range']}", status=409)
    return {"type": spec["type"], "ip_range": str(inner), "network_zone": spec["network_zone"],
            "gateway": _gateway(network), "vswitch_id": spec.get("vswitch_id")}


def view(data: dict, network: dict) -> dict:
    servers = [s["id"] for s in data["servers"].values()
               if any(p["network"] == network["id"] for p in s["private_net"])]
    return {**{k: v for k, v in network.items() if not k.startswith("_")}, "servers": servers,
            "load_balancers": []}


def used_ips(data: dict, network_id: int) -> set[str]:
    return {ip for s in data["servers"].values() for p in s["private_net"] if p["network"] == network_id
            for ip in (p["ip"], *p["alias_ips"])}


def attach(data: dict, server: dict, network: dict, ip: str | None, alias_ips: list[str]) -> dict:
    """Give `server` an address in `network` (the one asked for, else the first free one)."""
    if any(p["network"] == network["id"] for p in server["private_net"]):
        raise api_error("server_already_attached", "server is already attached to this network")
    subnets = [ipaddress.IPv4Network(s["ip_range"]) for s in network["subnets"] if s["type"] in ("cloud", "server")]
    if not subnets:
        raise api_error("no_subnet_available", "the network has no subnet for servers")
    taken = used_ips(data, network["id"]) | {_gateway(network)}
    for wanted in (ip, *alias_ips):
        if wanted is None:
            continue
        try:
            address = ipaddress.IPv4Address(wanted)
        except ValueError:
            raise invalid_input({"ip": ["must be an IPv4 address"]}) from None
        if wanted in taken or not any(address in s and address not in (s.network_address, s.broadcast_address)
                                      for s in subnets):
            raise api_error("ip_not_available", f"IP {wanted} is not available in this network")
    if ip is None:
        ip = next((str(a) for s in subnets for a in s.hosts() if str(a) not in taken), None)
        if ip is None:
            raise api_error("no_subnet_available", "no free IP left in the network's subnets")
    entry = {"network": network["id"], "ip": ip, "alias_ips": list(alias_ips),
             "mac_address": "86:00:00:%02x:%02x:%02x" % ((server["id"] >> 16) & 255, (server["id"] >> 8) & 255,
                                                         server["id"] & 255)}
    server["private_net"].append(entry)
    return entry


def detach(server: dict, network_id: int) -> None:
    before = len(server["private_net"])
    server["private_net"] = [p for p in server["private_net"] if p["network"] != network_id]
    if len(server["private_net"]) == before:
        raise api_error("not_found", "server is not attached to this network", status=404)


def create(call) -> dict:
    body, data = call.body, call.data
    common.require(body, "name", "ip_range")
    common.unique_name(data, "networks", body["name"], "network")
    ip_range = _range(body["ip_range"], "ip_range")
    ident = actions.new_id(data, "network", 4000001)
    network = {"id": ident, "name": body["name"], "ip_range": str(ip_range), "subnets": [],
               "routes": list(body.get("routes", [])), "protection": {"delete": False},
               "labels": common.checked_labels(body.get("labels")), "created": actions.iso(time.time()),
               "expose_routes_to_vswitch": bool(body.get("expose_routes_to_vswitch", False))}
    for spec in body.get("subnets", []):
        network["subnets"].append(_subnet(network, spec))
    data["networks"][str(ident)] = network
    return {"network": view(data, network)}


def update(call) -> dict:
    network = common.get(call.data, "networks", call.id(), "network")
    common.rename_and_relabel(call, "networks", network, "network")
    if "expose_routes_to_vswitch" in call.body:
        network["expose_routes_to_vswitch"] = call.body["expose_routes_to_vswitch"]
    return {"network": view(call.data, network)}


def delete(call) -> None:
    network = common.get(call.data, "networks", call.id(), "network")
    if view(call.data, network)["servers"]:
        raise api_error("resource_in_use", "servers are still attached to the network")
    del call.data["networks"][str(network["id"])]


def add_subnet(call) -> dict:
    common.require(call.body, "type", "network_zone")
    network = common.get(call.data, "networks", call.id(), "network")
    common.unlocked(call.data, "network", network["id"], "network")
    network["subnets"].append(_subnet(network, call.body))
    return {"action": actions.view(call.start("add_subnet", [(network["id"], "network")], operation="network"))}


def register(twin) -> None:
    twin.route("GET", "/networks", lambda c: common.ok(common.listed(
        c, "networks", [view(c.data, n) for n in c.data["networks"].values()])))
    twin.route("POST", "/networks", lambda c: common.ok(create(c), 201))
    twin.route("GET", "/networks/{id}", lambda c: common.ok(
        {"network": view(c.data, common.get(c.data, "networks", c.id(), "network"))}))
    twin.route("PUT", "/networks/{id}", lambda c: common.ok(update(c)))
    twin.route("DELETE", "/networks/{id}", lambda c: common.ok(delete(c), 204))
    twin.route("POST", "/networks/{id}/actions/add_subnet", lambda c: common.ok(add_subnet(c), 201))
    common.action_routes(twin, "networks", "network")
