"""A Git server over smart HTTP for the Flux tests: Python's http.server in front of the real `git http-backend`
(the CGI program git ships for exactly this), so source-controller clones through the Git protocol it uses
against any Git host. Read-only: only upload-pack (fetch/clone) is served."""

from __future__ import annotations

import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class GitHTTPServer:
    """Serves every repository under `root` at http://<address>:<port>/<name>.git."""

    def __init__(self, root: Path, address: str):
        git = shutil.which("git")
        if not git:
            raise RuntimeError("git is not installed")
        self.root = root

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                self.backend(b"")

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.backend(self.rfile.read(length))

            def backend(self, body: bytes) -> None:
                path, _sep, query = self.path.partition("?")
                env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
                       "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                       "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "REMOTE_ADDR": self.client_address[0]}
                done = subprocess.run([git, "http-backend"], input=body, env=env, capture_output=True, check=False)
                head, _sep, payload = done.stdout.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _colon, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = "http://%s:%d" % (address, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
