"""Labels: the key/value rules Hetzner enforces, and its label selector language.

Selector terms, comma separated (all must hold): `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
`k notin (a,b)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"^([a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_SET = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_CMP = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^=!\s]*)$")

Predicate = Callable[[dict], bool]


def problems(labels: object) -> list[str]:
    """Why a labels object is refused (empty list: fine)."""
    if not isinstance(labels, dict):
        return ["must be an object"]
    found = []
    for key, value in labels.items():
        if not _KEY.match(key) or len(key) > 317:
            found.append(f"label key '{key}' is invalid")
        elif key.startswith("hetzner.cloud/"):
            found.append(f"label key '{key}' uses the reserved prefix hetzner.cloud/")
        if not isinstance(value, str) or not _VALUE.match(value):
            found.append(f"label value '{value}' of '{key}' is invalid")
    return found


def _split(selector: str) -> list[str]:
    """Top-level commas only: the ones inside `in (a,b)` belong to the term."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return terms


def _checked(key: str, *values: str) -> None:
    if not _KEY.match(key) or not all(_VALUE.match(v) for v in values):
        raise ValueError(f"invalid label selector term with key '{key}'")


def _term(text: str) -> Predicate:
    if match := _SET.match(text):
        key, values = match["key"], {v.strip() for v in match["values"].split(",") if v.strip()}
        _checked(key, *values)
        if match["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _CMP.match(text):
        key, value = match["key"], match["value"]
        _checked(key, value)
        if match["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if text.startswith("!") and _KEY.match(text[1:].strip()):
        key = text[1:].strip()
        return lambda labels: key not in labels
    if _KEY.match(text):
        return lambda labels: text in labels
    raise ValueError(f"invalid label selector term '{text}'")


def selector(text: str) -> Predicate:
    """A predicate over a labels dict; ValueError for a malformed selector."""
    if not text.strip():
        return lambda labels: True
    checks = [_term(term) for term in _split(text)]
    return lambda labels: all(check(labels) for check in checks)
