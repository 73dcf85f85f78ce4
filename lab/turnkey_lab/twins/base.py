"""The shared HTTPS JSON server every twin is built on (stdlib only: http.server + ssl).

A twin subclasses `Twin`, registers routes with `self.add(method, "/path/{param}", handler)` and is run by
`serve()`. A handler takes a `Request` and returns a `Response` (or raises `HttpError`). Paths are
matched after `prefix` (e.g. "/api2/json"). The base adds, for every twin:

  GET    /_lab/health     {"ok": true, "twin": ..., "profile": ..., **twin.health_detail()}
  GET    /_lab/requests   the last requests (method, path, status, ms); never bodies or headers
  GET    /_lab/rejects    requests the twin refused as invalid (see `reject()`), with the reasons
  GET    /_lab/faults     active faults;  POST: add one (faults.py);  DELETE: clear all
  DELETE /_lab/requests   clear the request and reject logs

A twin adds its own `/_lab/` endpoints by overriding `lab_route()` (Proxmox: `POST /_lab/init`, `GET /_lab/vms`).
`/_lab/*` requests are neither logged nor subject to faults. An `http_5xx` fault answers before routing,
an `http_5xx_after` fault after the handler ran (an ambiguous error: the request took effect); a `slow`
fault scales `Latency` delays. State lives in `self.store` (store.py), persisted atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import ssl
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from .faults import FaultError, Faults, Latency
from .store import Store

log = logging.getLogger("turnkey_lab.twins")
LOG_SIZE = 2000


@dataclass
class Request:
    method: str
    path: str  # without the twin's prefix and without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # from the path pattern
    context: dict = field(default_factory=dict)  # for the twin's hooks (e.g. the authenticated user)

    def json(self) -> object:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        """The body as parameters: JSON object or x-www-form-urlencoded (the last value of a repeated key)."""
        if not self.body:
            return {}
        if self.headers.get("content-type", "").startswith("application/json"):
            data = self.json()
            if not isinstance(data, dict):
                raise HttpError(400, "JSON body must be an object")
            return {k: _scalar(v) for k, v in data.items()}
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # the HTTP status text (Proxmox puts its error message there)

    @classmethod
    def json(cls, data: object, status: int = 200, **kwargs) -> Response:
        return cls(status, json.dumps(data).encode(), **kwargs)


class HttpError(Exception):
    """An error answer; the twin's `error_response()` formats it the way the real API would."""

    def __init__(self, status: int, message: str, errors: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


Handler = Callable[[Request], Response]


def compile_pattern(pattern: str) -> re.Pattern:
    """'/nodes/{node}/qemu/{vmid}' -> a regex with named groups; a parameter never spans a '/'."""
    parts = re.split(r"(\{[a-z_]+\})", pattern)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}/?$")


