"""The claims of an ID token or userinfo answer: `sub` per the provider's sub_mode, then the provider's
scope mappings for the granted scopes, evaluated like Authentik's (expressions.py)."""

from __future__ import annotations

import logging

from . import core, expressions

log = logging.getLogger("turnkey_lab.twins.authentik")


def user_object(call, user: dict) -> expressions.User:
    data = call.data
    groups = [data["groups"][g] for g in user["groups"] if g in data.get("groups", {})]
    everything = core.ancestors(data, user["groups"])
    values = {"pk": int(user["pk"]), "id": int(user["pk"]), "username": user["username"], "name": user["name"],
              "email": user["email"], "uid": core.uid(call, user), "uuid": user["_uuid"],
              "is_active": user["is_active"], "is_superuser": core.is_superuser(data, user),
              "attributes": user["attributes"], "type": user["type"], "path": user["path"]}
    return expressions.User(values, groups, everything)


def subject(call, provider: dict, user: dict) -> str:
    mode = provider.get("sub_mode", "hashed_user_id")
    if mode == "user_id":
        return str(user["pk"])
    if mode == "user_uuid":
        return user["_uuid"]
    if mode == "user_username":
        return user["username"]
    if mode == "user_email":
        return user["email"]
    if mode == "user_upn":
        return user["attributes"].get("upn") or core.uid(call, user)
    return core.uid(call, user)


def mappings(call, provider: dict) -> list[dict]:
    pool = call.data.get("propertymappings", {})
    return [pool[pk] for pk in provider.get("property_mappings", []) if pk in pool]


def granted(call, provider: dict, requested: list[str]) -> list[str]:
    """The requested scopes the provider has a mapping for (openid always)."""
    known = {m["scope_name"] for m in mappings(call, provider)} | {"openid"}
    return [s for s in requested if s in known]


def from_scopes(call, provider: dict, user: dict, scopes: list[str]) -> dict:
    """Every mapping of a granted scope, merged in the provider's order; a failing one is skipped (and
    logged), as Authentik does with an event."""
    app = next((a for a in call.data.get("applications", {}).values()
                if a.get("provider") is not None and str(a["provider"]) == str(provider["pk"])), None)
    provider_obj = expressions.Obj({**provider, "application": expressions.Obj(app or {})})
    person = user_object(call, user)
    claims: dict = {}
    for mapping in mappings(call, provider):
        if mapping["scope_name"] not in scopes:
            continue
        try:
            value = expressions.evaluate(mapping["expression"], person, provider_obj, scopes)
        except Exception as exc:  # noqa: BLE001 - any error in a user's expression
            log.warning("scope mapping %r failed: %s: %s", mapping["name"], type(exc).__name__, exc)
            continue
        if isinstance(value, dict):
            claims.update(value)
    return claims
