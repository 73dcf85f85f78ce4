"""PowerDNS' HTTP API behind TLS, as a real deployment serves it (a proxy, or the in-cluster pod's ghostunnel): HTTPS
on address:port with the given certificate, each request passed to the plain-HTTP API at target."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading

import requests


@contextlib.contextmanager
def tls_front(address: str, port: int, cert, key, target: str):
    """Yields the front's https URL; target is the API's base URL (http://ip:port)."""

    class Forward(http.server.BaseHTTPRequestHandler):
        def forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            answer = requests.request(self.command, target + self.path, data=body, timeout=30, headers={
                name: self.headers[name] for name in ("X-API-Key", "Content-Type") if self.headers.get(name)})
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer((address, port), Forward)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://{address}:{port}"
    finally:
        server.shutdown()
        server.server_close()
