"""Helpers the resource modules share: lookups, uniqueness, labels, locks and list answers."""

from __future__ import annotations

from ..base import Response
from . import actions, labels, listing
from .errors import api_error, invalid_input, not_found


def ok(body: object, status: int = 200) -> Response:
    return Response.json(body, status=status) if body is not None else Response(status)


def require(body: dict, *fields: str) -> None:
    """Required fields, checked even when the twin runs without the document."""
    missing = {field: ["is required"] for field in fields if body.get(field) is None}
    if missing:
        raise invalid_input(missing)


def get(data: dict, kind: str, ident: int, what: str) -> dict:
    record = data[kind].get(str(ident))
    if record is None:
        raise not_found(what, ident)
    return record


def unique_name(data: dict, kind: str, name: str, what: str, ignore: int | None = None) -> None:
    for record in data[kind].values():
        if record.get("name") == name and record["id"] != ignore:
            raise api_error("uniqueness_error", f"{what} name is already used",
                            {"fields": [{"name": "name", "messages": ["is already used"]}]})


def checked_labels(value: object, field: str = "labels") -> dict:
    if value is None:
        return {}
    found = labels.problems(value)
    if found:
        raise invalid_input({field: found})
    return dict(value)


def rename_and_relabel(call, kind: str, resource: dict, what: str) -> None:
    """The update every resource shares: a unique new name and a new label set, each only when given."""
    if "name" in call.body:
        unique_name(call.data, kind, call.body["name"], what, ignore=resource["id"])
        resource["name"] = call.body["name"]
    if "labels" in call.body:
        resource["labels"] = checked_labels(call.body["labels"])


def unlocked(data: dict, kind: str, ident: int, what: str) -> None:
    """Hetzner refuses a new action while another runs on the resource (423 locked)."""
    if actions.running_on(data, kind, ident):
        raise api_error("locked", f"{what} {ident} is locked (another action is running)")


def listed(call, key: str, items: list[dict]) -> dict:
    """The list answer: filtered, sorted, one page, with `meta.pagination` (and the Link header)."""
    host = call.request.headers.get("host", "localhost")
    base = f"https://{host}{call.twin.prefix}/{call.request.path.strip('/')}"
    rows, meta, link = listing.page(listing.filtered(items, call.query), call.query, base)
    if link:
        call.request.context["link"] = link
    return {key: rows, "meta": meta}


def action_list(call, records: list[dict]) -> dict:
    return listed(call, "actions", [actions.view(a) for a in records])


def action_routes(twin, plural: str, kind: str) -> None:
    """`/{plural}/actions[/{id}]` and `/{plural}/{id}/actions[/{action_id}]` for one resource kind."""
    def of_kind(call) -> list[dict]:
        return [a for a in call.data["actions"].values() if any(r["type"] == kind for r in a["resources"])]

    def one(call, ident: int, pool: list[dict]) -> dict:
        for action in pool:
            if action["id"] == ident:
                return actions.view(action)
        raise not_found("action", ident)

    twin.route("GET", f"/{plural}/actions", lambda c: ok(action_list(c, of_kind(c))))
    twin.route("GET", f"/{plural}/actions/{{id}}", lambda c: ok({"action": one(c, c.id(), of_kind(c))}))
    twin.route("GET", f"/{plural}/{{id}}/actions", lambda c: ok(action_list(
        c, actions.running_on(c.data, kind, get(c.data, plural, c.id(), kind)["id"], every=True))))
    twin.route("GET", f"/{plural}/{{id}}/actions/{{action_id}}", lambda c: ok({"action": one(
        c, c.id("action_id"), actions.running_on(c.data, kind, get(c.data, plural, c.id(), kind)["id"],
                                                 every=True))}))
