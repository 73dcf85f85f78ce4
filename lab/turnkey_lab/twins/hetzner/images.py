"""Images: the system catalogue plus snapshots made with `create_image` (status creating -> available)."""

from __future__ import annotations

import time

from . import actions, catalog, common
from .validate import GO_BOOLEANS


def _snapshot_view(image: dict) -> dict:
    return {k: v for k, v in image.items() if not k.startswith("_")}


def find(data: dict, id_or_name: object) -> dict | None:
    """A system image by ID or name, or a snapshot by ID (snapshots have no name)."""
    found = catalog.lookup(catalog.SYSTEM_IMAGES, id_or_name)
    if found:
        return found
    image = data["images"].get(str(id_or_name))
    return _snapshot_view(image) if image else None


def view_of(data: dict, ident: int | None) -> dict | None:
    return find(data, ident) if ident is not None else None


def _all(data: dict) -> list[dict]:
    return [dict(i) for i in catalog.SYSTEM_IMAGES] + [_snapshot_view(i) for i in data["images"].values()]


def _filtered(call) -> list[dict]:
    query, items = call.query, _all(call.data)
    for field in ("type", "status", "architecture"):
        if query.get(field):
            items = [i for i in items if i[field] == query[field]]
    if query.get("bound_to"):
        items = [i for i in items if str(i["bound_to"]) == query["bound_to"]]
    if not GO_BOOLEANS.get(query.get("include_deprecated", "false"), False):
        items = [i for i in items if not i["deprecated"]]
    return items


def create_from(call, server: dict) -> dict:
    """POST /servers/{id}/actions/create_image: the image exists at once, `creating` until the action ends."""
    common.unlocked(call.data, "server", server["id"], "server")
    labels = common.checked_labels(call.body.get("labels"))
    source = find(call.data, server["image"]) or {}
    ident = actions.new_id(call.data, "image", 300000001)
    image = {"id": ident, "type": call.body.get("type", "snapshot"), "status": "creating", "name": None,
             "description": call.body.get("description", f"{server['name']} snapshot"),
             "image_size": None, "disk_size": server["primary_disk_size"], "created": actions.iso(time.time()),
             "created_from": {"id": server["id"], "name": server["name"]},
             "bound_to": server["id"] if call.body.get("type") == "backup" else None,
             "os_flavor": source.get("os_flavor", "unknown"), "os_version": source.get("os_version"),
             "rapid_deploy": False, "protection": {"delete": False}, "deprecated": None, "deleted": None,
             "labels": labels, "architecture": "x86"}
    call.data["images"][str(ident)] = image
    action = call.start("create_image", [(server["id"], "server"), (ident, "image")], "image_available")
    return {"image": _snapshot_view(image), "action": actions.view(action)}


def _available(data, action):
    ident = next(r["id"] for r in action["resources"] if r["type"] == "image")
    image = data["images"].get(str(ident))
    if image is None:
        return ("image_deleted", "the image was deleted")
    image.update(status="available", image_size=round(image["disk_size"] * 0.03, 2))
    return None


def _snapshot(call) -> dict:
    ident = call.id()
    if catalog.lookup(catalog.SYSTEM_IMAGES, ident):
        return dict(catalog.lookup(catalog.SYSTEM_IMAGES, ident))
    return _snapshot_view(common.get(call.data, "images", ident, "image"))


def update(call) -> dict:
    image = common.get(call.data, "images", call.id(), "image")
    if "labels" in call.body:
        image["labels"] = common.checked_labels(call.body["labels"])
    for field in ("description", "type"):
        if field in call.body:
            image[field] = call.body[field]
    return {"image": _snapshot_view(image)}


def delete(call) -> None:
    image = common.get(call.data, "images", call.id(), "image")
    common.unlocked(call.data, "image", image["id"], "image")
    del call.data["images"][str(image["id"])]


def register(twin) -> None:
    twin.route("GET", "/images", lambda c: common.ok(common.listed(c, "images", _filtered(c))))
    twin.route("GET", "/images/{id}", lambda c: common.ok({"image": _snapshot(c)}))
    twin.route("PUT", "/images/{id}", lambda c: common.ok(update(c)))
    twin.route("DELETE", "/images/{id}", lambda c: common.ok(delete(c), 204))
    common.action_routes(twin, "images", "image")
    twin.effects["image_available"] = _available
