"""outposts/instances: the embedded outpost a fresh Authentik has; providers are attached by pk."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from . import errors
from .providers import base
from .resources import Kind

if TYPE_CHECKING:
    from .twin import Call

EMBEDDED = "goauthentik.io/outposts/embedded"
# GET /outposts/instances/default_settings/ of a fresh install (the twin's copy of its keys).
DEFAULT_CONFIG = {
    "log_level": "info", "docker_labels": None, "authentik_host": "", "docker_network": None,
    "container_image": None, "docker_map_ports": True, "refresh_interval": "minutes=5",
    "kubernetes_replicas": 1, "kubernetes_namespace": "authentik", "authentik_host_browser": "",
    "object_naming_template": "ak-outpost-%(name)s", "authentik_host_insecure": False,
    "kubernetes_json_patches": None, "kubernetes_service_type": "ClusterIP",
    "kubernetes_image_pull_secrets": [], "kubernetes_ingress_class_name": None,
    "kubernetes_disabled_components": [], "kubernetes_ingress_annotations": {},
    "kubernetes_ingress_secret_name": "authentik-outpost-tls",
}
# Which provider type each outpost type serves.
SERVES = {"proxy": "proxy", "ldap": "ldap", "radius": "radius", "rac": "rac"}


def _fields() -> dict:
    return {"name": "", "type": "proxy", "providers": [], "service_connection": None, "config": {}, "managed": None}


def embedded(authentik_host: str) -> dict:
    return {"pk": str(uuid.uuid4()), **_fields(), "name": "authentik Embedded Outpost", "managed": EMBEDDED,
            "config": {**DEFAULT_CONFIG, "authentik_host": authentik_host}}


def serialize(call: Call, outpost: dict) -> dict:
    providers = call.data.get("providers", {})
    return {"pk": outpost["pk"], **{k: outpost[k] for k in _fields()},
            "providers_obj": [base(call, providers[str(p)]) for p in outpost["providers"] if str(p) in providers],
            "service_connection_obj": None, "refresh_interval_s": 300,
            "token_identifier": f"ak-outpost-{outpost['pk']}-api"}


def _check(call: Call, outpost: dict, current: dict | None) -> None:
    providers = call.data.get("providers", {})
    for pk in outpost["providers"]:
        kind = providers[str(pk)]["_type"]
        if SERVES.get(outpost["type"]) != kind:
            raise errors.field("providers", f"Outpost type {outpost['type']} can't be used with {kind} providers.")
    if not isinstance(outpost["config"], dict):
        raise errors.field("config", "Invalid config")


def default_settings(call: Call) -> tuple[int, dict]:
    return 200, {"config": {**DEFAULT_CONFIG, "authentik_host": call.twin.public_url}}


def _icontains(field: str):
    return lambda call, o, raw: raw.lower() in str(o.get(field) or "").lower()


OUTPOSTS = Kind(
    key="outposts", path="/outposts/instances/", param="uuid", verbose="Outpost", fields=_fields,
    serialize=serialize, required=("name", "type", "providers", "config"), search=("name", "providers__name"),
    exact=(),
    filters={"name__iexact": lambda call, o, raw: o["name"].lower() == raw.lower(),
             "name__icontains": _icontains("name"),
             "managed__iexact": lambda call, o, raw: str(o["managed"] or "").lower() == raw.lower(),
             "managed__icontains": _icontains("managed"),
             "providers_by_pk": lambda call, o, raw: raw.isdigit() and int(raw) in o["providers"],
             "providers__isnull": lambda call, o, raw: (not o["providers"]) == (raw.lower() in ("true", "1"))},
    unique={"name": "Outpost with this name already exists."},
    refs={"providers": "providers"},
    check=_check,
)
