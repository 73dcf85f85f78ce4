"""/nodes/{node}/qemu/...: VMs, their config, power state, templates and clones.

Error texts are Proxmox's (qemu-server): "VM is locked (clone)", "VM 100 already running", ... Config
changes hold the VM's config lock (/var/lock/qemu-server/lock-<vmid>.conf); a VM being created or cloned
carries `lock: create` in its config until the task ends, like the real thing.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import secrets
import time
import uuid

from ..base import HttpError, Request, Response
from .auth import require
from .disks import DRIVE, join_drive, parse_size, size_text, split_drive
from .inventory import NETWORK
from .schema import parse_property_string
from .tasks import TaskError

# Parameters of create/update that are not VM config keys.
NOT_CONFIG = {"node", "vmid", "start", "storage", "pool", "force", "unique", "archive", "bwlimit", "live-restore",
              "import-working-storage", "ha-managed", "digest", "delete", "revert", "skiplock",
              "background_delay"}
NET_FORMAT = {m: {"keyAlias": "model", "alias": "macaddr"} for m in
              ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "i82551", "ne2k_pci", "pcnet")}


def config_lock(vmid: int | str) -> str:
    return f"/var/lock/qemu-server/lock-{vmid}.conf"


def digest(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _mac() -> str:
    return "BC:24:11:" + ":".join(f"{b:02X}" for b in secrets.token_bytes(3))  # Proxmox's OUI


def normalize_net(value: str) -> str:
    """`virtio,bridge=vmbr0` -> `virtio=BC:24:11:..,bridge=vmbr0` (Proxmox assigns the MAC)."""
    parsed = parse_property_string({**NET_FORMAT, "model": {"default_key": 1}}, value)
    model = parsed.pop("model", "virtio")
    mac = parsed.pop("macaddr", None) or _mac()
    return ",".join([f"{model}={mac}", *(f"{k}={v}" for k, v in parsed.items())])


def memory_mib(config: dict) -> int:
    value = str(config.get("memory", "512"))
    return int(parse_property_string({"current": {"default_key": 1}}, value).get("current", 512))


class Qemu:
    def __init__(self, twin):
        self.twin = twin
        add = twin.add
        base = "/nodes/{node}/qemu"
        add("GET", base, self.list)
        add("POST", base, self.create)
        add("GET", base + "/{vmid}", self.index)
        add("DELETE", base + "/{vmid}", self.destroy)
        add("GET", base + "/{vmid}/config", self.get_config)
        add("POST", base + "/{vmid}/config", self.update_async)
        add("PUT", base + "/{vmid}/config", self.update_sync)
        add("GET", base + "/{vmid}/status/current", self.current)
        for action in ("start", "stop", "shutdown"):
            add("POST", base + f"/{{vmid}}/status/{action}", getattr(self, action))
        add("POST", base + "/{vmid}/status/reboot", self.reboot)
        add("PUT", base + "/{vmid}/resize", self.resize)
        add("POST", base + "/{vmid}/template", self.template)
        add("POST", base + "/{vmid}/clone", self.clone)
        add("GET", base + "/{vmid}/agent/network-get-interfaces", self.interfaces)

    # -- helpers ------------------------------------------------------------------------------------
    def vm(self, vmid: int | str) -> dict:
        with self.twin.store.lock:
            vm = self.twin.store.data["vms"].get(str(vmid))
            if vm is None:
                raise HttpError(500, f"Configuration file 'nodes/{self.twin.node}/qemu-server/{vmid}.conf' "
                                     "does not exist")
            return copy.deepcopy(vm)

    def _save(self, vmid: int | str, vm: dict) -> None:
        with self.twin.store.change() as data:
            data["vms"][str(vmid)] = vm

    @staticmethod
    def check_lock(vm: dict, skiplock: bool = False) -> None:
        lock = vm["config"].get("lock")
        if lock and not skiplock:
            raise TaskError(f"VM is locked ({lock})")

    def _reserve(self, vmid: int, node: str, error_prefix: str = "") -> None:
        with self.twin.store.change() as data:
            if str(vmid) in data["vms"]:
                raise HttpError(500, f"{error_prefix}VM {vmid} already exists on node '{node}'")
            data["vms"][str(vmid)] = {"config": {"lock": "create"}, "status": "stopped", "node": node}

    def _drop(self, vmid: int) -> None:
        """Undo a failed create/clone: the reservation and whatever disks it got."""
        with self.twin.store.change() as data:
            data["vms"].pop(str(vmid), None)
            for volumes in data["volumes"].values():
                for volid in [v for v, r in volumes.items() if r.get("vmid") == vmid]:
                    del volumes[volid]

    def _config_changes(self, vmid: int, params: dict, log) -> tuple[dict, list[str]]:
        changes = {}
        for key, value in params.items():
            if key in NOT_CONFIG:
                continue
            if key.startswith("net"):
                value = normalize_net(value)
            changes[key] = self.twin.disks.allocate(vmid, key, value, log) if DRIVE.match(key) \
                else self.twin.typed(key, value)
        deletes = [k for k in params.get("delete", "").replace(";", ",").split(",") if k.strip()]
        return changes, deletes

    # -- read ---------------------------------------------------------------------------------------
    def summary(self, vmid: str, vm: dict) -> dict:
        config = vm["config"]
        disk = sum(parse_size(split_drive(str(v))[1].get("size", "0")) for k, v in config.items()
                   if DRIVE.match(k))
        running = vm["status"] == "running"
        summary = {"vmid": int(vmid), "name": config.get("name", f"VM {vmid}"), "status": vm["status"],
                   "cpus": int(config.get("cores", 1)) * int(config.get("sockets", 1)),
                   "maxmem": memory_mib(config) * 1024 ** 2, "maxdisk": disk, "disk": 0, "netin": 0, "netout": 0,
                   "uptime": int(time.time() - vm["started"]) if running else 0,
                   "mem": memory_mib(config) * 1024 ** 2 // 3 if running else 0, "cpu": 0.01 if running else 0}
        if config.get("template"):
            summary["template"] = 1
        if config.get("lock"):
            summary["lock"] = config["lock"]
        if config.get("tags"):
            summary["tags"] = config["tags"]
        if running:
            summary["pid"] = vm.get("pid", 0)
        return summary

    def list(self, request: Request) -> Response:
        self.twin.node_or_fail(request)
        with self.twin.store.lock:
            vms = copy.deepcopy(self.twin.store.data["vms"])
        return self.twin.ok([self.summary(vmid, vm) for vmid, vm in sorted(vms.items(), key=lambda i: int(i[0]))])

    def index(self, request: Request) -> Response:
        self.vm(request.params["vmid"])
        return self.twin.ok([{"subdir": s} for s in ("config", "status", "clone", "template", "agent")])

    def get_config(self, request: Request) -> Response:
        config = self.vm(request.params["vmid"])["config"]
        return self.twin.ok({**config, "digest": digest(config)})

    def current(self, request: Request) -> Response:
        vmid = request.params["vmid"]
        vm = self.vm(vmid)
        summary = self.summary(vmid, vm)
        summary.update(qmpstatus=vm["status"], ha={"managed": 0})
        if "agent" in vm["config"]:
            summary["agent"] = 1 if parse_property_string({"enabled": {"default_key": 1}}, vm["config"]["agent"]
                                                          ).get("enabled") in ("1", "true", "yes", "on") else 0
        return self.twin.ok(summary)

    # -- create / update ----------------------------------------------------------------------------
    def create(self, request: Request) -> Response:
        node = self.twin.node_or_fail(request)
        params = request.context["params"]
        vmid = int(params["vmid"])
        # The schema says 'user: all'; qemu-server checks VM.Allocate itself.
        require(self.twin.store.data, request.context["who"], f"/vms/{vmid}", ["VM.Allocate"])
        self._reserve(vmid, node, f"unable to create VM {vmid} - ")

        def work(log):
            with self.twin.locks.hold(config_lock(vmid), "config_lock_timeout"):
                changes, _ = self._config_changes(vmid, params, log)
                self.twin.latency.sleep("create")
                config = {"smbios1": f"uuid={uuid.uuid4()}", "vmgenid": str(uuid.uuid4()),
                          "meta": f"creation-qemu=10.1.2,ctime={int(time.time())}", **changes}
                self._save(vmid, {"config": config, "status": "stopped", "node": node})
            if params.get("start") in ("1", "true", "yes", "on"):
                self._start(vmid, log)

        upid = self.twin.tasks.start("qmcreate", str(vmid), request.context["who"].name, work,
                                     on_error=lambda: self._drop(vmid))
        return self.twin.ok(upid)

    def _update(self, vmid: int, params: dict, log) -> None:
        with self.twin.locks.hold(config_lock(vmid), "config_lock_timeout"):
            vm = self.vm(vmid)
            self.check_lock(vm, params.get("skiplock") in ("1", "true"))
            if params.get("digest") and params["digest"] != digest(vm["config"]):
                raise TaskError("detected modified configuration - file changed by other user? Try again.")
            changes, deletes = self._config_changes(vmid, params, log)
            vm = self.vm(vmid)  # disks may have taken a while; re-read before writing
            for key in deletes:
                value = vm["config"].pop(key, None)
                if value is not None and DRIVE.match(key) and ":" in split_drive(str(value))[0]:
                    index = next(i for i in range(256) if f"unused{i}" not in vm["config"])
                    vm["config"][f"unused{index}"] = split_drive(str(value))[0]
            vm["config"].update(changes)
            self._save(vmid, vm)

    def update_sync(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])
        self.vm(vmid)
        try:
            self._update(vmid, request.context["params"], lambda line: None)
        except TaskError as exc:
            raise HttpError(500, str(exc)) from None
        return self.twin.ok(None)

    def update_async(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])
        self.vm(vmid)
        params = request.context["params"]
        upid = self.twin.tasks.start("qmconfig", str(vmid), request.context["who"].name,
                                     lambda log: self._update(vmid, params, log))
        return self.twin.ok(upid)

    # -- power --------------------------------------------------------------------------------------
    def _network_identity(self, vmid: int, config: dict) -> dict:
        """What a Talos node twin will answer at: cloud-init ipconfig0 if set, else the VM name."""
        net0 = parse_property_string({**NET_FORMAT, "model": {"default_key": 1}}, config.get("net0", ""))
        identity = {"vmid": vmid, "hostname": config.get("name", f"vm{vmid}"), "mac": net0.get("macaddr"),
                    "bridge": net0.get("bridge"), "source": "name", "ip": None}
        ipconfig = parse_property_string({}, config["ipconfig0"]) if "ipconfig0" in config else {}
        if ipconfig.get("ip") and ipconfig["ip"] != "dhcp":
            interface = ipaddress.ip_interface(ipconfig["ip"])
            identity.update(ip=str(interface.ip), prefix=interface.network.prefixlen, gateway=ipconfig.get("gw"),
                            source="ipconfig0")
        for key in ("nameserver", "searchdomain"):
            if key in config:
                identity[key] = config[key]
        images = [r for v in self.twin.disks.volumes_of(config) for r in [self.twin.volume(v)] if r]
        identity["images"] = [r["imported_from"] for r in images if r.get("imported_from")]
        # Talos runs the guest agent only when its image has the extension (the download asked the factory)
        identity["guest_agent"] = not any((self.twin.volume(v) or {}).get("guest_agent") is False
                                          for v in identity["images"])
        return identity

    def _start(self, vmid: int, log) -> None:
        with self.twin.locks.hold(config_lock(vmid), "config_lock_timeout"):
            vm = self.vm(vmid)
            self.check_lock(vm)
            if vm["config"].get("template"):
                raise TaskError("you can't start a vm if it's a template")
            if vm["status"] == "running":
                raise TaskError(f"VM {vmid} already running")
            bridges = {n["iface"] for n in NETWORK if n["type"] == "bridge"}
            for key, value in vm["config"].items():
                bridge = parse_property_string({**NET_FORMAT, "model": {"default_key": 1}}, value).get("bridge") \
                    if key.startswith("net") and key[3:].isdigit() else None
                if bridge and bridge not in bridges:
                    raise TaskError(f"bridge '{bridge}' does not exist")
            self.twin.latency.sleep("start")
            vm.update(status="running", started=time.time(), pid=secrets.randbelow(60000) + 2000,
                      network=self._network_identity(vmid, vm["config"]))
            self._save(vmid, vm)
        log(f"VM {vmid} started")

    def _power(self, request: Request, kind: str, work) -> Response:
        vmid = int(request.params["vmid"])
        self.vm(vmid)
        return self.twin.ok(self.twin.tasks.start(kind, str(vmid), request.context["who"].name, work))

    def start(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])
        return self._power(request, "qmstart", lambda log: self._start(vmid, log))

    def _stop(self, vmid: int, graceful: bool) -> None:
        with self.twin.locks.hold(config_lock(vmid), "config_lock_timeout"):
            vm = self.vm(vmid)
            if graceful and vm["status"] != "running":
                raise TaskError(f"VM {vmid} not running")
            self.twin.latency.sleep("shutdown" if graceful else "stop")
            vm.update(status="stopped", started=None)
            vm.pop("pid", None)
            self._save(vmid, vm)

    def stop(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])
        return self._power(request, "qmstop", lambda log: self._stop(vmid, False))

    def shutdown(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])
        return self._power(request, "qmshutdown", lambda log: self._stop(vmid, True))

    def reboot(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])

        def work(log):
            self._stop(vmid, True)
            self._start(vmid, log)

        return self._power(request, "qmreboot", work)

    def resize(self, request: Request) -> Response:
        """`size=40G` (absolute) or `+10G`; growing only, like Proxmox."""
        vmid = int(request.params["vmid"])
        self.vm(vmid)
        params = request.context["params"]

        def work(log):
            with self.twin.locks.hold(config_lock(vmid), "config_lock_timeout"):
                vm = self.vm(vmid)
                self.check_lock(vm, params.get("skiplock") in ("1", "true"))
                disk = params["disk"]
                if disk not in vm["config"]:
                    raise TaskError(f"disk '{disk}' does not exist")
                volume, options = split_drive(str(vm["config"][disk]))
                current = parse_size(options.get("size", "0"))
                wanted = current + parse_size(params["size"][1:]) if params["size"].startswith("+") \
                    else parse_size(params["size"])
                if wanted < current:
                    raise TaskError("shrinking disks is not supported")
                options["size"] = size_text(wanted)
                vm["config"][disk] = join_drive(volume, options)
                with self.twin.store.change() as data:
                    record = data["volumes"].get(volume.split(":", 1)[0], {}).get(volume)
                    if record:
                        record["size"] = wanted
                    data["vms"][str(vmid)] = vm
                log(f"Image resized to {wanted} bytes")

        return self.twin.ok(self.twin.tasks.start("resize", str(vmid), request.context["who"].name, work))

    # -- destroy / template / clone -----------------------------------------------------------------
    def destroy(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])
        vm = self.vm(vmid)
        if vm["status"] == "running":
            raise HttpError(500, f"VM {vmid} is running - destroy failed")
        purge = request.context["params"].get("purge") in ("1", "true")

        def work(log):
            with self.twin.locks.hold(config_lock(vmid), "config_lock_timeout"):
                current = self.vm(vmid)
                self.check_lock(current, request.context["params"].get("skiplock") in ("1", "true"))
                for volid in self.twin.disks.volumes_of(current["config"]):
                    self.twin.disks.free(volid)
                    log(f"Removed volume '{volid}'")
                with self.twin.store.change() as data:
                    data["vms"].pop(str(vmid), None)
                    if purge:
                        data["acl"] = [e for e in data["acl"] if e["path"] != f"/vms/{vmid}"]
                self.twin.latency.sleep("destroy")

        return self.twin.ok(self.twin.tasks.start("qmdestroy", str(vmid), request.context["who"].name, work))

    def template(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])
        self.vm(vmid)

        def work(log):
            with self.twin.locks.hold(config_lock(vmid), "config_lock_timeout"):
                vm = self.vm(vmid)
                self.check_lock(vm)
                if vm["status"] == "running":
                    raise TaskError("you can't convert a VM to template if VM is running")
                # Data disks become read-only bases; a cloud-init drive is regenerated, so it stays as it is.
                disks = set(self.twin.disks.volumes_of(vm["config"]))
                for key, value in list(vm["config"].items()):
                    volume, options = split_drive(str(value))
                    if DRIVE.match(key) and volume in disks:
                        vm["config"][key] = join_drive(self.twin.disks.to_base(volume), options)
                self.twin.latency.sleep("template")
                vm["config"]["template"] = 1
                self._save(vmid, vm)

        return self.twin.ok(self.twin.tasks.start("qmtemplate", str(vmid), request.context["who"].name, work))

    def clone(self, request: Request) -> Response:
        node = self.twin.node_or_fail(request)
        vmid = int(request.params["vmid"])
        params = request.context["params"]
        newid = int(params["newid"])
        source = self.vm(vmid)
        is_template = bool(source["config"].get("template"))
        full = params.get("full", "0" if is_template else "1") in ("1", "true", "yes", "on")
        if not full and not is_template:
            self.twin.reject(request, 400, {"full": "linked clone is only possible from a template"})
            raise HttpError(400, "Parameter verification failed.",
                            {"full": "linked clone is only possible from a template"})
        try:
            self.check_lock(source)
        except TaskError as exc:
            raise HttpError(500, str(exc)) from None
        self._reserve(newid, node)
        if not is_template:  # a template is only read (shared lock); a VM is locked while it is copied
            with self.twin.store.change() as data:
                data["vms"][str(vmid)]["config"]["lock"] = "clone"

        def work(log):
            config = {k: v for k, v in source["config"].items() if k not in ("template", "lock", "digest")}
            for key, value in list(config.items()):
                volume, options = split_drive(str(value))
                if DRIVE.match(key) and ":" in volume and options.get("media") != "cdrom":
                    new = self.twin.disks.clone(volume, newid, full, params.get("storage"), log)
                    config[key] = join_drive(new, options)
                elif key.startswith("net") and key[3:].isdigit():
                    model = normalize_net(value).split("=", 1)[0]
                    rest = value.split(",", 1)[1] if "," in value else ""
                    config[key] = normalize_net(",".join(filter(None, [model, rest])))
            config.update(name=params.get("name") or f"Copy-of-VM-{source['config'].get('name', vmid)}",
                          smbios1=f"uuid={uuid.uuid4()}", vmgenid=str(uuid.uuid4()))
            if params.get("description"):
                config["description"] = params["description"]
            self._save(newid, {"config": config, "status": "stopped", "node": node})

        def unlock_source():
            with self.twin.store.change() as data:
                vm = data["vms"].get(str(vmid))
                if vm and vm["config"].get("lock") == "clone":
                    del vm["config"]["lock"]

        def work_and_unlock(log):
            try:
                work(log)
                self.twin.latency.sleep("clone_finish")
            except TaskError as exc:
                raise TaskError(f"clone failed: {exc}") from None  # qemu-server's wording
            finally:
                if not is_template:
                    unlock_source()

        upid = self.twin.tasks.start("qmclone", str(vmid), request.context["who"].name, work_and_unlock,
                                     on_error=lambda: self._drop(newid))
        return self.twin.ok(upid)

    # -- guest agent --------------------------------------------------------------------------------
    def interfaces(self, request: Request) -> Response:
        vmid = int(request.params["vmid"])
        vm = self.vm(vmid)
        if vm["status"] != "running":
            raise HttpError(500, f"VM {vmid} is not running")
        agent = parse_property_string({"enabled": {"default_key": 1}}, vm["config"].get("agent", "0"))
        if agent.get("enabled") not in ("1", "true", "yes", "on"):
            raise HttpError(500, "No QEMU guest agent configured")
        net = vm.get("network") or {}
        booting = time.time() - (vm.get("started") or 0) < self.twin.latency.seconds("agent_boot")
        if not net.get("ip") or booting or net.get("guest_agent") is False:
            raise HttpError(500, "QEMU guest agent is not running")
        lo = {"name": "lo", "hardware-address": "00:00:00:00:00:00",
              "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]}
        eth0 = {"name": "eth0", "hardware-address": (net.get("mac") or "").lower(),
                "ip-addresses": [{"ip-address": net["ip"], "ip-address-type": "ipv4", "prefix": net.get("prefix", 24)}]}
        lease = self.twin.faults.take("agent_extra_address", str(vmid))
        if lease:  # a second address on the link, e.g. a DHCP lease beside the static one
            eth0["ip-addresses"].append({"ip-address": lease.get("address", "192.168.1.77"),
                                         "ip-address-type": "ipv4", "prefix": int(lease.get("prefix", 24))})
        return self.twin.ok({"result": [lo, eth0]})

