"""The Authentik twin: `/api/v3/` (bearer token, validated against the release's OpenAPI document) and,
per OAuth2 provider, OpenID Connect under `/application/o/` (oidc.py)."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...state import write_json
from ..base import HttpError, Request, Response, Twin
from . import BOOTSTRAP_FILE, admin, bootstrap, errors, oidc, resources, seed, validate
from .core import USERS, me, set_password
from .kinds import KINDS
from .outposts import OUTPOSTS, default_settings
from .spec import Spec

API = "/api/v3"


@dataclass
class Call:
    """What an action gets: the request, the parsed body and the live state (under the store's lock)."""

    twin: AuthentikTwin
    request: Request
    data: dict
    body: dict


Action = Callable[[Call], tuple[int, object]]


class AuthentikTwin(Twin):
    name = "authentik"
    prefix = ""
    latency_table = {"request": (0.0, 0.03)}

    def __init__(self, data_dir: Path, profile: str, spec_path: Path | None = None, public_url: str = "",
                 spec_cache: Path | None = None):
        self.public_url = public_url
        self.bootstrap = self._bootstrap(data_dir)
        self.install_id = self.bootstrap["install_id"]
        # The cluster whose authentik-server pod runs this Authentik (the component says so, /_lab/bootstrap); its
        # bootstrap token answers only while it does. None after every start, until the component finds the pod.
        self.cluster_running: str | None = None
        super().__init__(data_dir, profile)
        self.spec = Spec(spec_path, spec_cache or data_dir) if spec_path and validate.available() else None
        self.checks = validate.Checks(self.spec) if self.spec else None
        self.spec_note = ("" if self.spec else "no OpenAPI document found" if not spec_path
                          else "jsonschema is not installed")
        # Specific paths first: a `{uuid}` would match "default_settings" too.
        self.route("GET", "/outposts/instances/default_settings/", default_settings)
        self.route("POST", "/core/users/{id}/set_password/", set_password)
        self.route("GET", "/core/users/me/", me)
        self.route("GET", "/admin/version/", admin.version)
        self.add("GET", "/-/health/live/", admin.healthy)
        self.add("GET", "/-/health/ready/", admin.healthy)
        for kind in KINDS:
            self._register(kind)
        oidc.register(self)

    @staticmethod
    def _bootstrap(data_dir: Path) -> dict:
        """The bootstrap token, akadmin's password and the install id, made on first start (0600)."""
        path = data_dir / BOOTSTRAP_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            values = {"token": secrets.token_urlsafe(48), "password": secrets.token_urlsafe(24),
                      "install_id": str(uuid.uuid4())}
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(values, handle)
        return json.loads(path.read_text())

    @staticmethod
    def now() -> str:
        return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")

    def initial_state(self) -> dict:
        if (self.data_dir / "state.json").exists():
            return {}  # the store loads it; a fresh install's keys are not generated for nothing
        return seed.fresh(self.public_url, self.bootstrap["token"], self.bootstrap["password"], self.now())

    def health_detail(self) -> dict:
        with self.store.lock:
            counts = {kind: len(self.store.data.get(kind, {})) for kind in ("users", "groups", "providers",
                                                                             "applications")}
        return {"schema_validation": self.spec is not None, "spec": str(self.spec.path) if self.spec else None,
                "spec_note": self.spec_note, "release": self.spec.version if self.spec else None, "counts": counts,
                "cluster": self.cluster_status()}

    # -- routes ------------------------------------------------------------------------------------------
    def _register(self, kind: resources.Kind) -> None:
        one = f"{kind.path}{{{kind.param}}}/"
        self.route("GET", kind.path, lambda call: (200, resources.list_(call, kind)))
        self.route("GET", one, lambda call: resources.retrieve(call, kind))
        writes = (("POST", kind.path, lambda call: resources.create(call, kind)),
                  ("PUT", one, lambda call: resources.update(call, kind, partial=False)),
                  ("PATCH", one, lambda call: resources.update(call, kind, partial=True)),
                  ("DELETE", one, lambda call: resources.destroy(call, kind)))
        for method, template, action in writes:
            self.route(method, template, _not_allowed(method) if kind.read_only else action)

    def route(self, method: str, template: str, action: Action) -> None:
        """`template` is the document's path (under /api/v3), so validation finds its operation."""
        self.add(method, API + template, lambda request: self._run(method, template, action, request))

    def _run(self, method: str, template: str, action: Action, request: Request) -> Response:
        request.context["user"] = self.authenticate(request)
        body, present = self._body(request)
        if self.checks is not None:
            fields = {**self.checks.query(method, template, request.query),
                      **self.checks.body(method, template, body, present)}
            if fields:
                self.reject(request, 400, fields)
                raise errors.invalid(fields)
        if method == "GET":
            with self.store.lock:
                status, answer = action(Call(self, request, self.store.data, {}))
        else:
            with self.store.change() as data:
                status, answer = action(Call(self, request, data, body if isinstance(body, dict) else {}))
        if answer is None:
            return Response(status, b"")
        return Response.json(answer, status=status)

    def authenticate(self, request: Request) -> dict:
        """The bearer token's user (the bootstrap token is akadmin's); 403 as Authentik answers."""
        header = request.headers.get("authorization", "")
        if not header:
            raise errors.not_authenticated()
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer":
            raise errors.detail(403, "Unsupported authentication type")
        if not key.strip():
            raise errors.detail(403, "Malformed header")
        with self.store.lock:
            for token in self.store.data.get("tokens", {}).values():
                user = self.store.data.get("users", {}).get(str(token["user"]))
                if token.get("intent") == "api" and secrets.compare_digest(token["_key"], key.strip()) and user:
                    if token.get("_install") not in (None, self.cluster_running):
                        break  # the cluster's token, while its Authentik does not run
                    return user
        raise errors.bad_token()

    # -- the cluster starts it ---------------------------------------------------------------------------
    def cluster_status(self) -> dict:
        with self.store.lock:
            install = self.store.data.get("cluster_install") or {}
        return {"install": install.get("id"), "applied": install.get("applied"), "running": self.cluster_running}

    def lab_route(self, request: Request, path: str) -> Response | None:
        """/_lab/bootstrap, for the component (with the lab's token): GET the state, POST {"install": the
        cluster's identity, "env": the pod's AUTHENTIK_BOOTSTRAP_* variables} when the cluster's pod starts (the
        blueprint runs), DELETE when it is gone."""
        if path != "/_lab/bootstrap":
            return None
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip(), self.bootstrap["token"]):
            return Response.json({"error": "the lab's token is required"}, status=403)
        if request.method == "POST":
            try:
                body = request.json()
                env = {k: str(v) for k, v in body["env"].items() if k in bootstrap.VARIABLES}
                if not isinstance(body["install"], str):
                    raise TypeError("install")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                return Response.json({"error": f"bad request: {exc!r}"}, status=400)
            with self.store.change() as data:
                first = (data.get("cluster_install") or {}).get("id") != body["install"]
                done = bootstrap.apply(data, env, body["install"], self.bootstrap["token"], self.now())
            self.cluster_running = body["install"]
            if first and env.get(bootstrap.PASSWORD):  # akadmin's password is the install's now
                self.bootstrap["password"] = env[bootstrap.PASSWORD]
                write_json(self.data_dir / BOOTSTRAP_FILE, self.bootstrap, mode=0o600)
            return Response.json({**self.cluster_status(), "done": done})
        if request.method == "DELETE":
            self.cluster_running = None
        return Response.json(self.cluster_status())

    def _body(self, request: Request) -> tuple[object, bool]:
        if request.method not in ("POST", "PUT", "PATCH") or not request.body.strip():
            return None, False
        try:
            return json.loads(request.body), True
        except ValueError as exc:
            raise errors.detail(400, f"JSON parse error - {exc}") from None

    # -- what every answer gets --------------------------------------------------------------------------
    def error_response(self, error: HttpError) -> Response:
        return errors.response(error)

    def not_found(self, request: Request) -> HttpError:
        return errors.detail(404, "Not found.")


def _not_allowed(method: str) -> Action:
    def refuse(call: Call) -> tuple[int, object]:
        raise errors.detail(405, f'Method "{method}" not allowed.')
    return refuse


__all__ = ["API", "USERS", "OUTPOSTS", "AuthentikTwin", "Call"]
