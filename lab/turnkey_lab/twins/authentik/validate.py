"""Requests (query, path, body) and responses against the document, with jsonschema.

Errors come out the way Django REST framework words them, in its ValidationError shape:
{"name": ["This field is required."], "redirect_uris": {"0": {"url": ["This field may not be blank."]}}}.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from .spec import Spec

try:  # optional, like the document: without it the twin runs unvalidated
    import jsonschema
except ImportError:  # pragma: no cover - the lab's venv has it
    jsonschema = None


def available() -> bool:
    return jsonschema is not None


# Django's EmailValidator in short: a dotted domain, or `localhost` (its allow-list; root@localhost is the
# bootstrap admin's default address).
_EMAIL = re.compile(r"^[^@\s]+@([^@\s]+\.[^@\s]+|localhost)$")


def _uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _url(value: object) -> bool:
    if not isinstance(value, str) or value == "":
        return True  # DRF's URLField with blank allowed; minLength says the rest
    parts = urlsplit(value)
    return parts.scheme in ("http", "https", "ftp", "ftps") and bool(parts.netloc)


def _checker():
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("uuid")(_uuid)
    checker.checks("email")(lambda v: not isinstance(v, str) or v == "" or bool(_EMAIL.match(v)))
    checker.checks("uri")(_url)
    return checker


# What DRF says for each kind of problem.
_TYPES = {"string": "Not a valid string.", "integer": "A valid integer is required.",
          "number": "A valid number is required.", "boolean": "Must be a valid boolean.",
          "array": 'Expected a list of items but got type "{kind}".',
          "object": 'Expected a dictionary of items but got type "{kind}".'}
_FORMATS = {"uuid": "Must be a valid UUID.", "email": "Enter a valid email address.", "uri": "Enter a valid URL."}


def _python_type(value: object) -> str:
    return {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict",
            type(None): "NoneType"}.get(type(value), type(value).__name__)


def message(error) -> str:
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if kind == "required":
        return "This field is required."
    if kind == "type":
        if error.instance is None:
            return "This field may not be null."
        wanted = error.validator_value
        wanted = next((w for w in wanted if w != "null"), "string") if isinstance(wanted, list) else wanted
        return _TYPES.get(wanted, error.message).format(kind=_python_type(error.instance))
    if kind == "minLength":
        return ("This field may not be blank." if error.instance == "" else
                f"Ensure this field has at least {error.validator_value} characters.")
    if kind == "maxLength":
        return f"Ensure this field has no more than {error.validator_value} characters."
    if kind == "enum":
        return f'"{error.instance}" is not a valid choice.'
    if kind == "format":
        return _FORMATS.get(error.validator_value, error.message)
    if kind == "pattern":
        if schema.get("pattern") == "^[-a-zA-Z0-9_]+$":
            return "Enter a valid “slug” consisting of letters, numbers, underscores or hyphens."
        return "This value does not match the required pattern."
    if kind in ("minimum", "maximum"):
        word = "greater" if kind == "minimum" else "less"
        return f"Ensure this value is {word} than or equal to {error.validator_value}."
    return error.message


def _deepest(error):
    """For anyOf/allOf errors (nullable references), the most specific sub-error."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


def _insert(tree: dict, path: list[str], text: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if isinstance(child, list):  # a field with its own message and nested ones: keep the first
            return
        node = child
    leaf = node.setdefault(path[-1], [])
    if isinstance(leaf, list) and text not in leaf:
        leaf.append(text)


_VALIDATORS: dict[int, tuple[dict, object]] = {}


def _validator(schema: dict):
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = _VALIDATORS[id(schema)] = (schema, jsonschema.Draft202012Validator(schema, format_checker=_checker()))
    return cached[1]


def errors(schema: dict, instance: object) -> dict:
    """{field: [messages]} (nested fields as DRF nests them); the key `non_field_errors` for the whole body."""
    tree: dict = {}
    for error in _validator(schema).iter_errors(instance):
        error = _deepest(error)
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required":
            path.append(error.message.split("'")[1])
        if not path:
            if error.validator == "type":
                kind = _python_type(instance)
                path, text = ["non_field_errors"], f"Invalid data. Expected a dictionary, but got {kind}."
            else:
                path, text = ["non_field_errors"], message(error)
        else:
            text = message(error)
        _insert(tree, path, text)
    return tree


class Checks:
    """The document's checks for one twin, validators compiled once per operation."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self._schemas: dict[tuple, dict | None] = {}

    def _schema(self, key: tuple, make) -> dict | None:
        if key not in self._schemas:
            self._schemas[key] = make()
        return self._schemas[key]

    def body(self, method: str, template: str, data: object, present: bool) -> dict:
        schema = self._schema(("body", method, template), lambda: self.spec.request_schema(method, template))
        if schema is None:
            return {}
        if not present:
            data = {}
        return errors(schema, data)

    def query(self, method: str, template: str, values: dict[str, str]) -> dict:
        """Known query parameters of the wrong type; unknown ones are ignored, as Django filters do."""
        problems: dict = {}
        for name, parameter in self.spec.parameters(method, template, "query").items():
            if name not in values:
                continue
            schema = parameter.get("schema", {})
            value = coerce(values[name], schema.get("items", {}) if schema.get("type") == "array" else schema)
            if value is None:
                problems[name] = [_query_message(schema)]
                continue
            if schema.get("type") == "array":
                value = [value]
            key = ("query", method, template, name)
            compiled = self._schema(key, lambda s=schema: self.spec.schema(s))
            for field, texts in errors(compiled, value).items():
                problems[name if field == "non_field_errors" else f"{name}.{field}"] = texts
        return problems

    def path(self, method: str, template: str, values: dict[str, str]) -> bool:
        """True when the path parameters fit (a malformed uuid or int is a 404 in Authentik)."""
        for name, parameter in self.spec.parameters(method, template, "path").items():
            schema = parameter.get("schema", {})
            value = coerce(values.get(name, ""), schema)
            if value is None or (schema.get("format") == "uuid" and not _uuid(value)):
                return False
        return True

    def response(self, method: str, template: str, status: int, data: object) -> dict:
        schema = self._schema(("response", method, template, status),
                              lambda: self.spec.response_schema(method, template, status))
        if schema is None:
            return {} if data in (None, b"", "") else {"body": ["the document defines no body for this status"]}
        return errors(schema, data)


_BOOLEANS = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}


def coerce(value: str, schema: dict) -> object:
    """A query/path string as its schema's type; None when it does not parse."""
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return None
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return None
    if kind == "boolean":
        return _BOOLEANS.get(value)
    return value


def _query_message(schema: dict) -> str:
    kind = schema.get("items", {}).get("type") if schema.get("type") == "array" else schema.get("type")
    if kind == "boolean":
        return "Select a valid choice."
    return "Enter a number." if kind in ("integer", "number") else "Enter a valid value."
