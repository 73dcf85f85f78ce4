"""One model of Authentik's API (a `Kind`) and the ModelViewSet actions every kind shares.

A kind names its store key, URL, lookup, writable fields (with the defaults Authentik's model gives them),
references to other kinds (checked: `Invalid pk "x" - object does not exist.`), unique fields, filters and
a serializer that adds the read-only fields. `Call` (twin.py) hands each action the request and the state.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import errors, listing

if TYPE_CHECKING:
    from .twin import Call

Serializer = Callable[["Call", dict], dict]
Filter = Callable[["Call", dict, str], bool]


@dataclass
class Kind:
    key: str                      # the store's collection, e.g. "groups"
    path: str                     # e.g. "/core/groups/"
    param: str                    # the document's path parameter, e.g. "group_uuid"
    verbose: str                  # the model's name in 404s, e.g. "Group"
    fields: Callable[[], dict]    # the writable fields with their defaults (fresh values each call)
    serialize: Serializer
    required: tuple[str, ...] = ("name",)  # for create/update when no document checks them
    int_pk: bool = False
    lookup: str = "pk"            # the field the URL names ("slug" for applications and flows)
    ordering: tuple[str, ...] = ("name",)
    search: tuple[str, ...] = ("name",)
    exact: tuple[str, ...] = ("name",)  # query parameters that filter by equality on the same field
    filters: dict[str, Filter] = field(default_factory=dict)
    unique: dict[str, str] = field(default_factory=dict)  # field -> DRF's message
    refs: dict[str, str] = field(default_factory=dict)    # field -> the kind key it points to
    check: Callable[[Call, dict, dict | None], None] | None = None  # raise errors.invalid(...)
    after_write: Callable[[Call, dict, dict], None] | None = None  # (call, stored, body)
    before_delete: Callable[[Call, dict], None] | None = None
    read_only: bool = False       # list/retrieve only (write methods: 405)
    subtype: str | None = None    # kinds sharing a collection (providers) tell theirs apart by "_type"

    def all(self, data: dict) -> dict[str, dict]:
        """The whole collection (shared with the other subtypes)."""
        return data.setdefault(self.key, {})

    def items(self, data: dict) -> dict[str, dict]:
        objects = self.all(data)
        if self.subtype is None:
            return objects
        return {pk: obj for pk, obj in objects.items() if obj.get("_type") == self.subtype}


def new_pk(call: Call, kind: Kind) -> str:
    if not kind.int_pk:
        return str(uuid.uuid4())
    counters = call.data.setdefault("next_id", {})
    number = counters.get(kind.key, 1)
    counters[kind.key] = number + 1
    return str(number)


def find(call: Call, kind: Kind) -> dict:
    value = call.request.params[kind.param]
    objects = kind.items(call.data)
    if kind.lookup == "pk":
        found = objects.get(value.lower() if not kind.int_pk else value)
    else:
        found = next((o for o in objects.values() if o.get(kind.lookup) == value), None)
    if found is None:
        raise errors.not_found(kind.verbose)
    return found


def _same(a: object, b: object) -> bool:
    return str(a).lower() == str(b).lower()


def _check_refs(call: Call, kind: Kind, obj: dict, body: dict) -> None:
    problems: dict = {}
    for name, target in kind.refs.items():
        if name not in body or body[name] is None:
            continue
        values = body[name] if isinstance(body[name], list) else [body[name]]
        pool = {pk.lower() for pk in call.data.get(target, {})}
        for value in values:
            if str(value).lower() not in pool:
                problems[name] = [f'Invalid pk "{value}" - object does not exist.']
                break
    if problems:
        raise errors.invalid(problems)


def _check_unique(call: Call, kind: Kind, obj: dict) -> None:
    problems = {}
    for name, text in kind.unique.items():
        for other in kind.all(call.data).values():
            if other["pk"] != obj["pk"] and other.get(name) is not None and _same(other.get(name), obj.get(name)) \
                    and isinstance(obj.get(name), str) == isinstance(other.get(name), str):
                problems[name] = [text]
    if problems:
        raise errors.invalid(problems)


def _own_required(call: Call, kind: Kind, body: dict, partial: bool) -> None:
    """The twin's own check when no document is loaded: DRF's required fields and writable types."""
    if call.twin.checks is not None or partial:
        return
    missing = {name: ["This field is required."] for name in kind.required if name not in body}
    if missing:
        raise errors.invalid(missing)


def write(call: Call, kind: Kind, current: dict | None, partial: bool) -> dict:
    """Create (current None) or update an object from the request body; returns the stored object."""
    writable = kind.fields()
    body = {k: copy.deepcopy(v) for k, v in call.body.items() if k in writable}
    _own_required(call, kind, body, partial)
    obj = copy.deepcopy(current) if current else {"pk": new_pk(call, kind), **writable}
    if kind.subtype:
        obj["_type"] = kind.subtype
    obj.update(body)
    _check_refs(call, kind, obj, body)
    _check_unique(call, kind, obj)
    if kind.check:
        kind.check(call, obj, current)
    kind.all(call.data)[obj["pk"]] = obj
    if kind.after_write:
        kind.after_write(call, obj, body)
    return obj


# -- the actions ---------------------------------------------------------------------------------------
def list_(call: Call, kind: Kind) -> dict:
    items = [kind.serialize(call, o) for o in kind.items(call.data).values()]
    query = call.request.query
    for name in kind.exact:
        if name in query:
            items = [i for i in items if _matches(i.get(name), query[name])]
    for name, test in kind.filters.items():
        if name in query:
            items = [i for i in items if test(call, i, query[name])]
    if query.get("search"):
        items = listing.searched(items, query["search"], kind.search)
    items = listing.ordered(items, query.get("ordering", ""), kind.ordering)
    return listing.page(items, query)


def _matches(value: object, raw: str) -> bool:
    if isinstance(value, bool):
        return str(value).lower() == raw.lower() or {"1": True, "0": False}.get(raw) is value
    return value is not None and str(value) == raw


def create(call: Call, kind: Kind) -> tuple[int, dict]:
    return 201, kind.serialize(call, write(call, kind, None, partial=False))


def retrieve(call: Call, kind: Kind) -> tuple[int, dict]:
    return 200, kind.serialize(call, find(call, kind))


def update(call: Call, kind: Kind, partial: bool) -> tuple[int, dict]:
    return 200, kind.serialize(call, write(call, kind, find(call, kind), partial))


def destroy(call: Call, kind: Kind) -> tuple[int, None]:
    obj = find(call, kind)
    if kind.before_delete:
        kind.before_delete(call, obj)
    del kind.all(call.data)[obj["pk"]]
    forget(call, kind.key, obj["pk"])
    return 204, None


def forget(call: Call, key: str, pk: str) -> None:
    """Drop every reference to a deleted object: list entries go, single ones become null (Django's
    many-to-many removal and SET_NULL; the twin guesses SET_NULL where Authentik cascades)."""
    from .kinds import KINDS  # noqa: PLC0415 - the kinds import this module

    for kind in KINDS:
        for obj in kind.items(call.data).values():
            for name, target in kind.refs.items():
                value = obj.get(name)
                if target != key:
                    continue
                if isinstance(value, list):
                    obj[name] = [v for v in value if not _same(v, pk)]
                elif value is not None and _same(value, pk):
                    obj[name] = None
