"""List endpoints: `name` and `label_selector` filters, `sort`, and Hetzner's page/per_page pagination."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from . import labels
from .errors import invalid_input

PER_PAGE_DEFAULT = 25
PER_PAGE_MAX = 50


def _int(query: dict, name: str, default: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise invalid_input({name: ["must be an integer"]}) from None
    if value < 1:
        raise invalid_input({name: ["must be at least 1"]})
    return value


def filtered(items: list[dict], query: dict) -> list[dict]:
    """Apply `name` and `label_selector` (sorting by `sort`, default id ascending)."""
    if "name" in query:
        items = [item for item in items if item.get("name") == query["name"]]
    if query.get("label_selector"):
        try:
            match = labels.selector(query["label_selector"])
        except ValueError as exc:
            raise invalid_input({"label_selector": [str(exc)]}) from None
        items = [item for item in items if match(item.get("labels") or {})]
    field, _, direction = (query.get("sort") or "id").partition(":")
    return sorted(items, key=lambda item: (item.get(field) is None, item.get(field)), reverse=direction == "desc")


def page(items: list[dict], query: dict, url: str) -> tuple[list[dict], dict, str]:
    """(this page's items, the `meta` object, the `Link` header)."""
    number = _int(query, "page", 1)
    # Hetzner caps per_page at 50 rather than refusing larger values.
    per_page = min(_int(query, "per_page", PER_PAGE_DEFAULT), PER_PAGE_MAX)
    total = len(items)
    last = max(1, math.ceil(total / per_page))
    chunk = items[(number - 1) * per_page:number * per_page]
    meta = {"pagination": {"page": number, "per_page": per_page,
                           "previous_page": number - 1 if number > 1 else None,
                           "next_page": number + 1 if number < last else None,
                           "last_page": last, "total_entries": total}}
    rest = {k: v for k, v in query.items() if k not in ("page", "per_page")}
    links = []
    for rel, target in (("prev", meta["pagination"]["previous_page"]), ("next", meta["pagination"]["next_page"]),
                        ("last", last)):
        if target:
            links.append(f'<{url}?{urlencode({**rest, "page": target, "per_page": per_page})}>; rel="{rel}"')
    return chunk, meta, ", ".join(links)
