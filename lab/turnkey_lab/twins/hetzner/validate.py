"""Check a request (query, path, body) or a response against the document, with jsonschema.

Errors come out as Hetzner's `details.fields`: [{"name": "server_type", "messages": ["is required"]}].
"""

from __future__ import annotations

from collections import defaultdict

from .spec import Spec

try:  # optional, like the document: without it the twin runs unvalidated
    import jsonschema
except ImportError:  # pragma: no cover - the lab's venv has it
    jsonschema = None


def available() -> bool:
    return jsonschema is not None


_VALIDATORS: dict[int, tuple[dict, object]] = {}


def _validator(schema: dict):
    """One compiled validator per schema object (the Spec hands out the same objects every time)."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = _VALIDATORS[id(schema)] = (schema, jsonschema.Draft202012Validator(schema))
    return cached[1]


def _errors(schema: dict, instance: object, prefix: str = "") -> dict[str, list[str]]:
    validator = _validator(schema)
    fields: dict[str, list[str]] = defaultdict(list)
    for error in validator.iter_errors(instance):
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            path.append(missing)
            message = "is required"
        elif error.validator == "additionalProperties":
            message = "is not allowed"
        else:
            message = error.message
        name = ".".join(p for p in [prefix, *path] if p) or "body"
        fields[name].append(message)
    return dict(fields)


# The API parses query booleans like Go's strconv.ParseBool; the official Python client sends "True".
GO_BOOLEANS = {**dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), True),
               **dict.fromkeys(("0", "f", "F", "false", "FALSE", "False"), False)}


def _coerce(value: str, schema: dict) -> object:
    """A query/path string as the type its parameter schema wants (left alone when it doesn't parse)."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds:
        try:
            return int(value)
        except ValueError:
            return value
    if "boolean" in kinds and value in GO_BOOLEANS:
        return GO_BOOLEANS[value]
    return value


def parameters(spec: Spec, method: str, template: str, where: str, values: dict[str, str]) -> dict[str, list[str]]:
    """Errors of the `where` ("query"/"path") parameters; unknown query parameters are ignored, as Hetzner does."""
    fields: dict[str, list[str]] = {}
    for name, parameter in spec.parameters(method, template, where).items():
        schema = parameter.get("schema", {})
        if name not in values:
            if parameter.get("required"):
                fields[name] = ["is required"]
            continue
        raw = values[name]
        if schema.get("type") == "array":
            instance: object = [_coerce(raw, schema.get("items", {}))]
        else:
            instance = _coerce(raw, schema)
        for field, messages in _errors(schema, instance).items():
            fields[name if field == "body" else f"{name}.{field}"] = messages
    return fields


def body(spec: Spec, method: str, template: str, data: object, present: bool) -> dict[str, list[str]]:
    schema = spec.request_schema(method, template)
    if schema is None:
        return {}
    if not present:
        return {"body": ["is required"]} if spec.body_required(method, template) else {}
    return _errors(schema, data)


def response(spec: Spec, method: str, template: str, status: int, data: object) -> dict[str, list[str]]:
    """Errors of a response body against the document (the contract tests use this)."""
    schema = spec.response_schema(method, template, status)
    if schema is None:
        return {} if data in (None, b"", "") else {"body": ["the document defines no body for this status"]}
    return _errors(schema, data)
