"""flows/instances (looked up by slug): the flows a fresh Authentik's default blueprints make.

Only their identity is modelled (slug, name, title, designation); the twin's login and consent pages
(oidc.py) stand in for the stages. An authorization flow whose slug says "explicit-consent" shows a
consent page; any other authorization flow consents implicitly.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .resources import Kind

if TYPE_CHECKING:
    from .twin import Call

# (slug, name, title, designation, authentication) from the release's blueprints/default/*.yaml
DEFAULTS = (
    ("default-authentication-flow", "Welcome to authentik!", "Welcome to authentik!", "authentication", "none"),
    ("default-invalidation-flow", "Logout", "Default Invalidation Flow", "invalidation", "none"),
    ("default-provider-authorization-explicit-consent", "Authorize Application", "Redirecting to %(app)s",
     "authorization", "require_authenticated"),
    ("default-provider-authorization-implicit-consent", "Authorize Application", "Redirecting to %(app)s",
     "authorization", "require_authenticated"),
    ("default-provider-invalidation-flow", "Logged out of application", "You've logged out of %(app)s.",
     "invalidation", "none"),
    ("default-source-authentication", "Welcome to authentik!", "Welcome to authentik!", "authentication",
     "require_unauthenticated"),
    ("default-source-enrollment", "Welcome to authentik! Please select a username.", "Welcome to authentik!",
     "enrollment", "require_unauthenticated"),
    ("default-source-pre-authentication", "Pre-Authentication", "", "stage_configuration", "none"),
    ("default-user-settings-flow", "User settings", "Update your info", "stage_configuration",
     "require_authenticated"),
    ("default-password-change", "Change Password", "Change password", "stage_configuration",
     "require_authenticated"),
    ("default-authenticator-static-setup", "default-authenticator-static-setup", "Set up Static OTP Authenticator",
     "stage_configuration", "require_authenticated"),
    ("default-authenticator-totp-setup", "default-authenticator-totp-setup", "Set up Two-Factor authentication",
     "stage_configuration", "require_authenticated"),
    ("default-authenticator-webauthn-setup", "default-authenticator-webauthn-setup", "Setup WebAuthn",
     "stage_configuration", "require_authenticated"),
)


def make(slug: str, name: str, title: str, designation: str, authentication: str) -> dict:
    return {"pk": str(uuid.uuid4()), "name": name, "slug": slug, "title": title, "designation": designation,
            "background": "", "policy_engine_mode": "any", "compatibility_mode": False, "layout": "stacked",
            "denied_action": "message_continue", "authentication": authentication}


def explicit_consent(flow: dict | None) -> bool:
    return bool(flow) and "explicit-consent" in flow["slug"]


def serialize(call: Call, flow: dict) -> dict:
    return {**flow, "policybindingmodel_ptr_id": flow["pk"],
            "background_url": "/static/dist/assets/images/flow_background.jpg", "background_themed_urls": None,
            "stages": [], "policies": [], "cache_count": 0,
            "export_url": f"/api/v3/flows/instances/{flow['slug']}/export/"}


FLOWS = Kind(
    key="flows", path="/flows/instances/", param="slug", verbose="Flow", fields=lambda: {"name": ""},
    serialize=serialize, read_only=True, lookup="slug", ordering=("slug", "order"), search=("name", "slug", "title"),
    exact=("name", "slug", "designation", "denied_action"),
    filters={"flow_uuid": lambda call, f, raw: f["pk"] == raw.lower()},
)
