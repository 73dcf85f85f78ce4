"""core/groups and core/users: membership lives on the user (`groups`), a group's `users` is derived."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import TYPE_CHECKING

from . import errors
from .resources import Kind, find

if TYPE_CHECKING:
    from .twin import Call

AVATAR = "/static/dist/assets/images/user_default.png"


def _flag(call: Call, name: str, default: bool) -> bool:
    raw = call.request.query.get(name)
    return default if raw is None else raw.lower() in ("true", "1")


def num_pk(pk: str) -> int:
    """Authentik's int32 `num_pk` of a group (the twin's guess: the uuid's value modulo 2**31)."""
    return uuid.UUID(pk).int % 2**31


def members(data: dict, group_pk: str) -> list[dict]:
    return [u for u in data.get("users", {}).values() if group_pk in u.get("groups", [])]


def ancestors(data: dict, group_pks: list[str]) -> list[dict]:
    """The groups and all their parents (cycles are cut)."""
    groups, seen, todo = data.get("groups", {}), [], list(group_pks)
    while todo:
        pk = todo.pop()
        if pk in groups and groups[pk] not in seen:
            seen.append(groups[pk])
            todo.extend(groups[pk].get("parents", []))
    return seen


def is_superuser(data: dict, user: dict) -> bool:
    return any(g.get("is_superuser") for g in ancestors(data, user.get("groups", [])))


def uid(call: Call, user: dict) -> str:
    """Authentik's `uid`: sha256 of "<pk>-<install id>" (the default, hashed `sub` of OAuth2 providers)."""
    return hashlib.sha256(f"{user['pk']}-{call.twin.install_id}".encode()).hexdigest()


# -- groups ----------------------------------------------------------------------------------------------
def _group_fields() -> dict:
    return {"name": "", "is_superuser": False, "parents": [], "users": [], "attributes": {}, "roles": []}


def partial_group(group: dict) -> dict:
    return {"pk": group["pk"], "num_pk": num_pk(group["pk"]), "name": group["name"],
            "is_superuser": group["is_superuser"], "attributes": group["attributes"]}


def related_group(group: dict) -> dict:
    return {"pk": group["pk"], "name": group["name"], "is_superuser": group["is_superuser"],
            "attributes": group["attributes"], "group_uuid": group["pk"]}


def serialize_group(call: Call, group: dict) -> dict:
    data = call.data
    users = sorted(members(data, group["pk"]), key=lambda u: int(u["pk"]))
    children = [g for g in data.get("groups", {}).values() if group["pk"] in g.get("parents", [])]
    parents = [data["groups"][p] for p in group["parents"] if p in data.get("groups", {})]
    return {
        "pk": group["pk"], "num_pk": num_pk(group["pk"]), "name": group["name"],
        "is_superuser": group["is_superuser"], "parents": list(group["parents"]),
        "parents_obj": [related_group(g) for g in parents] if _flag(call, "include_parents", False) else None,
        "users": [int(u["pk"]) for u in users],
        "users_obj": [partial_user(call, u) for u in users] if _flag(call, "include_users", True) else None,
        "attributes": group["attributes"], "roles": [], "roles_obj": [],
        "inherited_roles_obj": [] if _flag(call, "include_inherited_roles", False) else None,
        "children": [g["pk"] for g in children],
        "children_obj": [related_group(g) for g in children] if _flag(call, "include_children", False) else None,
    }


def _group_written(call: Call, group: dict, body: dict) -> None:
    """`users` in a group's body sets its members (stored on the users)."""
    wanted = group.pop("users", None)
    if "users" not in body:
        return
    wanted = {str(pk) for pk in wanted or []}
    for user in call.data.get("users", {}).values():
        has = group["pk"] in user["groups"]
        if user["pk"] in wanted and not has:
            user["groups"].append(group["pk"])
        elif user["pk"] not in wanted and has:
            user["groups"].remove(group["pk"])


def _group_check(call: Call, group: dict, current: dict | None) -> None:
    if group["pk"] in group.get("parents", []):
        raise errors.field("parents", "Cannot set group as parent of itself.")
    group["parents"] = [p.lower() for p in group["parents"]]


def _by_member(call: Call, group: dict, raw: str, field: str) -> bool:
    return any(str(u.get(field)) == raw for u in members(call.data, group["pk"]))


GROUPS = Kind(
    key="groups", path="/core/groups/", param="group_uuid", verbose="Group", fields=_group_fields,
    serialize=serialize_group, search=("name", "is_superuser"),
    exact=("name", "is_superuser"),
    filters={"members_by_username": lambda call, g, raw: _by_member(call, g, raw, "username"),
             "members_by_pk": lambda call, g, raw: _by_member(call, g, raw, "pk")},
    unique={"name": "Group with this name already exists."},
    refs={"parents": "groups", "users": "users", "roles": "roles"},
    check=_group_check, after_write=_group_written,
)


