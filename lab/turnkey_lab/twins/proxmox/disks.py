"""Volumes on the twin's storages: allocate, import, clone (linked/full), convert to base, free.

Names follow Proxmox: `local-zfs:vm-101-disk-0`, templates' `base-100-disk-0`, linked clones
`base-100-disk-0/vm-101-disk-0`. Every change to a storage holds that storage's lock, for as long as the
operation takes in the latency profile, like Proxmox's /var/lock/pve-manager/pve-storage-<id>.
"""

from __future__ import annotations

import re
import time

from .inventory import GIB, STORAGES
from .schema import parse_property_string
from .tasks import TaskError

DRIVE = re.compile(r"^(scsi\d+|virtio\d+|sata\d+|ide\d+|efidisk0|tpmstate0)$")
NEW_DISK = re.compile(r"^(?P<storage>[a-z][a-z0-9\-_.]*[a-z0-9]):(?P<size>\d+(\.\d+)?)$")
DRIVE_FORMAT = {"file": {"default_key": 1}}  # enough for splitting a drive string


def storage_lock(storage: str) -> str:
    return f"/var/lock/pve-manager/pve-storage-{storage}"


def split_drive(value: str) -> tuple[str, dict[str, str]]:
    parsed = parse_property_string(DRIVE_FORMAT, value)
    return parsed.pop("file", ""), parsed


def join_drive(volume: str, options: dict[str, str]) -> str:
    return ",".join([volume, *(f"{k}={v}" for k, v in options.items())])


def size_text(size: int) -> str:
    return f"{size // GIB}G" if size % GIB == 0 else f"{max(1, size // 1024 ** 2)}M"


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text or "0")
    if not match:
        return 0
    unit = {"": 1, "K": 1024, "M": 1024 ** 2, "G": GIB, "T": 1024 * GIB}[match.group(2)]
    return int(float(match.group(1)) * unit)


