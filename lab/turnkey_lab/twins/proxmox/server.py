"""The Proxmox VE 9 API twin (`/api2/json`): authentication, schema validation, privileges, then routes.

Every routed request goes through `before()`: authenticate (ticket + CSRF, or API token), validate the
parameters against the official schema (400 "Parameter verification failed." with per-parameter errors,
recorded in /_lab/rejects), check the privileges the schema's `permissions` name, then those qemu-server
checks in its code (qemu_privileges.py) (403 "Permission check failed (...)"). Lists show only what the
caller may see, task status/logs only the caller's own tasks without Sys.Audit on the node. Errors are
answered like pveproxy: the message in the HTTP status text, `{"data": null}`.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
import uuid
from pathlib import Path

from ..base import HttpError, Request, Response, Twin
from . import auth, qemu_privileges
from .access import Access
from .disks import Disks
from .inventory import NETWORK, NODE, PVE_VERSION, STORAGES, initial_state
from .qemu import Qemu, memory_mib
from .schema import Schema
from .storage import Storage
from .tasks import Locks, Tasks, parse_upid

PUBLIC = {("POST", "/access/ticket")}


class ProxmoxTwin(Twin):
    name = "proxmox"
    prefix = "/api2/json"
    node = NODE
    # (fast, realistic) seconds; docs/lab-proxmox.md gives the sources of the realistic column.
    latency_table = {
        "request": (0.0, 0.01),
        "task_start": (0.01, 0.3),
        "login_failure": (0.0, 2.0),
        "alloc": (0.01, 0.5),
        "import": (0.05, 6.0),
        "create": (0.02, 1.0),
        "clone_linked": (0.05, 0.3),  # under the storage lock (zfs clone)
        "clone_finish": (0.01, 1.5),  # the rest of a clone task: config, MACs, unlock
        "clone_full": (0.05, 1.0),
        "clone_full_per_gib": (0.005, 0.75),  # ~1.3 GiB/s local NVMe: a 40 GiB Talos disk in ~30 s
        "template": (0.02, 1.5),
        "start": (0.05, 2.0),
        "agent_boot": (0.1, 8.0),  # from start until the guest's agent answers: Talos boots to maintenance
        "stop": (0.02, 1.0),
        "shutdown": (0.05, 5.0),
        "destroy": (0.02, 1.5),
        "download": (0.05, 3.0),
        "download_per_mib": (0.0, 0.02),
        # Proxmox's lock_file() default: 10 s for both (PVE::Tools, PVE::Storage::Plugin::cluster_lock_storage).
        "config_lock_timeout": (3.0, 10.0),
        "storage_lock_timeout": (5.0, 10.0),
    }

    def __init__(self, data_dir: Path, profile: str, schema_file: Path | None, ca_file: str | None):
        super().__init__(data_dir, profile)
        self.schema = Schema(schema_file) if schema_file else None
        self.schema_file = schema_file
        self.locks = Locks(self.faults, self.latency)
        self.tasks = Tasks(self.store, NODE, self.faults, self.latency)
        self.disks = Disks(self)
        self.qemu = Qemu(self)
        self.storage = Storage(self, ca_file)
        self.access = Access(self)
        add = self.add
        add("GET", "/version", lambda r: self.ok(PVE_VERSION))
        add("GET", "/nodes", self.nodes)
        add("GET", "/nodes/{node}/status", self.node_status)
        add("GET", "/nodes/{node}/network", self.network)
        add("GET", "/nodes/{node}/tasks", self.task_list)
        add("GET", "/nodes/{node}/tasks/{upid}/status", self.task_status)
        add("GET", "/nodes/{node}/tasks/{upid}/log", self.task_log)
        add("GET", "/cluster/nextid", self.nextid)
        add("GET", "/cluster/resources", self.resources)

    def initial_state(self) -> dict:
        return initial_state()

    def health_detail(self) -> dict:
        with self.store.lock:
            state = self.store.data
            return {"initialized": state["initialized"], "node": NODE, "vms": len(state["vms"]),
                    "schema_validation": self.schema is not None,
                    "schema_file": str(self.schema_file) if self.schema_file else None}

    # -- pveproxy's answers -------------------------------------------------------------------------
    @staticmethod
    def ok(data: object) -> Response:
        return Response.json({"data": data})

    def error_response(self, error: HttpError) -> Response:
        body: dict = {"data": None}
        if error.errors:
            body["errors"] = error.errors
        else:
            body["message"] = error.message.rstrip("\n") + "\n"
        # The status text carries the message (proxmoxer reports it as the error's reason).
        reason = error.message.splitlines()[0] if error.message else "error"
        return Response.json(body, status=error.status, reason=reason, headers=error.headers)

    def not_found(self, request: Request) -> HttpError:
        return HttpError(501, f"Method '{request.method} {self.prefix}{request.path}' not implemented")

    def before(self, request: Request) -> None:
        params = {**request.query, **(request.form() if request.method in ("POST", "PUT") else {}),
                  **request.params}
        if request.method in ("GET", "DELETE") and request.body:
            params.update(request.form())
        request.context["params"] = params
        public = (request.method, request.path.rstrip("/")) in PUBLIC
        if not public:
            with self.store.lock:
                request.context["who"] = auth.authenticate(self.store.data, request)
        if "node" in request.params:
            self.node_or_fail(request)
        if self.schema is not None:
            self._schema_checks(request, params, public)
        if not public:
            with self.store.lock:
                qemu_privileges.check_request(self.store.data, request.context["who"], request.method,
                                              request.path, params)

    def _schema_checks(self, request: Request, params: dict, public: bool) -> None:
        info = self.schema.info("GET" if request.method == "HEAD" else request.method, request.path.rstrip("/"))
        if info is None:
            return
        errors = self.schema.validate(info, params)
        if errors:
            self.reject(request, 400, errors)
            raise HttpError(400, "Parameter verification failed.", errors)
        permissions = info.get("permissions") or {}
        if public or permissions.get("user") in ("all", "world"):
            return
        with self.store.lock:
            if "check" in permissions:
                auth.check(self.store.data, request.context["who"], permissions["check"], params)
            elif request.context["who"].user != "root@pam":
                raise HttpError(403, "Permission check failed (user != root@pam)")

    def _routed(self, request: Request, raw_path: str) -> Response:
        return self._visible_only(request, super()._routed(request, raw_path))

    # GET lists Proxmox filters by privilege: (path regex, privileges on the item, any of them suffices)
    _FILTERED = (
        (re.compile(r"^/nodes/[^/]+/qemu/?$"), lambda i: [(f"/vms/{i.get('vmid')}", ["VM.Audit"])]),
        (re.compile(r"^/nodes/[^/]+/storage/?$"),
         lambda i: [(f"/storage/{i.get('storage')}", ["Datastore.Audit", "Datastore.AllocateSpace"])]),
        (re.compile(r"^/cluster/resources/?$"), lambda i: [
            {"qemu": (f"/vms/{i.get('vmid')}", ["VM.Audit"]), "node": (f"/nodes/{i.get('node')}", ["Sys.Audit"]),
             "storage": (f"/storage/{i.get('storage')}", ["Datastore.Audit", "Datastore.AllocateSpace"])
             }.get(i.get("type"), ("/", []))]),
    )

    def _visible_only(self, request: Request, response: Response) -> Response:
        """Leave out of a list what the caller may not see (Proxmox never says 403 for a list)."""
        who = request.context.get("who")
        if request.method != "GET" or response.status != 200 or who is None:
            return response
        rule = next((rule for regex, rule in self._FILTERED if regex.match(request.path)), None)
        if rule is None:
            return response
        body = json.loads(response.body)
        with self.store.lock:
            def visible(item: dict) -> bool:
                return all(not privs or auth.privileges(self.store.data, who, path) & set(privs)
                           for path, privs in rule(item))
            body["data"] = [item for item in body.get("data") or [] if visible(item)]
        return Response.json(body, status=response.status)

    # -- lab side: first-start credentials, simulated VMs' network identity -------------------------
    def lab_route(self, request: Request, path: str) -> Response | None:
        if path == "/_lab/init" and request.method == "POST":
            return self._init()
        if path == "/_lab/vms" and request.method == "GET":
            with self.store.lock:
                vms = copy.deepcopy(self.store.data["vms"])
            boot = self.latency.seconds("agent_boot")
            # "booted": the guest is up (its agent answers); a Talos node twin appears only then
            return Response.json({vmid: {"name": vm["config"].get("name"), "status": vm["status"],
                                         "network": vm.get("network"),
                                         # the machine's identity (SMBIOS UUID): a new VM gets a new one
                                         "uuid": vm["config"].get("smbios1", "").partition("uuid=")[2],
                                         "booted": vm["status"] == "running"
                                         and time.time() - (vm.get("started") or 0) >= boot}
                                  for vmid, vm in vms.items()})
        return None

    def _init(self) -> Response:
        """Once: make root@pam's password and an admin API token; answered once, kept only as hashes."""
        password = secrets.token_urlsafe(24)
        token_secret = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
        token_id = "root@pam!lab"
        with self.store.change() as state:
            if state["initialized"]:
                return Response.json({"error": "already initialised"}, status=409)
            state["users"]["root@pam"]["password"] = auth.hash_secret(password)
            state["tokens"][token_id] = {"privsep": 0, "expire": 0, "comment": "lab admin token",
                                         "secret": auth.hash_secret(token_secret)}
            state["initialized"] = True
        return Response.json({"username": "root@pam", "password": password, "token_id": token_id,
                              "token_secret": token_secret}, status=201)

    # -- small read-only endpoints ------------------------------------------------------------------
    def node_or_fail(self, request: Request) -> str:
        node = request.params.get("node", NODE)
        if node != NODE:
            raise HttpError(500, f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
                                 "Name or service not known")
        return node

    @staticmethod
    def _node_entry() -> dict:
        return {"node": NODE, "status": "online", "type": "node", "id": f"node/{NODE}", "level": "", "cpu": 0.03,
                "maxcpu": 16, "mem": 12 * 1024 ** 3, "maxmem": 64 * 1024 ** 3, "uptime": int(time.monotonic())}

    def nodes(self, request: Request) -> Response:
        return self.ok([self._node_entry()])

    def node_status(self, request: Request) -> Response:
        self.node_or_fail(request)
        total = 64 * 1024 ** 3
        return self.ok({"uptime": int(time.monotonic()), "cpu": 0.03, "loadavg": ["0.10", "0.12", "0.09"],
                        "memory": {"total": total, "used": total // 5, "free": total - total // 5},
                        "cpuinfo": {"cpus": 16, "cores": 8, "sockets": 1, "model": "AMD Ryzen 7 5800X (lab twin)"},
                        "pveversion": f"pve-manager/{PVE_VERSION['version']}/{PVE_VERSION['repoid']}",
                        "kversion": "Linux 6.17.2-1-pve #1 SMP PREEMPT_DYNAMIC",
                        "rootfs": {"total": 100 * 1024 ** 3, "used": 8 * 1024 ** 3, "avail": 92 * 1024 ** 3}})

    def network(self, request: Request) -> Response:
        self.node_or_fail(request)
        kind = request.context["params"].get("type")
        return self.ok([dict(n) for n in NETWORK if not kind or n["type"] == kind
                        or (kind == "any_bridge" and n["type"] == "bridge")])

    def _task(self, request: Request) -> dict:
        upid = request.params["upid"]
        task = self.tasks.get(upid)
        if not parse_upid(upid) or task is None:
            raise HttpError(500, f"no such task ('{upid}')" if parse_upid(upid) else f"unable to parse worker "
                                                                                      f"upid '{upid}'")
        # Someone else's task (a user sees its own tokens' tasks) needs Sys.Audit on the node.
        who = request.context["who"]
        own = task["user"] == who.name or (not who.token and task["user"].split("!", 1)[0] == who.user)
        if not own:
            node = request.params["node"]
            with self.store.lock:
                if "Sys.Audit" not in auth.privileges(self.store.data, who, f"/nodes/{node}"):
                    raise HttpError(403, f"Permission check failed (/nodes/{node}, Sys.Audit)")
        return task

    def task_list(self, request: Request) -> Response:
        """The node's tasks, newest first, as `GET /nodes/{node}/tasks`: `source` archive (finished, the
        default), active (running; status RUNNING) or all, the filters of the schema; only the caller's own
        tasks (a user's also its tokens') without Sys.Audit on the node."""
        node = self.node_or_fail(request)
        params = request.context["params"]
        who = request.context["who"]
        with self.store.lock:
            auditor = "Sys.Audit" in auth.privileges(self.store.data, who, f"/nodes/{node}")
            tasks = [dict(task) for task in self.store.data["tasks"].values()]
        source = params.get("source", "archive")
        result = []
        for task in sorted(tasks, key=lambda t: (t["starttime"], t["upid"]), reverse=True):
            running = task["status"] == "running"
            own = task["user"] == who.name or (not who.token and task["user"].split("!", 1)[0] == who.user)
            if (source == "archive" and running) or (source == "active" and not running) or not (own or auditor):
                continue
            if any(params.get(key) and str(params[key]) != str(task[field])
                   for key, field in (("typefilter", "type"), ("vmid", "id"), ("userfilter", "user"))):
                continue
            if (params.get("since") and task["starttime"] < int(params["since"])) or (
                    params.get("until") and task["starttime"] > int(params["until"])):
                continue
            if str(params.get("errors", "0")) in ("1", "true") and (running or task["exitstatus"] == "OK"):
                continue
            entry = {k: task[k] for k in ("upid", "node", "pid", "pstart", "starttime", "type", "id", "user")}
            entry["status"] = "RUNNING" if running else task["exitstatus"]
            if not running:
                entry["endtime"] = task["endtime"]
            result.append(entry)
        start, limit = int(params.get("start", 0)), int(params.get("limit", 50))
        return self.ok(result[start:start + limit])

    def task_status(self, request: Request) -> Response:
        task = self._task(request)
        data = {k: task[k] for k in ("upid", "node", "pid", "pstart", "starttime", "type", "id", "user", "status")}
        if task["status"] == "stopped":
            data["exitstatus"] = task["exitstatus"]
        return self.ok(data)

    def task_log(self, request: Request) -> Response:
        task = self._task(request)
        params = request.context["params"]
        start, limit = int(params.get("start", 0)), int(params.get("limit", 50))
        lines = task["log"] or ["no content"]
        page = [{"n": start + i + 1, "t": t} for i, t in enumerate(lines[start:start + limit])]
        return Response.json({"data": page, "total": len(lines)})

    def nextid(self, request: Request) -> Response:
        wanted = request.context["params"].get("vmid")
        with self.store.lock:
            used = {int(v) for v in self.store.data["vms"]}
        if wanted:
            if int(wanted) in used:
                errors = {"vmid": f"VM {wanted} already exists"}
                self.reject(request, 400, errors)
                raise HttpError(400, "Parameter verification failed.", errors)
            return self.ok(str(wanted))
        return self.ok(str(next(n for n in range(100, 1_000_000_000) if n not in used)))

    def resources(self, request: Request) -> Response:
        kind = request.context["params"].get("type")
        result = []
        if kind in (None, "vm"):
            with self.store.lock:
                vms = copy.deepcopy(self.store.data["vms"])
            for vmid, vm in sorted(vms.items(), key=lambda item: int(item[0])):
                summary = self.qemu.summary(vmid, vm)
                summary.update(id=f"qemu/{vmid}", type="qemu", node=NODE, template=int(bool(vm["config"].get(
                    "template"))), maxmem=memory_mib(vm["config"]) * 1024 ** 2)
                result.append(summary)
        if kind in (None, "node"):
            result.append({**self._node_entry(), "disk": 0, "maxdisk": 100 * 1024 ** 3})
        if kind in (None, "storage"):
            for name, spec in STORAGES.items():
                result.append({"id": f"storage/{NODE}/{name}", "type": "storage", "storage": name, "node": NODE,
                               "status": "available", "plugintype": spec["type"], "content": spec["content"],
                               "shared": spec["shared"], "maxdisk": spec["total"],
                               "disk": self.storage._usage(name)})
        return self.ok(result)

    def typed(self, key: str, value: str) -> object:
        """A config value as Proxmox stores and returns it: integers and 0/1 booleans as JSON numbers."""
        prop = self.schema.config_property(key) if self.schema else None
        kind = (prop or {}).get("type")
        if kind == "integer" and str(value).lstrip("+-").isdigit():
            return int(value)
        if kind == "boolean":
            return 1 if str(value).lower() in ("1", "true", "yes", "on") else 0
        if kind == "number":
            return float(value)
        if prop is None and str(value).isdigit():  # no schema: a good guess for cores, memory, ...
            return int(value)
        return value

    def volume(self, volid: str) -> dict | None:
        storage = volid.split(":", 1)[0]
        with self.store.lock:
            record = self.store.data["volumes"].get(storage, {}).get(volid)
            return dict(record) if record else None
