"""Scope mappings' Python expressions, run the way Authentik runs property mappings.

Authentik wraps an expression's body in `def handler(<context names>):` and calls it with its context
(`request`, `user`, `provider`, `token`, helpers such as `ak_is_group_member`). The twin does the same,
with builtins cut down to harmless ones, and a user object that offers what expressions commonly read:
username, name, email, pk, uid, uuid, is_active, is_superuser, attributes, groups/ak_groups (`.all()`,
`.filter(name=...)`, iteration), group_attributes(), app_entitlements(). docs/lab.md lists the guesses.
"""

from __future__ import annotations

import textwrap
from typing import Any

SAFE_BUILTINS = {name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)
                 for name in ("abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "int", "isinstance",
                              "len", "list", "map", "max", "min", "range", "reversed", "set", "sorted", "str",
                              "sum", "tuple", "zip", "True", "False", "None", "ValueError", "KeyError",
                              "Exception", "hasattr", "getattr", "repr", "round", "frozenset", "print")}
CONTEXT = ("request", "user", "provider", "token", "scope", "ak_is_group_member", "ak_logger", "ak_message")


def wrap(expression: str) -> str:
    body = textwrap.indent(expression or "pass", "    ")
    return f"def handler({', '.join(CONTEXT)}):\n{body}\n"


def compile_expression(expression: str):
    """A code object; raises SyntaxError like Authentik's serializer check does."""
    return compile(wrap(expression), "scope mapping", "exec")


class Manager:
    """The bits of a Django related manager expressions use: all(), filter(), exists(), iteration."""

    def __init__(self, items: list):
        self._items = list(items)

    def all(self) -> Manager:
        return self

    def filter(self, **kwargs: Any) -> Manager:
        def ok(item) -> bool:
            for key, wanted in kwargs.items():
                name, _, op = key.partition("__")
                value = getattr(item, name, None)
                if op == "in" and value not in wanted:
                    return False
                if op in ("", "exact") and value != wanted:
                    return False
                if op == "iexact" and str(value).lower() != str(wanted).lower():
                    return False
            return True
        return Manager([item for item in self._items if ok(item)])

    def exists(self) -> bool:
        return bool(self._items)

    def count(self) -> int:
        return len(self._items)

    def first(self):
        return self._items[0] if self._items else None

    def values_list(self, field: str, flat: bool = False) -> list:
        return [getattr(item, field) for item in self._items]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Obj:
    """Attributes from a dict (a group, an application, a provider)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)

    def __str__(self) -> str:
        return str(getattr(self, "name", ""))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"


class Group(Obj):
    pass


class User(Obj):
    """`request.user` / `user`: the user's own fields, its groups (direct ones, like `ak_groups`)."""

    def __init__(self, values: dict, groups: list[dict], all_groups: list[dict]):
        super().__init__(values)
        self._groups = [Group(g) for g in groups]
        self._all = [Group(g) for g in all_groups]

    @property
    def ak_groups(self) -> Manager:
        return Manager(self._groups)

    @property
    def groups(self) -> Manager:
        return Manager(self._groups)

    def all_groups(self) -> Manager:
        return Manager(self._all)

    def group_attributes(self, request=None) -> dict:
        merged: dict = {}
        for group in self._all:
            merged.update(getattr(group, "attributes", {}) or {})
        return {**merged, **(getattr(self, "attributes", {}) or {})}

    def app_entitlements(self, app=None) -> Manager:
        return Manager([])

    @property
    def is_authenticated(self) -> bool:
        return True


class Request(Obj):
    pass


def evaluate(expression: str, user: User, provider: Obj | None, scope: list[str]) -> object:
    """The expression's return value (a dict for scope mappings)."""
    namespace: dict = {"__builtins__": SAFE_BUILTINS}
    exec(compile_expression(expression), namespace)  # noqa: S102 - a restricted namespace, like Authentik's exec
    groups = {g.name for g in user.all_groups()}
    context = {"request": Request({"user": user, "http_request": None, "context": {}}), "user": user,
               "provider": provider, "token": None, "scope": scope,
               "ak_is_group_member": lambda u, **kw: any(kw.get("name") == name for name in groups),
               "ak_logger": Obj({"info": print_nothing, "warning": print_nothing, "debug": print_nothing}),
               "ak_message": print_nothing}
    return namespace["handler"](*(context[name] for name in CONTEXT))


def print_nothing(*args: Any, **kwargs: Any) -> None:
    return None
