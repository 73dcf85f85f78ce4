"""Authentik's official OpenAPI document (release 2026.5.6): where it is, and its schemas as JSON Schema.

The document is optional (a user's clone has no ../shared folder): without it the twin runs unvalidated.
It is a 1.7 MB YAML file that takes seconds to parse, so the parsed form is cached as JSON (cache_dir()),
keyed by the document's hash.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import yaml

SCHEMAS_ENV = "TURNKEY_SCHEMAS_DIR"
RELEASE = "2026.5.6"
RELATIVE = Path("authentik") / f"authentik-{RELEASE}-openapi-schema.yml"
REF = "#/components/schemas/"


def find(environ: dict | None = None) -> Path | None:
    """$TURNKEY_SCHEMAS_DIR/..., else <repo>/../shared/schemas/... (a set variable is the only place looked at)."""
    environ = os.environ if environ is None else environ
    if environ.get(SCHEMAS_ENV):
        path = Path(environ[SCHEMAS_ENV]) / RELATIVE
        return path if path.is_file() else None
    for parent in Path(__file__).resolve().parents:
        if (parent / "galaxy.yml").exists() and (parent / "lab").is_dir():
            path = parent.parent / "shared" / "schemas" / RELATIVE
            return path if path.is_file() else None
    return None


def cache_dir(environ: dict | None = None) -> Path:
    """Where the parsed document is kept between labs: $XDG_CACHE_HOME/turnkey-cluster/lab-schemas."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "turnkey-cluster" / "lab-schemas"


def load(path: Path, cache: Path | None = None) -> dict:
    """The parsed document, from `cache`'s JSON copy when the document's hash matches (written atomically,
    so labs starting at once share it; an unwritable cache only costs the parse)."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    cached = cache / f"{path.stem}-{digest}.json" if cache else None
    if cached and cached.is_file():
        return json.loads(cached.read_text())
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
    if cached:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
            tmp.write_text(json.dumps(document))
            tmp.replace(cached)
        except OSError:
            pass
    return document


def to_json_schema(schema: object) -> object:
    """OpenAPI 3.0's `nullable` as JSON Schema (null added to type/enum, or an anyOf with null)."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: to_json_schema(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable"):
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "type" not in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


class Spec:
    """Operations by (METHOD, path template) and the component schemas, converted once."""

    def __init__(self, path: Path, cache: Path | None = None):
        self.path = path
        document = load(path, cache)
        self.version = document.get("info", {}).get("version")
        self.components = {"schemas": to_json_schema(document["components"]["schemas"])}
        parameters = document["components"].get("parameters", {})
        self.operations: dict[tuple[str, str], dict] = {}
        for template, item in document["paths"].items():
            for method, operation in item.items():
                if isinstance(operation, dict) and "responses" in operation:
                    operation["parameters"] = [
                        parameters[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
                        for p in operation.get("parameters", [])]
                    self.operations[(method.upper(), template)] = operation
        self.responses = document["components"].get("responses", {})

    def operation(self, method: str, template: str) -> dict | None:
        return self.operations.get((method.upper(), template))

    def schema(self, ref_or_schema: dict) -> dict:
        """A schema that resolves `#/components/...` references against the document."""
        return {**to_json_schema(copy.deepcopy(ref_or_schema)), "components": self.components}

    def request_schema(self, method: str, template: str) -> dict | None:
        operation = self.operation(method, template) or {}
        content = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
        return self.schema(content["schema"]) if content else None

    def body_required(self, method: str, template: str) -> bool:
        return bool(((self.operation(method, template) or {}).get("requestBody") or {}).get("required"))

    def parameters(self, method: str, template: str, where: str) -> dict[str, dict]:
        operation = self.operation(method, template) or {}
        return {p["name"]: p for p in operation.get("parameters", []) if p.get("in") == where}

    def response_schema(self, method: str, template: str, status: int) -> dict | None:
        """The schema of an exact status, else `default`; None: no body."""
        responses = (self.operation(method, template) or {}).get("responses", {})
        answer = responses.get(str(status)) or responses.get("default")
        if answer is None:
            return None
        if "$ref" in answer:
            answer = self.responses[answer["$ref"].rsplit("/", 1)[-1]]
        content = answer.get("content", {}).get("application/json")
        return self.schema(content["schema"]) if content else None