class Twin:
    name = "twin"
    prefix = ""
    # Operation -> (fast, realistic) seconds; see faults.Latency.
    latency_table: dict[str, tuple[float, float]] = {}

    def __init__(self, data_dir: Path, profile: str):
        self.data_dir = data_dir
        self.profile = profile
        self.faults = Faults()
        self.latency = Latency(profile, self.latency_table, self.faults)
        self.store = Store(data_dir / "state.json", self.initial_state())
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.requests: deque[dict] = deque(maxlen=LOG_SIZE)
        self.rejects: deque[dict] = deque(maxlen=LOG_SIZE)

    # -- for subclasses -----------------------------------------------------------------------------
    def initial_state(self) -> dict:
        return {}

    def health_detail(self) -> dict:
        return {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, compile_pattern(pattern), handler))

    def admit(self, request: Request, raw_path: str) -> None:
        """Runs first for every API request, before faults and routing (e.g. a rate limit). Raise to refuse."""

    def before(self, request: Request) -> None:
        """Runs before the handler of a routed request (authentication, validation). Raise to refuse."""

    def error_response(self, error: HttpError) -> Response:
        body = error.message if error.message.endswith("\n") else error.message + "\n"
        return Response(error.status, body.encode(), "text/plain; charset=utf-8", dict(error.headers))

    def not_found(self, request: Request) -> HttpError:
        return HttpError(404, "404 page not found")

    def lab_route(self, request: Request, path: str) -> Response | None:
        """A twin's own /_lab/ endpoints (e.g. first-start credentials); None when `path` isn't one."""
        return None

    def reject(self, request: Request, status: int, reasons: dict | str) -> None:
        """Record a request refused as invalid (what `/_lab/rejects` lists)."""
        self.rejects.append({"time": time.time(), "method": request.method, "path": request.path,
                             "status": status, "reasons": reasons})

    # -- dispatch -----------------------------------------------------------------------------------
    def dispatch(self, request: Request, raw_path: str) -> Response:
        if raw_path.startswith("/_lab/"):
            return self._lab(request, raw_path)
        started = time.monotonic()
        try:
            response = self._routed(request, raw_path)
        except HttpError as error:
            response = self.error_response(error)
        except Exception:  # noqa: BLE001 - a twin bug must answer 500, not kill the connection
            log.error("unhandled error on %s %s\n%s", request.method, raw_path, traceback.format_exc())
            response = self.error_response(HttpError(500, "internal error in the lab twin"))
        lost = response.status < 400 and self.faults.take("http_5xx_after", f"{request.method} {raw_path}")
        if lost:  # the request was carried out; only its answer is lost (an ambiguous error)
            response = self.error_response(HttpError(int(lost.get("status", 504)),
                                                     lost.get("message", "answer lost after the request was "
                                                                         "carried out (lab)")))
        self.requests.append({"time": time.time(), "method": request.method, "path": raw_path,
                              "status": response.status, "ms": round((time.monotonic() - started) * 1000, 1)})
        return response

    def _routed(self, request: Request, raw_path: str) -> Response:
        self.admit(request, raw_path)
        fault = self.faults.take("http_5xx", f"{request.method} {raw_path}")
        if fault:
            raise HttpError(int(fault.get("status", 500)), fault.get("message", "injected fault (lab)"))
        self.latency.sleep("request")
        if not raw_path.startswith(self.prefix):
            raise self.not_found(request)
        request.path = raw_path[len(self.prefix):] or "/"
        allowed = False
        for method, regex, handler in self.routes:
            match = regex.match(request.path)
            if not match:
                continue
            allowed = True
            if method == request.method or (method == "GET" and request.method == "HEAD"):
                request.params = match.groupdict()
                self.before(request)
                return handler(request)
        if allowed:
            raise HttpError(501, f"Method '{request.method} {request.path}' not implemented")
        raise self.not_found(request)

    def _lab(self, request: Request, path: str) -> Response:
        path = path.rstrip("/")
        if path == "/_lab/health":
            return Response.json({"ok": True, "twin": self.name, "profile": self.profile, **self.health_detail()})
        if path == "/_lab/requests" and request.method == "GET":
            return Response.json(list(self.requests))
        if path == "/_lab/requests" and request.method == "DELETE":
            self.requests.clear()
            self.rejects.clear()
            return Response.json({"cleared": True})
        if path == "/_lab/rejects":
            return Response.json(list(self.rejects))
        if path == "/_lab/faults":
            if request.method == "GET":
                return Response.json(self.faults.list())
            if request.method == "DELETE":
                self.faults.clear()
                return Response.json({"cleared": True})
            if request.method == "POST":
                try:
                    return Response.json(self.faults.add(request.json()), status=201)
                except (FaultError, ValueError) as exc:
                    return Response.json({"error": str(exc)}, status=400)
        return self.lab_route(request, path) or Response.json(
            {"error": f"no lab endpoint {request.method} {path}"}, status=404)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(self.command, url.path, dict(parse_qsl(url.query, keep_blank_values=True)),
                          {k.lower(): v for k, v in self.headers.items()}, body)
        response = self.server.twin.dispatch(request, url.path)
        self.send_response(response.status, response.reason)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass  # the twin keeps its own request log (no bodies, no headers: they may hold secrets)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, twin: Twin, context: ssl.SSLContext):
        self.twin = twin
        self.context = context
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake runs here, in the connection's thread, so a slow client can't stall accept().
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def arguments(description: str) -> argparse.ArgumentParser:
    """The command line every twin takes (the data dir names the lab's state folder, as pid checks need)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--profile", default="realistic", choices=("fast", "realistic"))
    return parser


def serve(twin: Twin, host: str, port: int, cert: str, key: str) -> int:
    """Serve until SIGTERM/SIGINT; the state is saved on the way out."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server = _Server((host, port), twin, context)

    def stop(signum, _frame) -> None:
        log.info("%s: got %s, stopping", twin.name, signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("%s twin on https://%s:%d (profile %s, data %s)", twin.name, host, port, twin.profile, twin.data_dir)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        twin.store.save()
    return 0
