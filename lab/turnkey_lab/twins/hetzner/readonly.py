"""Read-only routes: the catalogue (locations, server types) and `/actions`."""

from __future__ import annotations

from . import actions, catalog, common
from .errors import not_found


def _catalog(twin, plural: str, items: list[dict], singular: str) -> None:
    def one(call):
        found = catalog.lookup(items, call.id())
        if not found:
            raise not_found(singular.replace("_", " "), call.id())
        return common.ok({singular: found})

    twin.route("GET", f"/{plural}", lambda c: common.ok(common.listed(c, plural, [dict(i) for i in items])))
    twin.route("GET", f"/{plural}/{{id}}", one)


def _action(call) -> dict:
    action = call.data["actions"].get(str(call.id()))
    if action is None:
        raise not_found("action", call.id())
    return {"action": actions.view(action)}


def _actions(call) -> dict:
    pool = list(call.data["actions"].values())
    if call.query.get("id"):
        pool = [a for a in pool if str(a["id"]) == call.query["id"]]
    if call.query.get("status"):
        pool = [a for a in pool if a["status"] == call.query["status"]]
    return common.action_list(call, pool)


def register(twin) -> None:
    _catalog(twin, "locations", catalog.LOCATIONS, "location")
    _catalog(twin, "server_types", catalog.SERVER_TYPES, "server_type")
    twin.route("GET", "/actions", lambda c: common.ok(_actions(c)))
    twin.route("GET", "/actions/{id}", lambda c: common.ok(_action(c)))
