"""The Talos node twin (lab/talos-twin, Go) as a lab component: one process answers the Talos machine API
on <node IP>:50000 for every node the Proxmox and Hetzner twins have booted.

The nodes file is the whole interface: reconcile() rewrites it from the Proxmox twin's `/_lab/vms`
(running VMs whose guest has booted, at their cloud-init address) and the Hetzner twin's
`talos-nodes.json` (running servers made from a Talos snapshot, at their private IP); the twin re-reads it.
A node whose VM or server is destroyed leaves the file, and its disk (the twin's state for it) is wiped,
so a node made again under the same name boots into maintenance mode, as a fresh machine does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.error
from pathlib import Path

from ..state import LabError, read_json, write_json
from ..twins.hetzner.talos_hook import FILE as HETZNER_TALOS_FILE
from .base import Component, Health
from .hetzner import HetznerTwin
from .proxmox import Proxmox

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "lab" / "talos-twin" / "build.sh"
TOOLS_ENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "turnkey-cluster" / "tools" / "tools.env"
PORT = 50000
# The real control plane started on bootstrap; tools/build makes both.
TOOLS = {"etcd": "TURNKEY_ETCD", "kube-apiserver": "TURNKEY_KUBE_APISERVER"}


def tool_paths() -> dict[str, str]:
    """etcd and kube-apiserver: from the environment, else from the tools cache's tools.env."""
    recorded = {}
    if TOOLS_ENV.is_file():
        for line in TOOLS_ENV.read_text().splitlines():
            name, _sep, value = line.partition("=")
            recorded[name.strip()] = value.strip()
    found = {}
    for tool, variable in TOOLS.items():
        path = os.environ.get(variable) or recorded.get(variable)
        if not path or not os.access(path, os.X_OK):
            raise LabError(f"talos: no {tool} binary ({variable} unset and not in {TOOLS_ENV}); run `make tools`")
        found[tool] = path
    return found


class TalosNodes(Component):
    name = "talos"
    host = "0.7"  # no listener of its own: each node listens on its own IP
    port = PORT
    startup_timeout = 30.0

    @property
    def nodes_file(self) -> Path:
        return self.data_dir / "nodes.json"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    def binary(self) -> str:
        result = subprocess.run([str(BUILD), "--print-path"], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LabError("talos: the node twin is not built; `lab up` builds it (lab/talos-twin/build.sh)")
        return result.stdout.strip()

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        tool_paths()  # fail in `lab up`, not in a restart loop inside the supervisor
        # about 90 s the first time, then a no-op (the binary is cached by a hash of its sources)
        result = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LabError(f"talos: building the node twin failed:\n{result.stderr.strip()}")
        if not self.nodes_file.exists():
            write_json(self.nodes_file, [], mode=0o600)

    def command(self) -> list[str]:
        tools = tool_paths()
        return [self.binary(), "--nodes", str(self.nodes_file), "--state", str(self.state_dir),
                "--port", str(PORT), "--etcd", tools["etcd"], "--kube-apiserver", tools["kube-apiserver"]]

    # -- which nodes exist ----------------------------------------------------------------------------
    def proxmox_nodes(self) -> list[dict] | None:
        """Booted Proxmox VMs at their cloud-init address; None when the Proxmox twin does not answer."""
        proxmox = Proxmox(self.lab, self.profile)
        try:
            vms = proxmox.lab_call("/_lab/vms")
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return [{"name": vm["network"]["hostname"], "ip": vm["network"]["ip"]}
                for _vmid, vm in sorted(vms.items(), key=lambda item: int(item[0]))
                if vm.get("booted") and (vm.get("network") or {}).get("ip")]

    def hetzner_nodes(self) -> list[dict]:
        document = read_json(HetznerTwin(self.lab, self.profile).data_dir / HETZNER_TALOS_FILE, {}) or {}
        return [{"name": server["name"], "ip": server["private_ips"][0]["ip"]}
                for server in document.get("nodes", [])
                if server.get("status") == "running" and server.get("private_ips")]

    def wanted_nodes(self) -> list[dict] | None:
        proxmox = self.proxmox_nodes()
        if proxmox is None and "proxmox" in self.lab_components():
            return None  # unknown: keep the current file rather than make every Proxmox node vanish
        nodes, seen = [], set()
        for node in (proxmox or []) + self.hetzner_nodes():
            if node["name"] in seen or node["ip"] in {n["ip"] for n in nodes}:
                continue  # the twin refuses duplicates; the first provider wins
            seen.add(node["name"])
            nodes.append(node)
        return nodes

    def lab_components(self) -> list[str]:
        return (read_json(self.lab.config, {}) or {}).get("components") or ["proxmox"]

    def reconcile(self) -> Health:
        wanted = self.wanted_nodes()
        if wanted is not None:
            current = read_json(self.nodes_file, []) or []
            if wanted != current:
                write_json(self.nodes_file, wanted, mode=0o600)
            self._wipe_gone(current, wanted)
        return self.health()

    def _wipe_gone(self, before: list[dict], now: list[dict]) -> None:
        """A destroyed machine's disk is gone: drop the twin's state of nodes no longer listed anywhere.

        Done one reconcile later (5 s), after the twin (re-reading every 2 s) has stopped serving them.
        """
        kept = {n["name"] for n in now}
        for name in getattr(self, "_gone", set()) - kept:
            shutil.rmtree(self.state_dir / name, ignore_errors=True)
        self._gone = {n["name"] for n in before} - kept
        if before and not now:
            # the whole cluster is gone (teardown): its etcd data and certificates go too ("_" is no hostname)
            self._gone.add("_cluster")

    def health(self) -> Health:
        nodes = read_json(self.nodes_file, []) or []
        answering = sum(1 for n in nodes if _listening(n["ip"]))
        if answering < len(nodes):
            return Health(False, f"{answering} of {len(nodes)} Talos node(s) answer on port {PORT}")
        return Health(True, f"Talos node twin, {len(nodes)} node(s) on port {PORT}")

    def endpoint(self) -> dict:
        return {"port": PORT, "nodes_file": str(self.nodes_file)}


def _listening(ip: str) -> bool:
    try:
        with socket.create_connection((ip, PORT), timeout=0.5):
            return True
    except OSError:
        return False
