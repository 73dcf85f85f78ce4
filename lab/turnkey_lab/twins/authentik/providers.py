"""providers/oauth2 and providers/proxy: one `providers` collection with int pks, as Authentik's Provider."""

from __future__ import annotations

import re
import secrets
import string
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import errors
from .resources import Kind

if TYPE_CHECKING:
    from .twin import Call

OAUTH2 = {"component": "ak-provider-oauth2-form", "verbose_name": "OAuth2/OpenID Provider",
          "verbose_name_plural": "OAuth2/OpenID Providers",
          "meta_model_name": "authentik_providers_oauth2.oauth2provider"}
PROXY = {"component": "ak-provider-proxy-form", "verbose_name": "Proxy Provider",
         "verbose_name_plural": "Proxy Providers", "meta_model_name": "authentik_providers_proxy.proxyprovider"}
META = {"oauth2": OAUTH2, "proxy": PROXY}
CALLBACK = "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"


def random_id(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _common() -> dict:
    return {"name": "", "authentication_flow": None, "authorization_flow": None, "invalidation_flow": None,
            "property_mappings": []}


def _oauth2_fields() -> dict:
    return {**_common(), "client_type": "confidential", "grant_types": ["authorization_code", "refresh_token"],
            "client_id": random_id(40), "client_secret": random_id(128), "access_code_validity": "minutes=1",
            "access_token_validity": "hours=1", "refresh_token_validity": "days=30",
            "refresh_token_threshold": "seconds=0", "include_claims_in_id_token": True, "signing_key": None,
            "encryption_key": None, "redirect_uris": [], "logout_uri": "", "logout_method": "backchannel",
            "sub_mode": "hashed_user_id", "issuer_mode": "per_provider", "jwt_federation_sources": [],
            "jwt_federation_providers": []}


def _proxy_fields() -> dict:
    return {**_common(), "internal_host": "", "external_host": "", "internal_host_ssl_validation": True,
            "certificate": None, "skip_path_regex": "", "basic_auth_enabled": False,
            "basic_auth_password_attribute": "", "basic_auth_user_attribute": "", "mode": "proxy",
            "intercept_header_auth": True, "cookie_domain": "", "jwt_federation_sources": [],
            "jwt_federation_providers": [], "access_token_validity": "hours=24", "refresh_token_validity": "days=30"}


def application_of(data: dict, provider_pk: str, backchannel: bool = False) -> dict | None:
    for app in data.get("applications", {}).values():
        if backchannel and int(provider_pk) in app.get("backchannel_providers", []):
            return app
        if not backchannel and app.get("provider") is not None and str(app["provider"]) == str(provider_pk):
            return app
    return None


def base(call: Call, provider: dict) -> dict:
    """The `Provider` serializer's fields (also what applications and outposts embed)."""
    app = application_of(call.data, provider["pk"])
    back = application_of(call.data, provider["pk"], backchannel=True)
    return {"pk": int(provider["pk"]), **{k: provider[k] for k in _common()},
            "component": META[provider["_type"]]["component"],
            "assigned_application_slug": app["slug"] if app else None,
            "assigned_application_name": app["name"] if app else None,
            "assigned_backchannel_application_slug": back["slug"] if back else None,
            "assigned_backchannel_application_name": back["name"] if back else None,
            **{k: v for k, v in META[provider["_type"]].items() if k != "component"}}


def serialize_oauth2(call: Call, provider: dict) -> dict:
    return {**base(call, provider), **{k: provider[k] for k in _oauth2_fields() if k not in _common()}}


def outposts_of(data: dict, provider_pk: str) -> list[dict]:
    return [o for o in data.get("outposts", {}).values() if int(provider_pk) in o.get("providers", [])]


def proxy_redirect_uris(provider: dict) -> list[dict]:
    host = provider["external_host"].rstrip("/")
    uris = [{"matching_mode": "strict", "url": host + CALLBACK, "redirect_uri_type": "authorization"}]
    if provider["mode"] == "forward_domain":
        uris.append({"matching_mode": "regex", "url": "https://.*" + re.escape(provider["cookie_domain"]) + CALLBACK,
                     "redirect_uri_type": "authorization"})
    return uris


def serialize_proxy(call: Call, provider: dict) -> dict:
    return {**base(call, provider), **{k: provider[k] for k in _proxy_fields() if k not in _common()},
            "client_id": provider["_client_id"], "redirect_uris": proxy_redirect_uris(provider),
            "outpost_set": [f"Outpost {o['name']}" for o in outposts_of(call.data, provider["pk"])]}


def _oauth2_check(call: Call, provider: dict, current: dict | None) -> None:
    for uri in provider["redirect_uris"]:
        uri.setdefault("redirect_uri_type", "authorization")
        if uri.get("matching_mode") == "regex":
            try:
                re.compile(uri.get("url", ""))
            except re.error as exc:
                raise errors.field("redirect_uris", f"Invalid Regex Pattern: {uri.get('url')}: {exc}") from None
    for name in ("authorization_flow", "invalidation_flow"):
        if provider.get(name) is None and call.twin.checks is None:
            raise errors.field(name, "This field is required.")


def _proxy_check(call: Call, provider: dict, current: dict | None) -> None:
    provider.setdefault("_client_id", random_id(40))
    if provider["mode"] == "proxy" and not provider["internal_host"]:
        raise errors.field("internal_host", "Internal host cannot be empty when forward auth is disabled.")
    if provider["mode"] == "forward_domain" and not provider["cookie_domain"]:
        raise errors.field("cookie_domain", "Cookie domain is required for forward domain mode.")
    if urlsplit(provider["external_host"]).scheme not in ("http", "https"):
        raise errors.field("external_host", "Enter a valid URL.")


_REFS = {"authentication_flow": "flows", "authorization_flow": "flows", "invalidation_flow": "flows",
         "property_mappings": "propertymappings", "jwt_federation_providers": "providers"}


def _application(call: Call, provider: dict, raw: str) -> bool:
    app = application_of(call.data, str(provider["pk"]))
    return app is not None and raw.lower() in (app["pk"], app["slug"].lower())


OAUTH2_PROVIDERS = Kind(
    key="providers", subtype="oauth2", path="/providers/oauth2/", param="id", verbose="OAuth2/OpenID Provider",
    fields=_oauth2_fields, serialize=serialize_oauth2, int_pk=True,
    required=("name", "authorization_flow", "invalidation_flow", "redirect_uris"),
    search=("name", "client_id"),
    exact=("name", "client_id", "client_type", "issuer_mode", "sub_mode", "include_claims_in_id_token",
           "authorization_flow", "signing_key", "access_code_validity", "access_token_validity",
           "refresh_token_validity"),
    filters={"application": _application,
             "property_mappings": lambda call, p, raw: raw.lower() in p["property_mappings"]},
    unique={"name": "Provider with this name already exists.",
            "client_id": "OAuth2/OpenID Provider with this Client ID already exists."},
    refs={**_REFS, "signing_key": "keypairs", "encryption_key": "keypairs"},
    check=_oauth2_check,
)


def _iexact(field: str):
    return lambda call, p, raw: str(p.get(field) or "").lower() == raw.lower()


PROXY_PROVIDERS = Kind(
    key="providers", subtype="proxy", path="/providers/proxy/", param="id", verbose="Proxy Provider",
    fields=_proxy_fields, serialize=serialize_proxy, int_pk=True,
    required=("name", "authorization_flow", "invalidation_flow", "external_host"),
    search=("name",), exact=(),
    filters={"name__iexact": _iexact("name"), "external_host__iexact": _iexact("external_host"),
             "internal_host__iexact": _iexact("internal_host"), "mode__iexact": _iexact("mode"),
             "cookie_domain__iexact": _iexact("cookie_domain"),
             "application__isnull": lambda call, p, raw: (p["assigned_application_slug"] is None)
             == (raw.lower() in ("true", "1"))},
    unique={"name": "Provider with this name already exists."},
    refs={**_REFS, "certificate": "keypairs"},
    check=_proxy_check,
)
