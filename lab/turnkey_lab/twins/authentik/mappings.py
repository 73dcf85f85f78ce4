"""propertymappings/provider/scope: scope mappings, whose Python expressions make an OAuth2 provider's claims."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors
from .expressions import compile_expression
from .resources import Kind

if TYPE_CHECKING:
    from .twin import Call

META = {"component": "ak-property-mapping-provider-scope-form", "verbose_name": "Scope Mapping",
        "verbose_name_plural": "Scope Mappings", "meta_model_name": "authentik_providers_oauth2.scopemapping"}


def _fields() -> dict:
    return {"managed": None, "name": "", "expression": "", "scope_name": "", "description": ""}


def serialize(call: Call, mapping: dict) -> dict:
    return {"pk": mapping["pk"], **{k: mapping[k] for k in _fields()}, **META}


def _check(call: Call, mapping: dict, current: dict | None) -> None:
    try:
        compile_expression(mapping["expression"])
    except SyntaxError as exc:
        raise errors.field("expression", str(exc)) from None


SCOPE_MAPPINGS = Kind(
    key="propertymappings", path="/propertymappings/provider/scope/", param="pm_uuid", verbose="Scope Mapping",
    fields=_fields, serialize=serialize, required=("name", "expression", "scope_name"),
    ordering=("scope_name", "name"), search=("name", "scope_name"), exact=("name", "managed", "scope_name"),
    filters={"managed__isnull": lambda call, m, raw: (m["managed"] is None) == (raw.lower() in ("true", "1"))},
    unique={"name": "Property Mapping with this name already exists.",
            "managed": "Property Mapping with this Managed by authentik already exists."},
    check=_check,
)
