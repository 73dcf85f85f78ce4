"""What a fresh Authentik holds after its first start: the admin group and user, the default flows, the
managed scope mappings, the certificate keypairs, the embedded outpost and the bootstrap token.

Names, slugs and `managed` keys follow the release's blueprints (blueprints/default, blueprints/system);
the expressions are the twin's own wording of what those mappings return.
"""

from __future__ import annotations

import uuid

from . import crypto, flows, outposts, tokens
from .core import hash_password

ADMIN_GROUP = "authentik Admins"
ADMIN_USER = "akadmin"
SCOPE = "goauthentik.io/providers/oauth2/scope-"
# (managed, name, scope_name, description, expression)
SCOPE_MAPPINGS = (
    (SCOPE + "openid", "authentik default OAuth Mapping: OpenID 'openid'", "openid", "",
     "# This scope is required by the OpenID-spec, and must as such exist in authentik.\n"
     "# The scope by itself does not grant any information\nreturn {}\n"),
    (SCOPE + "email", "authentik default OAuth Mapping: OpenID 'email'", "email", "Email address",
     'return {\n    "email": request.user.email,\n    "email_verified": False,\n}\n'),
    (SCOPE + "profile", "authentik default OAuth Mapping: OpenID 'profile'", "profile", "General Profile Information",
     "return {\n"
     "    # authentik keeps one full name: it is the given name too\n"
     '    "name": request.user.name,\n'
     '    "given_name": request.user.name,\n'
     '    "preferred_username": request.user.username,\n'
     '    "nickname": request.user.username,\n'
     '    "groups": [group.name for group in request.user.ak_groups.all()],\n'
     "}\n"),
    (SCOPE + "offline_access", "authentik default OAuth Mapping: OpenID 'offline_access'", "offline_access",
     "Access to request new tokens without interaction", "# This scope is handled by authentik\nreturn {}\n"),
    (SCOPE + "entitlements", "authentik default OAuth Mapping: Application Entitlements", "entitlements",
     "Application entitlements",
     'return {\n    "entitlements": [e.name for e in request.user.app_entitlements(provider.application)],\n}\n'),
    (SCOPE + "authentik_api", "authentik default OAuth Mapping: authentik API access", "goauthentik.io/api",
     "authentik API Access on behalf of your user", "return {}\n"),
    ("goauthentik.io/providers/proxy/scope-proxy", "authentik default OAuth Mapping: Proxy outpost", "ak_proxy", "",
     'return {\n    "ak_proxy": {\n        "user_attributes": request.user.group_attributes(request),\n'
     '        "is_superuser": request.user.is_superuser,\n    }\n}\n'),
)


def admin_group() -> dict:
    """The bootstrap blueprint's `authentik Admins`."""
    return {"pk": str(uuid.uuid4()), "name": ADMIN_GROUP, "is_superuser": True, "parents": [], "attributes": {},
            "roles": []}


def admin_user(pk: str, group_pk: str, now: str) -> dict:
    """The bootstrap blueprint's akadmin, in `group_pk`, with no password yet (unusable)."""
    return {"pk": pk, "username": ADMIN_USER, "name": "authentik Default Admin", "is_active": True,
            "last_login": None, "groups": [group_pk], "roles": [], "email": "root@localhost",
            "attributes": {}, "path": "users", "type": "internal", "_uuid": str(uuid.uuid4()), "_created": now,
            "_password": None}


def fresh(public_url: str, token: str, password: str, now: str) -> dict:
    """The whole state of a fresh install (keys generated here: the first start takes a second or two)."""
    admins = admin_group()
    akadmin = {**admin_user("1", admins["pk"], now), "_password": hash_password(password)}
    mappings = {}
    for managed, name, scope_name, description, expression in SCOPE_MAPPINGS:
        pk = str(uuid.uuid4())
        mappings[pk] = {"pk": pk, "managed": managed, "name": name, "scope_name": scope_name,
                        "description": description, "expression": expression}
    pairs = [crypto.generate(crypto.SELF_SIGNED),
             crypto.generate("authentik Internal JWT Certificate", managed="goauthentik.io/crypto/jwt-managed")]
    flow_objects = [flows.make(*row) for row in flows.DEFAULTS]
    outpost = outposts.embedded(public_url)
    token_object = tokens.make(akadmin["pk"], token, now)
    return {
        "next_id": {"users": 2, "providers": 1},
        "groups": {admins["pk"]: admins}, "users": {akadmin["pk"]: akadmin}, "applications": {}, "providers": {},
        "propertymappings": mappings, "keypairs": {p["pk"]: p for p in pairs},
        "flows": {f["pk"]: f for f in flow_objects}, "outposts": {outpost["pk"]: outpost},
        "tokens": {token_object["pk"]: token_object}, "grants": {},
    }
