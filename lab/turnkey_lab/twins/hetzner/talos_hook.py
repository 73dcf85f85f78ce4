"""The hook for Talos node twins: which servers boot a Talos snapshot, at which private IP, with which user data.

A server made from an image matching `selector` (a label selector, default `os=talos`) is written to
`talos-nodes.json` in the twin's data dir, with its status and private IPs, whenever that changes. Its
user data (what the real server's metadata service hands Talos at boot: a machine config) is written to
`user-data/<server id>` (0600, it holds the cluster's secrets) and named in the entry as `user_data_file`.
A Talos node twin then appears at that IP, configured from that file when there is one, in maintenance
mode otherwise; the files are the whole interface.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ...state import read_json, write_file, write_json
from . import labels

FILE = "talos-nodes.json"
USER_DATA_DIR = "user-data"
DEFAULT_SELECTOR = "os=talos"


class TalosNodes:
    def __init__(self, path: Path, selector: str = DEFAULT_SELECTOR):
        self.path = path
        self.user_data_dir = path.parent / USER_DATA_DIR
        self.selector = selector
        self._match = labels.selector(selector)
        self._last = read_json(path, None)

    def nodes(self, data: dict) -> list[dict]:
        images = data.get("images", {})
        found = []
        for server in sorted(data.get("servers", {}).values(), key=lambda s: s["id"]):
            image = images.get(str(server["image"]))
            if not image or not self._match(image.get("labels") or {}):
                continue
            user_data = server.get("user_data")
            found.append({"id": server["id"], "name": server["name"], "status": server["status"],
                          "image": image["id"], "image_labels": dict(image["labels"]),
                          "private_ips": [{"network": p["network"], "ip": p["ip"]} for p in server["private_net"]],
                          "has_user_data": bool(user_data),
                          "user_data_file": str(self.user_data_dir / str(server["id"])) if user_data else None})
        return found

    def _write_user_data(self, data: dict, nodes: list[dict]) -> None:
        """One file per listed server with user data (written once: user data never changes after creation);
        the files of servers no longer listed go."""
        wanted = {}
        for node in nodes:
            if node["user_data_file"]:
                wanted[Path(node["user_data_file"]).name] = data["servers"][str(node["id"])]["user_data"]
        if wanted:
            self.user_data_dir.mkdir(mode=0o700, exist_ok=True)
        for name, text in wanted.items():
            target = self.user_data_dir / name
            if not target.exists():
                write_file(target, text, mode=0o600)
        if self.user_data_dir.is_dir():
            for stale in self.user_data_dir.iterdir():
                if stale.name not in wanted and not stale.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        stale.unlink()

    def update(self, data: dict) -> None:
        current = {"selector": self.selector, "nodes": self.nodes(data)}
        if current != self._last:
            # the user data first: a reader that sees a node in the file finds its user data there
            self._write_user_data(data, current["nodes"])
            write_json(self.path, current)
            self._last = current
