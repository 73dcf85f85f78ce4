"""List endpoints as Authentik answers them: filters, `search`, `ordering` and its `pagination` object."""

from __future__ import annotations

import math

from . import errors

PAGE_SIZE = 100  # REST_FRAMEWORK["PAGE_SIZE"] in Authentik's settings


def _key(value: object) -> tuple:
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value).lower() if isinstance(value, str) else str(value))


def ordered(items: list[dict], ordering: str, default: tuple[str, ...]) -> list[dict]:
    """`ordering=-name,slug` (fields of the serialized objects); unknown fields are ignored, as DRF does."""
    fields = [f.strip() for f in ordering.split(",") if f.strip()] if ordering else list(default)
    for name in reversed(fields):
        reverse = name.startswith("-")
        name = name.lstrip("-")
        if items and name not in items[0]:
            continue
        items = sorted(items, key=lambda item, n=name: _key(item.get(n)), reverse=reverse)
    return items


def searched(items: list[dict], term: str, fields: tuple[str, ...]) -> list[dict]:
    """DRF's SearchFilter: every word of the term in some field (case-insensitive)."""
    for word in term.split():
        word = word.lower()
        items = [item for item in items if any(word in str(item.get(f) or "").lower() for f in fields)]
    return items


def _positive(query: dict, name: str, default: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        value = 0
    return value if value > 0 else default


def page(items: list[dict], query: dict) -> dict:
    """{"pagination": {...}, "results": [...], "autocomplete": {}} for `page`/`page_size`."""
    size = _positive(query, "page_size", PAGE_SIZE)
    count = len(items)
    pages = max(1, math.ceil(count / size))
    try:
        number = int(query.get("page", 1))
    except ValueError:
        number = 0
    if query.get("page") == "last":
        number = pages
    if not 1 <= number <= pages:
        raise errors.detail(404, "Invalid page.")
    chunk = items[(number - 1) * size:number * size]
    start = (number - 1) * size + 1 if chunk else 0
    return {"pagination": {"next": number + 1 if number < pages else 0,
                           "previous": number - 1 if number > 1 else 0,
                           "count": count, "current": number, "total_pages": pages,
                           "start_index": start, "end_index": start + len(chunk) - 1 if chunk else 0},
            "results": chunk, "autocomplete": {}}
