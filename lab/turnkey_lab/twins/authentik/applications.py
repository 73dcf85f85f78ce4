"""core/applications, looked up by slug; an application holds at most one provider (a one-to-one)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .providers import base
from .resources import Kind

if TYPE_CHECKING:
    from .twin import Call


def _fields() -> dict:
    return {"name": "", "slug": "", "provider": None, "backchannel_providers": [], "open_in_new_tab": False,
            "meta_launch_url": "", "meta_icon": "", "meta_description": "", "meta_publisher": "",
            "policy_engine_mode": "any", "group": "", "meta_hide": False}


def launch_url(provider: dict | None, app: dict) -> str | None:
    """The app's own launch URL, else its provider's: a proxy's external host, an OAuth2 provider's first
    strict redirect URI's origin."""
    if app["meta_launch_url"]:
        return app["meta_launch_url"]
    if provider is None:
        return None
    if provider["_type"] == "proxy":
        return provider["external_host"]
    for uri in provider.get("redirect_uris", []):
        if uri.get("matching_mode") == "strict":
            parts = urlsplit(uri["url"])
            return f"{parts.scheme}://{parts.netloc}"
    return None


def serialize(call: Call, app: dict) -> dict:
    providers = call.data.get("providers", {})
    provider = providers.get(str(app["provider"])) if app["provider"] is not None else None
    return {"pk": app["pk"], **{k: app[k] for k in _fields()},
            "provider_obj": base(call, provider) if provider else None,
            "backchannel_providers_obj": [base(call, providers[str(p)]) for p in app["backchannel_providers"]
                                          if str(p) in providers],
            "launch_url": launch_url(provider, app), "meta_icon_url": None, "meta_icon_themed_urls": None}


APPLICATIONS = Kind(
    key="applications", path="/core/applications/", param="slug", verbose="Application", fields=_fields,
    serialize=serialize, required=("name", "slug"), lookup="slug",
    search=("name", "slug", "meta_launch_url", "meta_description", "meta_publisher", "group"),
    exact=("name", "slug", "group", "meta_description", "meta_launch_url", "meta_publisher"),
    unique={"slug": "Application with this slug already exists.",
            "provider": "Application with this provider already exists."},
    refs={"provider": "providers", "backchannel_providers": "providers"},
)
