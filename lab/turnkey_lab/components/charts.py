"""The lab's Helm chart repository: the folder `tools/build lab-charts` makes (packaged charts and their
index.yaml), served read-only over HTTPS with a certificate from the lab CA on <net>.0.13:8443.

A Helm chart repository is static files: `GET /index.yaml` and `GET /<chart>-<version>.tgz` (the index's URLs
are relative). This is what layer 02's Flux HelmRepository objects fetch in the lab (`charts.repository_url`),
the way an air-gapped site points them at its own mirror. Only GET and HEAD are answered; no directory
listing (404); any other method is 405; TLS only (a plain-HTTP request gets no answer but a closed connection).
"""

from __future__ import annotations

import argparse
import http.server
import socketserver
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from ..state import LabError
from .base import Component, Health
from .deployment_process import tool_path

PROBE_TIMEOUT = 2
# The server's entry point (not `-m` on this module, which the package has imported already).
SERVE = "import sys; from turnkey_lab.components.charts import serve; serve(sys.argv[1:])"


def charts_folder() -> Path:
    """The built repository folder: $TURNKEY_LAB_CHARTS, else what tools.env records (tools/build lab-charts)."""
    path = Path(tool_path("lab-charts"))
    if not (path / "index.yaml").is_file():
        raise LabError(f"charts: {path} has no index.yaml; run `make tools` (tools/build lab-charts)")
    return path


def index_entries(text: str) -> dict[str, list[str]]:
    """{chart: [versions]} of a Helm repository index."""
    index = yaml.safe_load(text) or {}
    return {name: [str(entry.get("version")) for entry in entries]
            for name, entries in sorted((index.get("entries") or {}).items())}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files of one folder, GET and HEAD only: any other method is 405 (read-only)."""

    server_version = "turnkey-lab-charts"
    extensions_map = {".yaml": "application/x-yaml", ".tgz": "application/gzip", ".prov": "text/plain"}

    def _refuse(self):
        # Read a small body first: closing a TLS connection with unread data resets it before the answer arrives.
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 1 << 20:
            self.rfile.read(length)
        elif length:
            self.close_connection = True
        self.send_response(405, "Method Not Allowed")
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def list_directory(self, path):  # a chart repository lists its charts in index.yaml, not as HTML
        self.send_error(404, "Not Found")

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


class _TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """The TLS handshake happens in the request's thread, so a client that never finishes one stalls nobody."""

    daemon_threads = True

    def __init__(self, address, handler, context: ssl.SSLContext):
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            wrapped = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:  # plain HTTP, an untrusting client, a scan
            sys.stderr.write("%s TLS handshake failed: %s\n" % (client_address[0], exc))
            return
        super().finish_request(wrapped, client_address)


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The lab's Helm chart repository (read-only, HTTPS)")
    parser.add_argument("--state", required=True, help="the component's folder (names the lab's state folder)")
    parser.add_argument("--root", required=True, help="the folder with index.yaml and the packaged charts")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    root = str(Path(args.root).resolve())

    def handler(*handler_args, **kwargs):
        return _Handler(*handler_args, directory=root, **kwargs)

    server = _TLSServer((args.host, args.port), handler, context)
    sys.stderr.write("serving %s on https://%s:%d\n" % (root, args.host, args.port))
    sys.stderr.flush()
    server.serve_forever()


class ChartRepository(Component):
    name = "charts"
    host = "0.13"
    port = 8443
    startup_timeout = 30.0

    def prepare(self) -> None:
        super().prepare()
        charts_folder()  # fail in `lab up`, not in a restart loop inside the supervisor

    def command(self) -> list[str]:
        cert, key = self.tls_files
        return [sys.executable, "-c", SERVE,
                f"--state={self.data_dir}", f"--root={charts_folder()}", f"--host={self.ip}", f"--port={self.port}",
                f"--cert={cert}", f"--key={key}"]

    def index(self) -> dict[str, list[str]]:
        context = ssl.create_default_context(cafile=str(self.lab.ca_cert))
        with urllib.request.urlopen(f"{self.url}/index.yaml", timeout=PROBE_TIMEOUT, context=context) as answer:
            return index_entries(answer.read().decode())

    def health(self) -> Health:
        try:
            entries = self.index()
        except (OSError, urllib.error.URLError, ValueError, yaml.YAMLError, AttributeError):
            return Health(False, "unreachable")
        if not entries:
            return Health(False, "index.yaml lists no chart")
        return Health(True, "%d charts: %s" % (len(entries), ", ".join(
            "%s %s" % (name, "/".join(versions)) for name, versions in entries.items())))

    def endpoint(self) -> dict:
        endpoint = super().endpoint()
        try:
            endpoint["charts"] = index_entries((charts_folder() / "index.yaml").read_text())
        except (LabError, OSError, yaml.YAMLError, AttributeError):
            endpoint["charts"] = {}
        return endpoint
