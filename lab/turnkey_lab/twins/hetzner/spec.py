"""Hetzner's official OpenAPI document: where it is, and the request/response schemas of one operation.

The document is optional (a user's clone has no shared/ folder): without it the twin runs unvalidated.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

SCHEMAS_ENV = "TURNKEY_SCHEMAS_DIR"
RELATIVE = Path("hetzner-cloud") / "hcloud-cloud.spec.json"
# Fields the document types as string but whose description (and the real API, and the official
# client, which sends ints) take "ID or name": accept both, or the hcloud library itself is rejected.
_ID_OR_NAME = re.compile(r"\bIDs? (\(`integer`\) )?or names?\b")


def find(environ: dict | None = None) -> Path | None:
    """$TURNKEY_SCHEMAS_DIR/..., else <repo>/../shared/schemas/... (repo: where galaxy.yml is above us).

    A set $TURNKEY_SCHEMAS_DIR is the only place looked at: pointing it elsewhere turns validation off.
    """
    environ = os.environ if environ is None else environ
    if environ.get(SCHEMAS_ENV):
        path = Path(environ[SCHEMAS_ENV]) / RELATIVE
        return path if path.is_file() else None
    candidates = []
    for parent in Path(__file__).resolve().parents:
        if (parent / "galaxy.yml").exists() and (parent / "lab").is_dir():
            candidates.append(parent.parent / "shared" / "schemas" / RELATIVE)
            break
    return next((path for path in candidates if path.is_file()), None)


def _relax_id_or_name(schema: object) -> None:
    if isinstance(schema, dict):
        target = schema.get("items") if schema.get("type") == "array" else schema
        if (isinstance(target, dict) and target.get("type") == "string"
                and _ID_OR_NAME.search(schema.get("description", ""))):
            target["type"] = ["string", "integer"]
        for value in schema.values():
            _relax_id_or_name(value)
    elif isinstance(schema, list):
        for value in schema:
            _relax_id_or_name(value)


class Spec:
    """Operations by (METHOD, path template), with the `4xx`/`5xx` response keys upper-cased."""

    def __init__(self, path: Path):
        self.path = path
        document = json.loads(path.read_text())
        self.version = document.get("info", {}).get("version")
        self.operations: dict[tuple[str, str], dict] = {}
        self._requests: dict[tuple[str, str], dict | None] = {}
        for template, item in document["paths"].items():
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                # The document writes `4xx`/`5xx`; OpenAPI says `4XX`/`5XX` (strict tools reject it).
                operation["responses"] = {key.upper(): value for key, value in operation["responses"].items()}
                self.operations[(method.upper(), template)] = operation

    def operation(self, method: str, template: str) -> dict | None:
        return self.operations.get((method.upper(), template))

    def request_schema(self, method: str, template: str) -> dict | None:
        key = (method.upper(), template)
        if key not in self._requests:
            operation = self.operation(method, template) or {}
            content = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
            schema = copy.deepcopy(content["schema"]) if content else None
            _relax_id_or_name(schema)
            self._requests[key] = schema
        return self._requests[key]

    def body_required(self, method: str, template: str) -> bool:
        operation = self.operation(method, template) or {}
        return bool((operation.get("requestBody") or {}).get("required"))

    def parameters(self, method: str, template: str, where: str) -> dict[str, dict]:
        """{name: parameter} of one location ("query", "path")."""
        operation = self.operation(method, template) or {}
        return {p["name"]: p for p in operation.get("parameters", []) if p.get("in") == where}

    def response_schema(self, method: str, template: str, status: int) -> dict | None:
        """The schema for an exact status, else its class (`4XX`), else `default`; None: no body."""
        responses = (self.operation(method, template) or {}).get("responses", {})
        for key in (str(status), f"{str(status)[0]}XX", "DEFAULT"):
            if key in responses:
                content = responses[key].get("content", {}).get("application/json")
                return content["schema"] if content else None
        return None
