"""The privilege checks qemu-server makes in its code, beyond the schema's `permissions.check`.

The schema only says, for VM create, "user: all" and, in prose, what the handler checks itself: VM.Allocate on
/vms/{vmid} (or the pool), VM.Config.* for each option group, Datastore.AllocateSpace on every storage a new
disk lands on, access to every volume used or imported, SDN.Use on every bridge/VLAN. Clone, config changes
and resize likewise check storages and bridges in code. This module mirrors those checks (qemu-server's
API2/Qemu.pm: check_vm_modify_config_perm, check_storage_access, check_bridge_access, the clone's storage
check), so a token that lacks one fails here with Proxmox's 403 text, before anything happens. root@pam
(without privilege separation) skips them, as in Proxmox.
"""

from __future__ import annotations

import re

from ..base import HttpError
from .auth import Identity, permissions

# qemu-server's option groups (check_vm_modify_config_perm); drives, unusedN, usbN, hostpciN and tags are
# checked elsewhere, serialN below.
OPTION_GROUPS = {
    "VM.Config.CPU": {"cores", "cpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus", "affinity"},
    "VM.Config.Memory": {"memory", "balloon", "shares"},
    "VM.Config.HWType": {"acpi", "hotplug", "kvm", "machine", "scsihw", "smbios1", "tablet", "vga", "watchdog",
                         "audio0"},
    "VM.Config.Options": {"agent", "autostart", "bios", "description", "keyboard", "localtime",
                          "migrate_downtime", "migrate_speed", "name", "onboot", "ostype", "protection", "reboot",
                          "startdate", "startup", "tdf", "template"},
    "VM.PowerMgmt": {"freeze"},
    "VM.Config.Disk": {"boot", "bootdisk", "vmstatestorage"},
}
CLOUDINIT_OPTIONS = {"cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain",
                     "sshkeys"}
DRIVE = re.compile(r"(ide\d+|sata\d+|scsi\d+|virtio\d+|efidisk0|tpmstate0)")
NEW_DISK = re.compile(r"(?:([a-z][a-z0-9\-_.]*[a-z0-9]):)?(\d+(?:\.\d+)?)")  # STORAGE:SIZE_IN_GiB
# Request parameters that are not VM options (create and update).
NOT_OPTIONS = {"vmid", "node", "storage", "pool", "start", "force", "unique", "archive", "bwlimit",
               "live-restore", "ha-managed", "digest", "delete", "revert", "skiplock", "background_delay",
               "skip_cloud_init"}
LOCAL_ZONE = "localnetwork"  # a plain Linux bridge is in SDN zone 'localnetwork'

CREATE = re.compile(r"^/nodes/[^/]+/qemu/?$")
CONFIG = re.compile(r"^/nodes/[^/]+/qemu/(\d+)/config/?$")
CLONE = re.compile(r"^/nodes/[^/]+/qemu/(\d+)/clone/?$")
RESIZE = re.compile(r"^/nodes/[^/]+/qemu/(\d+)/resize/?$")


class Denied(HttpError):
    def __init__(self, what: str):
        super().__init__(403, f"Permission check failed ({what})")


def check_request(state: dict, who: Identity, method: str, path: str, params: dict) -> None:
    """Raise Proxmox's 403 when the request needs a privilege the caller lacks (nothing for other routes)."""
    if who.user == "root@pam" and (not who.token or not state["tokens"].get(who.token, {}).get("privsep")):
        return
    checks = _Checks(state, who)
    if method == "POST" and CREATE.match(path):
        checks.create(params)
    elif method in ("POST", "PUT") and (match := CONFIG.match(path)):
        checks.update(int(match.group(1)), params)
    elif method == "POST" and (match := CLONE.match(path)):
        checks.clone(int(match.group(1)), params)
    elif method == "PUT" and (match := RESIZE.match(path)):
        checks.resize(int(match.group(1)), params)


def _options(value: str) -> dict[str, str]:
    """'local-zfs:0,import-from=x,ssd=1' -> {'file': 'local-zfs:0', 'import-from': 'x', 'ssd': '1'}."""
    result = {}
    for part in filter(None, str(value).split(",")):
        key, sep, item = part.partition("=")
        if sep and key != "file":
            result[key] = item
        else:
            result.setdefault("file", part if not sep else item)
    return result


