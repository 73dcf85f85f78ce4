"""Firewalls: rules, and what they apply to (servers, or every server a label selector matches)."""

from __future__ import annotations

import time

from . import actions, common, labels
from .errors import api_error, invalid_input


def _rules(rules: list[dict]) -> list[dict]:
    out = []
    for n, rule in enumerate(rules):
        if rule["protocol"] in ("tcp", "udp") and not rule.get("port"):
            raise invalid_input({f"rules.{n}.port": ["is required for tcp and udp"]})
        ips = "source_ips" if rule["direction"] == "in" else "destination_ips"
        if not rule.get(ips):
            raise invalid_input({f"rules.{n}.{ips}": ["is required for this direction"]})
        out.append({"description": rule.get("description"), "direction": rule["direction"],
                    "source_ips": list(rule.get("source_ips", [])),
                    "destination_ips": list(rule.get("destination_ips", [])), "protocol": rule["protocol"],
                    "port": rule.get("port")})
    return out


def _targets(data: dict, entry: dict) -> list[int]:
    if entry["type"] == "server":
        return [entry["server"]["id"]]
    match = labels.selector(entry["label_selector"]["selector"])
    return [s["id"] for s in data["servers"].values() if match(s["labels"])]


def view(data: dict, firewall: dict) -> dict:
    applied = []
    for entry in firewall["applied_to"]:
        shown = dict(entry)
        if entry["type"] == "label_selector":
            shown["applied_to_resources"] = [{"type": "server", "server": {"id": i}} for i in _targets(data, entry)]
        applied.append(shown)
    return {"id": firewall["id"], "name": firewall["name"], "labels": dict(firewall["labels"]),
            "created": firewall["created"], "rules": firewall["rules"], "applied_to": applied}


def for_server(data: dict, server: dict) -> list[dict]:
    """`public_net.firewalls` of a server: every firewall reaching it directly or by selector."""
    return [{"id": f["id"], "status": "applied"} for f in data["firewalls"].values()
            if any(server["id"] in _targets(data, entry) for entry in f["applied_to"])]


def _entry(data: dict, spec: dict) -> dict:
    if spec["type"] == "server":
        if not spec.get("server"):
            raise invalid_input({"apply_to.server": ["is required for type server"]})
        if str(spec["server"]["id"]) not in data["servers"]:
            raise api_error("firewall_resource_not_found", f"server {spec['server']['id']} not found", status=404)
        return {"type": "server", "server": {"id": spec["server"]["id"]}}
    selector = (spec.get("label_selector") or {}).get("selector")
    try:
        labels.selector(selector or "")
    except ValueError as exc:
        raise invalid_input({"apply_to.label_selector.selector": [str(exc)]}) from None
    if not selector:
        raise invalid_input({"apply_to.label_selector": ["is required for type label_selector"]})
    return {"type": "label_selector", "label_selector": {"selector": selector}}


def apply(firewall: dict, entry: dict) -> None:
    if entry in firewall["applied_to"]:
        raise api_error("firewall_already_applied", "firewall is already applied to this resource")
    firewall["applied_to"].append(entry)


def _start(call, firewall: dict, command: str, entries: list[dict]) -> dict:
    servers = [(i, "server") for e in entries for i in _targets(call.data, e)]
    return call.start(command, [(firewall["id"], "firewall"), *servers], operation="firewall")


def create(call) -> dict:
    body, data = call.body, call.data
    common.require(body, "name")
    common.unique_name(data, "firewalls", body["name"], "firewall")
    entries = [_entry(data, spec) for spec in body.get("apply_to", [])]
    ident = actions.new_id(data, "firewall", 5000001)
    firewall = {"id": ident, "name": body["name"], "labels": common.checked_labels(body.get("labels")),
                "created": actions.iso(time.time()), "rules": _rules(body.get("rules", [])), "applied_to": []}
    for entry in entries:
        apply(firewall, entry)
    data["firewalls"][str(ident)] = firewall
    started = [_start(call, firewall, "set_firewall_rules", [])]
    if entries:
        started.append(_start(call, firewall, "apply_firewall", entries))
    return {"firewall": view(data, firewall), "actions": [actions.view(a) for a in started]}


def _one(call) -> dict:
    return common.get(call.data, "firewalls", call.id(), "firewall")


def set_rules(call) -> dict:
    common.require(call.body, "rules")
    firewall = _one(call)
    firewall["rules"] = _rules(call.body["rules"])
    return {"actions": [actions.view(_start(call, firewall, "set_firewall_rules", firewall["applied_to"]))]}


def apply_to(call) -> dict:
    common.require(call.body, "apply_to")
    firewall = _one(call)
    entries = [_entry(call.data, spec) for spec in call.body["apply_to"]]
    for entry in entries:
        apply(firewall, entry)
    return {"actions": [actions.view(_start(call, firewall, "apply_firewall", entries))]}


def remove_from(call) -> dict:
    common.require(call.body, "remove_from")
    firewall = _one(call)
    entries = [_entry(call.data, spec) for spec in call.body["remove_from"]]
    for entry in entries:
        if entry not in firewall["applied_to"]:
            raise api_error("firewall_already_removed", "firewall is not applied to this resource")
        firewall["applied_to"].remove(entry)
    return {"actions": [actions.view(_start(call, firewall, "remove_firewall", entries))]}


def update(call) -> dict:
    firewall = _one(call)
    common.rename_and_relabel(call, "firewalls", firewall, "firewall")
    return {"firewall": view(call.data, firewall)}


def delete(call) -> None:
    firewall = _one(call)
    if firewall["applied_to"]:
        raise api_error("resource_in_use", "firewall is still applied to a resource")
    del call.data["firewalls"][str(firewall["id"])]


def register(twin) -> None:
    twin.route("GET", "/firewalls", lambda c: common.ok(common.listed(
        c, "firewalls", [view(c.data, f) for f in c.data["firewalls"].values()])))
    twin.route("POST", "/firewalls", lambda c: common.ok(create(c), 201))
    twin.route("GET", "/firewalls/{id}", lambda c: common.ok({"firewall": view(c.data, _one(c))}))
    twin.route("PUT", "/firewalls/{id}", lambda c: common.ok(update(c)))
    twin.route("DELETE", "/firewalls/{id}", lambda c: common.ok(delete(c), 204))
    twin.route("POST", "/firewalls/{id}/actions/set_rules", lambda c: common.ok(set_rules(c), 201))
    twin.route("POST", "/firewalls/{id}/actions/apply_to_resources", lambda c: common.ok(apply_to(c), 201))
    twin.route("POST", "/firewalls/{id}/actions/remove_from_resources", lambda c: common.ok(remove_from(c), 201))
    common.action_routes(twin, "firewalls", "firewall")
