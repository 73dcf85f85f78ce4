"""The hook for Talos node twins: which servers boot a Talos snapshot, and at which private IP.

A server made from an image matching `selector` (a label selector, default `os=talos`) is written to
`talos-nodes.json` in the twin's data dir, with its status and private IPs, whenever that changes. A
Talos node twin (maintenance mode) can then appear at that IP; the file is the whole interface.
"""

from __future__ import annotations

from pathlib import Path

from ...state import read_json, write_json
from . import labels

FILE = "talos-nodes.json"
DEFAULT_SELECTOR = "os=talos"


class TalosNodes:
    def __init__(self, path: Path, selector: str = DEFAULT_SELECTOR):
        self.path = path
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
            found.append({"id": server["id"], "name": server["name"], "status": server["status"],
                          "image": image["id"], "image_labels": dict(image["labels"]),
                          "private_ips": [{"network": p["network"], "ip": p["ip"]} for p in server["private_net"]],
                          "has_user_data": bool(server.get("user_data"))})
        return found

    def update(self, data: dict) -> None:
        current = {"selector": self.selector, "nodes": self.nodes(data)}
        if current != self._last:
            write_json(self.path, current)
            self._last = current
