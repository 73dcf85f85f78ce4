"""core/tokens (list/retrieve): the bootstrap token a fresh install with AUTHENTIK_BOOTSTRAP_TOKEN has.

The key itself is never in these answers (Authentik shows it only through view_key).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .core import serialize_user
from .resources import Kind

if TYPE_CHECKING:
    from .twin import Call

BOOTSTRAP = "authentik-bootstrap-token"
# The lab's own token once the cluster's Authentik has its bootstrap token (bootstrap.py): no Authentik object.
LAB = "turnkey-lab-token"
LAB_DESCRIPTION = "The lab's own API token (credentials.json), not the cluster's"


def make(user_pk: str, key: str, now: str) -> dict:
    return {"pk": str(uuid.uuid4()), "identifier": BOOTSTRAP, "managed": None, "intent": "api", "user": int(user_pk),
            "description": "Bootstrap token", "expires": None, "expiring": False, "_key": key, "_created": now}


def serialize(call: Call, token: dict) -> dict:
    user = call.data.get("users", {}).get(str(token["user"]))
    return {**{k: v for k, v in token.items() if not k.startswith("_")},
            "user_obj": serialize_user(call, user) if user else None}


TOKENS = Kind(
    key="tokens", path="/core/tokens/", param="identifier", verbose="Token", fields=lambda: {"identifier": ""},
    serialize=serialize, read_only=True, lookup="identifier", ordering=("identifier", "expires"),
    search=("identifier", "intent", "description"),
    exact=("identifier", "intent", "description", "managed", "expires", "expiring"),
)