# -- users -----------------------------------------------------------------------------------------------
def _user_fields() -> dict:
    return {"username": "", "name": "", "is_active": True, "last_login": None, "groups": [], "roles": [],
            "email": "", "attributes": {}, "path": "users", "type": "internal"}


def partial_user(call: Call, user: dict) -> dict:
    return {"pk": int(user["pk"]), "username": user["username"], "name": user["name"],
            "is_active": user["is_active"], "last_login": user["last_login"], "email": user["email"],
            "attributes": user["attributes"], "uid": uid(call, user)}


def serialize_user(call: Call, user: dict) -> dict:
    groups = [call.data["groups"][g] for g in user["groups"] if g in call.data.get("groups", {})]
    return {
        "pk": int(user["pk"]), "username": user["username"], "name": user["name"],
        "is_active": user["is_active"], "last_login": user["last_login"], "date_joined": user["_created"],
        "is_superuser": is_superuser(call.data, user), "groups": list(user["groups"]),
        "groups_obj": [partial_group(g) for g in groups] if _flag(call, "include_groups", True) else None,
        "roles": [], "roles_obj": [] if _flag(call, "include_roles", True) else None,
        "email": user["email"], "avatar": AVATAR, "attributes": user["attributes"], "uid": uid(call, user),
        "path": user["path"], "type": user["type"], "uuid": user["_uuid"],
        "password_change_date": user.get("_password_changed", user["_created"]),
        "last_updated": user.get("_updated", user["_created"]),
    }


def _user_check(call: Call, user: dict, current: dict | None) -> None:
    now = call.twin.now()
    user.setdefault("_created", now)
    user.setdefault("_uuid", str(uuid.uuid4()))
    user["_updated"] = now
    user["groups"] = list(dict.fromkeys(g.lower() for g in user["groups"]))
    if user["path"].startswith("/") or user["path"].endswith("/"):
        raise errors.field("path", "No leading or trailing slashes allowed.")


def hash_password(password: str, salt: str | None = None) -> str:
    """Django's pbkdf2_sha256 format (the twin keeps hashes only, like Authentik)."""
    salt = salt or secrets.token_hex(11)
    iterations = 100_000
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def check_password(user: dict, password: str) -> bool:
    stored = user.get("_password") or ""
    if not stored.startswith("pbkdf2_sha256$"):
        return False
    _scheme, iterations, salt, digest = stored.split("$")
    mine = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations)).hex()
    return secrets.compare_digest(mine, digest)


def set_password(call: Call) -> tuple[int, None]:
    """POST /core/users/{id}/set_password/ -> 204."""
    user = find(call, USERS)
    password = call.body.get("password")
    if not isinstance(password, str) or not password:
        raise errors.field("password", "This field is required.")
    user["_password"] = hash_password(password)
    user["_password_changed"] = call.twin.now()
    return 204, None


def me(call: Call) -> tuple[int, dict]:
    """GET /core/users/me/: the token's user as UserSelf (groups with their parents, by name)."""
    user = call.request.context["user"]
    groups = sorted(ancestors(call.data, user.get("groups", [])), key=lambda g: g["name"])
    return 200, {"user": {
        "pk": int(user["pk"]), "username": user["username"], "name": user["name"], "is_active": user["is_active"],
        "is_superuser": is_superuser(call.data, user), "groups": [{"name": g["name"], "pk": g["pk"]} for g in groups],
        "roles": [], "email": user["email"], "avatar": AVATAR, "uid": uid(call, user), "settings": {},
        "type": user["type"], "system_permissions": []}}


def _groups_by(call: Call, user: dict, raw: str, field: str) -> bool:
    return any(str(g.get(field)) == raw for g in call.data.get("groups", {}).values() if g["pk"] in user["groups"])


USERS = Kind(
    key="users", path="/core/users/", param="id", verbose="User", fields=_user_fields,
    serialize=serialize_user, required=("username", "name"), int_pk=True, ordering=("username",),
    search=("username", "name", "email", "uuid"),
    exact=("username", "name", "email", "is_active", "is_superuser", "path", "type", "uuid"),
    filters={"groups_by_name": lambda call, u, raw: _groups_by(call, u, raw, "name"),
             "groups_by_pk": lambda call, u, raw: raw.lower() in u["groups"],
             "path_startswith": lambda call, u, raw: u["path"].startswith(raw)},
    unique={"username": "A user with that username already exists."},
    refs={"groups": "groups", "roles": "roles"},
    check=_user_check,
)
