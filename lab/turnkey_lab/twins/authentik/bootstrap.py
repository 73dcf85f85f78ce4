"""Authentik's first start in the cluster: the blueprint `system/bootstrap.yaml`, applied with the environment the
lab cluster's `authentik/authentik-server` Deployment gives its pod (the component resolves it from the Secrets).

The release's blueprint (docs/lab.md says what was read and where the twin guesses), every entry `state: created`:
the group `authentik Admins` (superuser), the user `akadmin` in it (name `authentik Default Admin`, email
AUTHENTIK_BOOTSTRAP_EMAIL, password AUTHENTIK_BOOTSTRAP_PASSWORD) and, when AUTHENTIK_BOOTSTRAP_TOKEN is set, the
token `authentik-bootstrap-token` (intent api, not expiring, key = that value) of akadmin. Authentik applies it again
at every start; an object that exists is left as it is, and a token whose key differs from the existing one fails
the whole blueprint (its identifier is unique), so changing the variables later changes nothing.

The twin already holds a fresh install's objects when the cluster first starts it (the lab's own token and akadmin,
which the module tests use). So the cluster's first start (`install`: the cluster's identity, new) is taken for the
new install it is, with an empty database as a new cluster's PostgreSQL has: what an earlier cluster or the lab made
(groups, users, providers, applications, own scope mappings, outposts, grants, tokens) is gone, akadmin gets the
bootstrap password and email as the blueprint would create him, the lab's token steps aside to an identifier of
its own (it is no Authentik object) and the install's token is made. The same cluster starting its pod again keeps
everything (its database outlives the pod).
"""

from __future__ import annotations

from . import seed, tokens
from .core import hash_password

TOKEN = "AUTHENTIK_BOOTSTRAP_TOKEN"
PASSWORD = "AUTHENTIK_BOOTSTRAP_PASSWORD"  # noqa: S105 - the variable's name
EMAIL = "AUTHENTIK_BOOTSTRAP_EMAIL"
VARIABLES = (TOKEN, PASSWORD, EMAIL)


def apply(data: dict, env: dict[str, str], install: str, lab_key: str, now: str) -> list[str]:
    """Run the blueprint on the twin's state for the pod of `install` (the cluster); what it did, in words."""
    done: list[str] = []
    first = (data.get("cluster_install") or {}).get("id") != install
    held = next((t for t in data["tokens"].values() if t["identifier"] == tokens.BOOTSTRAP), None)
    if not first and env.get(TOKEN) and held and held["_key"] != env[TOKEN]:
        # Authentik: the token's identifier is unique, so the blueprint fails and its transaction is rolled back
        return [f"not applied: token {tokens.BOOTSTRAP} exists with another key (the blueprint fails)"]
    if first:
        done += _empty_database(data, lab_key)
    group = next((g for g in data["groups"].values() if g["name"] == seed.ADMIN_GROUP), None)
    if group is None:
        group = seed.admin_group()
        data["groups"][group["pk"]] = group
        done.append(f"created group {seed.ADMIN_GROUP}")
    user = next((u for u in data["users"].values() if u["username"] == seed.ADMIN_USER), None)
    if user is None or first:  # a new install's akadmin is the one the blueprint creates
        if user is None:
            pk = str(data["next_id"]["users"])
            data["next_id"]["users"] += 1
            user = seed.admin_user(pk, group["pk"], now)
            data["users"][pk] = user
        if env.get(PASSWORD):
            user["_password"] = hash_password(env[PASSWORD])
            user["_password_changed"] = now
        user["email"] = env.get(EMAIL) or user["email"]
        if group["pk"] not in user["groups"]:
            user["groups"].append(group["pk"])
        done.append(f"created user {seed.ADMIN_USER}" + (" with the bootstrap password" if env.get(PASSWORD) else ""))
    done += _token(data, env.get(TOKEN), user, install, first, lab_key, now)
    data["cluster_install"] = {"id": install, "applied": now}
    return done


def _empty_database(data: dict, lab_key: str) -> list[str]:
    """A new install's database: only what a fresh Authentik has (the admin group, akadmin, the managed scope
    mappings, the embedded outpost, the default flows and the key pairs), and the lab's own token (lab plumbing)."""
    kept = {
        "groups": lambda group: group["name"] == seed.ADMIN_GROUP,
        "users": lambda user: user["username"] == seed.ADMIN_USER,
        "applications": lambda _app: False,
        "providers": lambda _provider: False,
        "propertymappings": lambda mapping: bool(mapping.get("managed")),
        "outposts": lambda outpost: bool(outpost.get("managed")),
        "grants": lambda _grant: False,
        "tokens": lambda token: token.get("_key") == lab_key or token["identifier"] == tokens.BOOTSTRAP,
    }
    gone = 0
    for kind, keep in kept.items():
        objects = data.setdefault(kind, {})
        for pk in [pk for pk, item in objects.items() if not keep(item)]:
            del objects[pk]
            gone += 1
    for user in data["users"].values():
        user["groups"] = [pk for pk in user.get("groups", []) if pk in data["groups"]]
    return ["a new install: an empty database (%d objects of an earlier install or of the lab gone)" % gone]


def _token(data: dict, key: str | None, user: dict, install: str, first: bool, lab_key: str, now: str) -> list[str]:
    held = data["tokens"]
    if first:
        for pk, token in list(held.items()):
            if token["identifier"] != tokens.BOOTSTRAP:
                continue
            if token["_key"] == lab_key:  # the lab's own token: not Authentik's, it steps aside
                token.update(identifier=tokens.LAB, description=tokens.LAB_DESCRIPTION)
            else:  # the token of the install before (another cluster): gone with its database
                del held[pk]
    if not key:
        return []
    existing = next((t for t in held.values() if t["identifier"] == tokens.BOOTSTRAP), None)
    if existing is None:  # (one with another key was refused above)
        token = {**tokens.make(user["pk"], key, now), "description": "", "_install": install}
        held[token["pk"]] = token
        return [f"created token {tokens.BOOTSTRAP}"]
    return []
