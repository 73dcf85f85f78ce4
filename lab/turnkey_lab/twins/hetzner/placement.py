"""Placement groups (type `spread`: at most 10 servers, each on another host)."""

from __future__ import annotations

import time

from . import actions, common
from .errors import api_error

SPREAD_MAX = 10


def _members(data: dict, ident: int) -> list[int]:
    return [s["id"] for s in data["servers"].values() if s.get("placement_group") == ident]


def view(data: dict, group: dict) -> dict:
    return {**group, "servers": _members(data, group["id"])}


def view_of(data: dict, ident: int | None) -> dict | None:
    group = data["placement_groups"].get(str(ident)) if ident is not None else None
    return view(data, group) if group else None


def check_room(data: dict, group: dict) -> None:
    if len(_members(data, group["id"])) >= SPREAD_MAX:
        raise api_error("placement_error", f"placement group {group['name']} already has {SPREAD_MAX} servers")


def create(call) -> dict:
    common.require(call.body, "name", "type")
    common.unique_name(call.data, "placement_groups", call.body["name"], "placement group")
    ident = actions.new_id(call.data, "placement_group", 6000001)
    group = {"id": ident, "name": call.body["name"], "labels": common.checked_labels(call.body.get("labels")),
             "type": call.body["type"], "created": actions.iso(time.time())}
    call.data["placement_groups"][str(ident)] = group
    return {"placement_group": view(call.data, group), "action": None}


def _one(call) -> dict:
    return common.get(call.data, "placement_groups", call.id(), "placement group")


def update(call) -> dict:
    group = _one(call)
    common.rename_and_relabel(call, "placement_groups", group, "placement group")
    return {"placement_group": view(call.data, group)}


def delete(call) -> None:
    group = _one(call)
    if _members(call.data, group["id"]):
        raise api_error("resource_in_use", "placement group still has servers")
    del call.data["placement_groups"][str(group["id"])]


def register(twin) -> None:
    twin.route("GET", "/placement_groups", lambda c: common.ok(common.listed(
        c, "placement_groups", [view(c.data, g) for g in c.data["placement_groups"].values()
                                if not c.query.get("type") or g["type"] == c.query["type"]])))
    twin.route("POST", "/placement_groups", lambda c: common.ok(create(c), 201))
    twin.route("GET", "/placement_groups/{id}", lambda c: common.ok({"placement_group": view(c.data, _one(c))}))
    twin.route("PUT", "/placement_groups/{id}", lambda c: common.ok(update(c)))
    twin.route("DELETE", "/placement_groups/{id}", lambda c: common.ok(delete(c), 204))
