"""/nodes/{node}/storage...: storages, their content, and `download-url` (really downloads, over HTTPS).

download-url fetches the URL for real, verifying TLS against the lab CA (the lab's Image Factory twin
is the usual source), so the file's size and checksum are those of the bytes served.
"""

from __future__ import annotations

import hashlib
import re
import ssl
import time
import urllib.error
import urllib.request

from ..base import HttpError, Request, Response
from .disks import storage_lock
from .inventory import GIB, STORAGES
from .tasks import TaskError

# Extensions Proxmox accepts per content type (PVE::Storage's patterns).
EXTENSIONS = {"iso": r"\.(iso|img)", "vztmpl": r"\.tar\.(gz|xz|zst|bz2)", "import": r"\.(qcow2|raw|vmdk|ova|img)"}
SUBDIR = {"iso": "iso", "vztmpl": "vztmpl", "import": "import"}
FETCH_TIMEOUT = 30


class Storage:
    def __init__(self, twin, ca_file: str | None):
        self.twin = twin
        self.ca_file = ca_file
        twin.add("GET", "/nodes/{node}/storage", self.list)
        twin.add("GET", "/nodes/{node}/storage/{storage}/content", self.content)
        twin.add("POST", "/nodes/{node}/storage/{storage}/download-url", self.download)

    def _storage(self, request: Request) -> str:
        storage = request.params["storage"]
        if storage not in STORAGES:
            raise HttpError(500, f"storage '{storage}' does not exist")
        return storage

    def _usage(self, storage: str) -> int:
        with self.twin.store.lock:
            return sum(v["size"] for v in self.twin.store.data["volumes"][storage].values())

    def list(self, request: Request) -> Response:
        self.twin.node_or_fail(request)
        wanted = request.context["params"].get("content")
        result = []
        for name, spec in STORAGES.items():
            if wanted and wanted not in spec["content"].split(","):
                continue
            used = self._usage(name)
            result.append({"storage": name, "type": spec["type"], "content": spec["content"], "active": 1,
                           "enabled": 1, "shared": spec["shared"], "total": spec["total"], "used": used,
                           "avail": spec["total"] - used, "used_fraction": used / spec["total"]})
        return self.twin.ok(result)

    def content(self, request: Request) -> Response:
        storage = self._storage(request)
        params = request.context["params"]
        with self.twin.store.lock:
            volumes = [dict(v) for v in self.twin.store.data["volumes"][storage].values()]
        result = []
        for volume in sorted(volumes, key=lambda v: v["volid"]):
            if params.get("content") and volume["content"] != params["content"]:
                continue
            if params.get("vmid") and str(volume.get("vmid")) != params["vmid"]:
                continue
            entry = {k: volume[k] for k in ("volid", "format", "size", "content", "ctime") if k in volume}
            if "vmid" in volume:
                entry["vmid"] = volume["vmid"]
            if volume.get("parent"):
                entry["parent"] = volume["parent"].split(":", 1)[1]
            result.append(entry)
        return self.twin.ok(result)

    def download(self, request: Request) -> Response:
        self.twin.node_or_fail(request)
        storage = self._storage(request)
        params = request.context["params"]
        content, filename = params["content"], params["filename"]
        if content not in STORAGES[storage]["content"].split(","):
            raise HttpError(500, f"storage '{storage}' does not support content-type '{content}'")
        if not re.fullmatch(r"[^/\s]+" + EXTENSIONS.get(content, ""), filename):
            raise HttpError(500, f"invalid filename or wrong extension '{filename}'")
        volid = f"{storage}:{SUBDIR[content]}/{filename}"
        with self.twin.store.lock:
            if volid in self.twin.store.data["volumes"][storage]:
                path = f"{STORAGES[storage].get('path', '')}/{SUBDIR[content]}/{filename}"
                raise HttpError(500, f"refusing to override existing file '{path}'")

        def work(log):
            path = f"{STORAGES[storage].get('path', '')}/{SUBDIR[content]}/{filename}"
            log(f"downloading {params['url']} to {path}")
            verify = params.get("verify-certificates", "1") in ("1", "true", "yes", "on")
            data = self._fetch(params["url"], verify)
            self.twin.latency.sleep("download")
            self.twin.latency.sleep("download_per_mib", len(data) / 1024 ** 2)
            log(f"download of '{params['url']}' to '{path}' finished ({len(data)} bytes)")
            if params.get("checksum"):
                got = hashlib.new(params["checksum-algorithm"], data).hexdigest()
                if got != params["checksum"].lower():
                    raise TaskError(f"checksum mismatch: got '{got}' != expect '{params['checksum']}'")
                log("checksum verified")
            agent = self._guest_agent(params["url"], verify)
            with self.twin.locks.hold(storage_lock(storage), "storage_lock_timeout"), \
                    self.twin.store.change() as state:
                state["volumes"][storage][volid] = {
                    "volid": volid, "format": filename.rsplit(".", 1)[-1], "size": len(data), "content": content,
                    "ctime": int(time.time()), "url": params["url"],
                    # A Talos disk image is ~1.2 GiB virtual; an import makes a disk at least that big.
                    "virtual_size": 2 * GIB, "sha256": hashlib.sha256(data).hexdigest(),
                    **({"guest_agent": agent} if agent is not None else {})}

        upid = self.twin.tasks.start("download", filename, request.context["who"].name, work)
        return self.twin.ok(upid)

    def _guest_agent(self, url: str, verify: bool) -> bool | None:
        """Whether a Talos image from the Image Factory runs the QEMU guest agent: only with the
        siderolabs/qemu-guest-agent extension in its schematic (asked of the factory). None: not a factory
        image, or the factory does not say."""
        factory = re.match(r"(https://[^/]+)/image/([0-9a-f]{64})/", url)
        if not factory:
            return None
        try:
            schematic = self._fetch(f"{factory[1]}/schematics/{factory[2]}", verify).decode(errors="replace")
        except TaskError:
            return None
        return "siderolabs/qemu-guest-agent" in schematic

    def _fetch(self, url: str, verify: bool) -> bytes:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not verify:  # verify-certificates=0
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT, context=context) as answer:
                return answer.read()
        except urllib.error.HTTPError as exc:
            raise TaskError(f"download failed: {exc.code} {exc.reason}") from None
        except (OSError, urllib.error.URLError) as exc:
            raise TaskError(f"download failed: {getattr(exc, 'reason', exc)}") from None
