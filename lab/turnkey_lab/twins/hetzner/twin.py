"""The Hetzner Cloud twin: bearer auth, rate limit, request validation and the routes of every resource."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..base import HttpError, Request, Response, Twin
from ..faults import Latency
from . import (
    TOKEN_FILE,
    actions,
    errors,
    firewalls,
    images,
    networks,
    placement,
    readonly,
    servers,
    talos_hook,
    validate,
)
from .faults import HetznerFaults
from .ratelimit import RateLimit
from .spec import Spec


@dataclass
class Call:
    """What a route handler gets: the request, the parsed body and the live state (under the lock)."""

    twin: HetznerTwin
    request: Request
    data: dict
    body: dict

    @property
    def query(self) -> dict[str, str]:
        return self.request.query

    def id(self, name: str = "id") -> int:
        try:
            return int(self.request.params[name])
        except ValueError:  # only reached without the document (it would have refused the request)
            raise errors.not_found("resource", self.request.params[name]) from None

    def start(self, command: str, resources: list[tuple[int, str]], effect: str | None = None,
              after: dict | None = None, operation: str | None = None) -> dict:
        """A running action lasting the profile's time for `operation` (default: the command)."""
        fault = (self.twin.faults.take("action_error", command) or self.twin.faults.take("task_fail", command))
        error = ({"code": fault.get("code", "action_failed"), "message": fault.get("message", "injected (lab)")}
                 if fault else None)
        duration = self.twin.latency.seconds(operation or command)
        return actions.start(self.data, command, resources, duration, effect, after, error)


Route = Callable[[Call], Response]


def _without_nulls(value: object) -> object:
    """The API takes `null` as "not given" (the official client sends `"type": null` to enable_rescue),
    where the document's schemas would refuse it."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


class HetznerTwin(Twin):
    name = "hetzner"
    prefix = "/v1"
    # (fast, realistic) seconds; docs/lab-hetzner.md gives the sources of the realistic column.
    latency_table = {
        "request": (0.0, 0.08), "create_server": (0.2, 15.0), "start_server": (0.1, 8.0),
        "stop_server": (0.1, 3.0), "shutdown_server": (0.1, 10.0), "reboot_server": (0.1, 8.0),
        "reset_server": (0.1, 3.0), "delete_server": (0.1, 5.0), "create_image": (0.5, 60.0),
        "change_server_type": (0.2, 30.0), "enable_rescue": (0.05, 2.0), "disable_rescue": (0.05, 2.0),
        "attach_to_network": (0.05, 3.0), "detach_from_network": (0.05, 3.0), "firewall": (0.05, 2.0),
        "network": (0.05, 1.0),
    }

    def __init__(self, data_dir: Path, profile: str, rate_limit: int = 3600, spec_path: Path | None = None,
                 talos_selector: str = talos_hook.DEFAULT_SELECTOR):
        super().__init__(data_dir, profile)
        self.faults = HetznerFaults()
        self.latency = Latency(profile, self.latency_table, self.faults)
        self.rate = RateLimit(rate_limit)
        self.spec = Spec(spec_path) if spec_path and validate.available() else None
        self.spec_note = ("" if self.spec else "no OpenAPI document found" if not spec_path
                          else "jsonschema is not installed")
        self.token = self._token()
        self.hook = talos_hook.TalosNodes(data_dir / talos_hook.FILE, talos_selector)
        self.effects: dict[str, actions.Effect] = {}
        for module in (servers, images, networks, firewalls, placement, readonly):
            module.register(self)
        with self.store.lock:
            self.hook.update(self.store.data)

    def _token(self) -> str:
        """Made on first start, kept with the state (0600); the component copies it to credentials.json."""
        path = self.data_dir / TOKEN_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
        return path.read_text().strip()

    def initial_state(self) -> dict:
        return {"next_id": {}, "servers": {}, "images": {}, "networks": {}, "firewalls": {},
                "placement_groups": {}, "actions": {}}

    def health_detail(self) -> dict:
        with self.store.lock:
            counts = {kind: len(self.store.data.get(kind, {})) for kind in ("servers", "images", "networks")}
        return {"schema_validation": self.spec is not None, "spec": str(self.spec.path) if self.spec else None,
                "spec_note": self.spec_note, "rate_limit": self.rate.limit, "counts": counts}

    # -- routes ------------------------------------------------------------------------------------
    def route(self, method: str, template: str, handler: Route) -> None:
        """Register `handler` for `template` (the document's own path, so validation finds its operation)."""
        self.add(method, template, lambda request: self._run(method, template, handler, request))

    def _run(self, method: str, template: str, handler: Route, request: Request) -> Response:
        self._authenticate(request)
        body, present = self._body(request)
        self._validate(request, method, template, body, present)
        with self.store.lock:
            data = self.store.data
            changed = actions.advance(data, self.effects)
            try:
                response = handler(Call(self, request, data, body if isinstance(body, dict) else {}))
                if self.faults.take("answer_lost", f"{method} {request.path}"):
                    # done (saved below), but the client only learns that a gateway timed out
                    raise errors.api_error("timeout", "the gateway timed out waiting for the answer (lab)")
                if request.context.get("link"):
                    response.headers["Link"] = request.context["link"]
                return response
            finally:
                if changed or method != "GET":
                    self.hook.update(data)
                    self.store.save()

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), self.token):
            raise errors.api_error("unauthorized", "unable to authenticate")

    def _body(self, request: Request) -> tuple[object, bool]:
        if request.method not in ("POST", "PUT") or not request.body.strip():
            return None, False
        try:
            return _without_nulls(json.loads(request.body)), True
        except ValueError as exc:
            raise errors.api_error("json_error", f"invalid JSON: {exc}") from None

    def _validate(self, request: Request, method: str, template: str, body: object, present: bool) -> None:
        if self.spec is None:
            return
        fields = {**validate.parameters(self.spec, method, template, "path", request.params),
                  **validate.parameters(self.spec, method, template, "query", request.query),
                  **validate.body(self.spec, method, template, body, present)}
        if fields:
            self.reject(request, errors.STATUS["invalid_input"], fields)
            raise errors.invalid_input(fields)

    # -- what every API answer gets ----------------------------------------------------------------
    def admit(self, request: Request, raw_path: str) -> None:
        # Before anything else: Hetzner counts every request, authenticated or not, valid or not.
        if self.faults.take("rate_limit_storm", f"{request.method} {raw_path}") or not self.rate.take():
            raise errors.api_error("rate_limit_exceeded", "limit of requests per hour reached",
                                   headers=self.rate.headers(exhausted=True))

    def dispatch(self, request: Request, raw_path: str) -> Response:
        response = super().dispatch(request, raw_path)
        if not raw_path.startswith("/_lab/"):
            for name, value in self.rate.headers().items():
                response.headers.setdefault(name, value)
        return response

    def error_response(self, error: HttpError) -> Response:
        if error.status == 501 and not error.errors:  # the base's "known path, other method"
            error = errors.api_error("method_not_allowed", "method not allowed")
        return errors.response(error)

    def not_found(self, request: Request) -> HttpError:
        return errors.api_error("not_found", "not found")