class Disks:
    def __init__(self, twin):
        self.twin = twin  # ProxmoxTwin: store, locks, latency

    def _check_storage(self, storage: str, content: str) -> None:
        if storage not in STORAGES:
            raise TaskError(f"storage '{storage}' does not exist")
        if content not in STORAGES[storage]["content"].split(","):
            raise TaskError(f"storage '{storage}' does not support content-type '{content}'")

    def _next_name(self, storage: str, vmid: int, prefix: str = "vm") -> str:
        with self.twin.store.lock:
            used = self.twin.store.data["volumes"][storage]
            n = 0
            while any(re.search(rf"[:/](vm|base)-{vmid}-disk-{n}$", v) for v in used):
                n += 1
        return f"{storage}:{prefix}-{vmid}-disk-{n}"

    def _add(self, storage: str, volid: str, record: dict) -> None:
        with self.twin.store.change() as data:
            data["volumes"][storage][volid] = {"volid": volid, "ctime": int(time.time()), **record}

    def allocate(self, vmid: int, key: str, value: str, log) -> str:
        """A drive value like `local-zfs:40,import-from=local:import/x.qcow2` -> the allocated drive."""
        if not DRIVE.match(key):
            return value
        spec, options = split_drive(value)
        if spec.endswith(":cloudinit"):  # Proxmox allocates the cloud-init drive as a small volume of the VM
            storage = spec.split(":", 1)[0]
            self._check_storage(storage, "images")
            volid = f"{storage}:vm-{vmid}-cloudinit"
            with self.twin.locks.hold(storage_lock(storage), "storage_lock_timeout"):
                self.twin.latency.sleep("alloc")
                self._add(storage, volid, {"format": "raw", "size": 4 * 1024 ** 2, "content": "images", "vmid": vmid})
            return join_drive(volid, {**options, "media": "cdrom"})
        match = NEW_DISK.match(spec)
        if not match:
            return value  # an existing volume, 'none', a cdrom, cloudinit
        storage = match.group("storage")
        self._check_storage(storage, "images")
        size = int(float(match.group("size")) * GIB)
        source = options.pop("import-from", None)
        if source:
            src_storage = source.split(":", 1)[0]
            with self.twin.store.lock:
                src = self.twin.store.data["volumes"].get(src_storage, {}).get(source)
            if not src:
                raise TaskError(f"unable to parse volume ID '{source}'" if ":" not in source
                                else f"volume '{source}' does not exist")
            size = max(size, src.get("virtual_size", src["size"]))
        if key == "efidisk0":
            size = 4 * 1024 ** 2 if options.get("efitype") == "4m" else 128 * 1024
        with self.twin.locks.hold(storage_lock(storage), "storage_lock_timeout"):
            volid = self._next_name(storage, vmid)
            if source:
                log(f"importing disk '{source}' to VM {vmid} ...")
                self.twin.latency.sleep("import")
                log(f"Successfully imported disk as '{key}:{volid}'")
            else:
                self.twin.latency.sleep("alloc")
            self._add(storage, volid, {"format": "raw", "size": size, "content": "images", "vmid": vmid,
                                       **({"imported_from": source} if source else {})})
        options["size"] = size_text(size)
        return join_drive(volid, options)

    def clone(self, volid: str, newid: int, full: bool, target_storage: str | None, log) -> str:
        storage, name = volid.split(":", 1)
        with self.twin.store.lock:
            source = dict(self.twin.store.data["volumes"][storage][volid])
        dest_storage = target_storage or storage
        # Where the disk's image came from follows it (a Talos node twin reads the schematic from there).
        origin = {"imported_from": source["imported_from"]} if source.get("imported_from") else {}
        self._check_storage(dest_storage, "images")
        with self.twin.locks.hold(storage_lock(dest_storage), "storage_lock_timeout"):
            if full:
                new = self._next_name(dest_storage, newid)
                log(f"create full clone of drive ({volid})")
                self.twin.latency.sleep("clone_full")
                self.twin.latency.sleep("clone_full_per_gib", source["size"] / GIB)
                self._add(dest_storage, new, {"format": "raw", "size": source["size"], "content": "images",
                                              "vmid": newid, **origin})
            else:
                base = name.split("/")[0]
                new_name = self._next_name(storage, newid).split(":", 1)[1]
                new = f"{storage}:{base}/{new_name}"
                log(f"create linked clone of drive ({volid})")
                self.twin.latency.sleep("clone_linked")
                self._add(storage, new, {"format": "raw", "size": source["size"], "content": "images",
                                         "vmid": newid, "parent": f"{storage}:{base}", **origin})
        return new

    def to_base(self, volid: str) -> str:
        """vm-100-disk-0 -> base-100-disk-0 (a template's disks become read-only bases)."""
        storage, name = volid.split(":", 1)
        if name.startswith("base-"):
            return volid
        new = f"{storage}:{name.replace('vm-', 'base-', 1)}"
        with self.twin.locks.hold(storage_lock(storage), "storage_lock_timeout"), self.twin.store.change() as data:
            record = data["volumes"][storage].pop(volid)
            data["volumes"][storage][new] = {**record, "volid": new}
        return new

    def free(self, volid: str) -> None:
        storage = volid.split(":", 1)[0]
        with self.twin.locks.hold(storage_lock(storage), "storage_lock_timeout"), self.twin.store.change() as data:
            children = [v for v, r in data["volumes"].get(storage, {}).items() if r.get("parent") == volid]
            if children:
                raise TaskError(f"base volume '{volid}' is still in use by linked cloned")
            data["volumes"].get(storage, {}).pop(volid, None)

    def volumes_of(self, config: dict) -> list[str]:
        result = []
        for key, value in config.items():
            if DRIVE.match(key) or key.startswith("unused"):
                volume, options = split_drive(str(value))
                if ":" in volume and (options.get("media") != "cdrom" or volume.endswith("-cloudinit")):
                    result.append(volume)
        return result