def _is_cloudinit(drive: dict) -> bool:
    return drive.get("file", "").endswith(":cloudinit") or "-cloudinit" in drive.get("file", "")


def _is_cdrom(drive: dict) -> bool:
    return drive.get("media") == "cdrom" or drive.get("file") in ("cdrom", "none") or _is_cloudinit(drive)


class _Checks:
    def __init__(self, state: dict, who: Identity):
        self.state = state
        self.who = who

    # -- primitives (RPCEnvironment::check, check_any, check_vm_perm) -----------------------------------
    def has(self, path: str, privs: list[str], any_of: bool = False) -> bool:
        have = permissions(self.state, self.who, path)
        return any(p in have for p in privs) if any_of else all(p in have for p in privs)

    def require(self, path: str, privs: list[str], any_of: bool = False) -> None:
        if not self.has(path, privs, any_of):
            missing = "|".join(privs) if any_of else next(p for p in privs if p not in
                                                         permissions(self.state, self.who, path))
            raise Denied(f"{path}, {missing}")

    def require_vm(self, vmid: int, pool: str | None, privs: list[str], any_of: bool = False) -> None:
        if pool and self.has(f"/pool/{pool}", privs, any_of):
            return
        self.require(f"/vms/{vmid}", privs, any_of)

    # -- the groups of checks ---------------------------------------------------------------------------
    def options(self, vmid: int, pool: str | None, keys: list[str]) -> None:
        """check_vm_modify_config_perm."""
        for key in keys:
            if key in NOT_OPTIONS or DRIVE.fullmatch(key) or key == "cdrom" or key == "tags" or \
                    re.fullmatch(r"(unused|serial|usb|hostpci)\d+", key):
                continue
            group = next((priv for priv, names in OPTION_GROUPS.items() if key in names), None)
            if group is None and re.fullmatch(r"numa\d+", key):
                group = "VM.Config.CPU"
            if group:
                self.require_vm(vmid, pool, [group])
            elif re.fullmatch(r"net\d+", key):
                self.require_vm(vmid, pool, ["VM.Config.Network"])
            elif key in CLOUDINIT_OPTIONS or re.fullmatch(r"ipconfig\d+", key):
                self.require_vm(vmid, pool, ["VM.Config.Cloudinit", "VM.Config.Network"], any_of=True)
            elif key == "vmstate":
                self.require_vm(vmid, pool, ["VM.Config.Disk", "VM.PowerMgmt"])
            else:
                raise HttpError(500, f"only root can set '{key}' config")
        if "tags" in keys:  # tags need the right to change options (user-tag-access 'free', the default)
            self.require_vm(vmid, pool, ["VM.Config.Options"])

    def serial(self, vmid: int, pool: str | None, params: dict) -> None:
        for key, value in params.items():
            if re.fullmatch(r"serial\d+", key):
                if value != "socket":
                    raise HttpError(500, f"only root can set '{key}' config for real devices")
                self.require_vm(vmid, pool, ["VM.Config.HWType"])

    def bridges(self, config: dict) -> None:
        """check_bridge_access: SDN.Use on /sdn/zones/<zone>/<bridge>[/<vlan>]."""
        for key, value in config.items():
            if re.fullmatch(r"net\d+", key):
                net = _options(value)
                bridge = net.get("bridge")
                if bridge:
                    tag = f"/{net['tag']}" if net.get("tag") else ""
                    self.require(f"/sdn/zones/{LOCAL_ZONE}/{bridge}{tag}", ["SDN.Use"])

    def volume_access(self, vmid: int, volid: str) -> None:
        """PVE::Storage::check_volume_access."""
        storage, _, name = volid.partition(":")
        if not name:
            raise HttpError(500, "Only root can pass arbitrary filesystem paths.")
        if self.has(f"/storage/{storage}", ["Datastore.Allocate"]):
            return
        owner = re.search(r"(?:vm|base)-(\d+)-", name)
        if name.startswith(("import/", "iso/", "vztmpl/")):
            self.require(f"/storage/{storage}", ["Datastore.AllocateSpace", "Datastore.Audit"], any_of=True)
        elif owner and int(owner.group(1)) == vmid:
            return
        elif owner:
            self.require(f"/storage/{storage}", ["Datastore.Audit"])
            self.require(f"/vms/{owner.group(1)}", ["VM.Config.Disk"])
        else:
            raise HttpError(500, f"missing privileges to access {volid}")

    def storage_access(self, vmid: int, params: dict, default_storage: str | None = None) -> None:
        """check_storage_access: a new disk needs Datastore.AllocateSpace on its storage; a used or imported
        volume needs access to it (a VM's disk: VM.Clone on that VM)."""
        for key, value in params.items():
            if not DRIVE.fullmatch(key):
                continue
            drive = _options(value)
            volid = drive.get("file", "")
            new = NEW_DISK.fullmatch(volid)
            if not volid or volid == "none" or _is_cloudinit(drive):
                pass
            elif _is_cdrom(drive) and volid == "cdrom":
                self.require("/", ["Sys.Console"])
            elif new and not _is_cdrom(drive):
                storage = new.group(1) or default_storage
                if not storage:
                    raise HttpError(500, "no storage ID specified (and no default storage)")
                self.require(f"/storage/{storage}", ["Datastore.AllocateSpace"])
            else:
                self.volume_access(vmid, volid)
            source = drive.get("import-from")
            if source:
                owner = re.search(r":(?:vm|base)-(\d+)-", source)
                if owner:
                    self.require(f"/vms/{owner.group(1)}", ["VM.Clone"])
                else:
                    self.volume_access(vmid, source)

    # -- per endpoint -----------------------------------------------------------------------------------
    def create(self, params: dict) -> None:
        vmid, pool = int(params["vmid"]), params.get("pool")
        if params.get("storage"):
            self.require(f"/storage/{params['storage']}", ["Datastore.AllocateSpace"])
        if not (self.has(f"/vms/{vmid}", ["VM.Allocate"]) or (pool and self.has(f"/pool/{pool}", ["VM.Allocate"]))):
            raise Denied(f"/vms/{vmid}, VM.Allocate")
        self.serial(vmid, pool, params)
        self.bridges(params)
        self.options(vmid, pool, list(params))
        self.storage_access(vmid, params, params.get("storage"))

    def update(self, vmid: int, params: dict) -> None:
        current = self._config(vmid)
        deleted = [k for k in re.split(r"[,;\s]+", params.get("delete", "")) if k]
        for key in deleted:
            if DRIVE.fullmatch(key):
                self._drive_privilege(vmid, _options(current.get(key, "")))
        for key, value in params.items():
            if DRIVE.fullmatch(key):
                self._drive_privilege(vmid, _options(value))
        self.serial(vmid, None, params)
        self.bridges({k: v for k, v in params.items() if k not in NOT_OPTIONS})
        self.options(vmid, None, deleted + list(params))
        self.storage_access(vmid, params)

    def _drive_privilege(self, vmid: int, drive: dict) -> None:
        if _is_cloudinit(drive):
            self.require_vm(vmid, None, ["VM.Config.Cloudinit"])
        elif _is_cdrom(drive):
            self.require_vm(vmid, None, ["VM.Config.CDROM"])
        else:
            self.require_vm(vmid, None, ["VM.Config.Disk"])

    def clone(self, vmid: int, params: dict) -> None:
        """Datastore.AllocateSpace on the storage of every disk copied (or the target storage), SDN.Use on
        the source's bridges (the clone gets them)."""
        config = self._config(vmid)
        target = params.get("storage")
        if target:
            self.require(f"/storage/{target}", ["Datastore.AllocateSpace"])
        for key, value in config.items():
            if not DRIVE.fullmatch(key):
                continue
            drive = _options(value)
            if _is_cdrom(drive) or drive.get("file") in ("", "none"):
                continue
            self.require(f"/storage/{target or drive['file'].partition(':')[0]}", ["Datastore.AllocateSpace"])
        self.bridges(config)

    def resize(self, vmid: int, params: dict) -> None:
        drive = _options(self._config(vmid).get(params.get("disk", ""), ""))
        if drive.get("file"):
            self.require(f"/storage/{drive['file'].partition(':')[0]}", ["Datastore.AllocateSpace"])

    def _config(self, vmid: int) -> dict:
        vm = self.state["vms"].get(str(vmid)) or self.state["vms"].get(vmid)
        return dict(vm["config"]) if vm else {}
