"""The Talos node twin (lab/talos-twin, Go) as a lab component: one process answers the Talos machine API
on <node IP>:50000 for every node the Proxmox and Hetzner twins have booted.

The nodes file is the whole interface: reconcile() rewrites it from the Proxmox twin's `/_lab/vms`
(running VMs whose guest has booted, at their cloud-init address) and the Hetzner twin's
`talos-nodes.json` (running servers made from a Talos snapshot, at their private IP); the twin re-reads it.
A node whose VM or server is destroyed leaves the file, and its disk (the twin's state for it) is wiped,
so a node made again under the same name boots into maintenance mode, as a fresh machine does.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.error
from pathlib import Path

from ..state import LabError, read_json, write_json
from ..tools_env import tool_path
from ..twins.hetzner.talos_hook import FILE as HETZNER_TALOS_FILE
from .base import Component, Health
from .hetzner import HetznerTwin
from .proxmox import Proxmox

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "lab" / "talos-twin" / "build.sh"
PORT = 50000
# The control loop the twin runs next to the API server (docs/lab.md, "Control loop"), and the real control plane
# (etcd, kube-apiserver) it starts on bootstrap; tools/build makes them all.
CONTROL_LOOP = ("kube-controller-manager", "kube-scheduler", "kwok")
TOOLS = ("etcd", "kube-apiserver", *CONTROL_LOOP)


def tool_paths() -> dict[str, str]:
    """etcd, kube-apiserver and the control loop (tools_env: the environment, else the tools cache's tools.env)."""
    return {tool: tool_path(tool) for tool in TOOLS}


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
                "--port", str(PORT), "--etcd", tools["etcd"], "--kube-apiserver", tools["kube-apiserver"],
                *[arg for tool in CONTROL_LOOP for arg in ("--" + tool, tools[tool])],
                # realistic: installs, reboots, etcd, API server and CNI take their time (docs/lab-talos.md)
                "--profile", self.profile]

    # -- which nodes exist ----------------------------------------------------------------------------
    def proxmox_nodes(self) -> list[dict] | None:
        """Booted Proxmox VMs at their cloud-init address; None when the Proxmox twin does not answer."""
        proxmox = Proxmox(self.lab, self.profile)
        try:
            vms = proxmox.lab_call("/_lab/vms")
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return [{"name": vm["network"]["hostname"], "ip": vm["network"]["ip"],
                 "instance": "pve:%s" % (vm.get("uuid") or vmid)}
                for vmid, vm in sorted(vms.items(), key=lambda item: int(item[0]))
                if vm.get("booted") and (vm.get("network") or {}).get("ip")]

    def hetzner_nodes(self) -> list[dict]:
        document = read_json(HetznerTwin(self.lab, self.profile).data_dir / HETZNER_TALOS_FILE, {}) or {}
        # user_data: the file with the server's user data; the node twin boots configured from it
        return [{"name": server["name"], "ip": server["private_ips"][0]["ip"], "instance": "hcloud:%s" % server["id"],
                 **({"user_data": server["user_data_file"]} if server.get("user_data_file") else {})}
                for server in document.get("nodes", [])
                if server.get("status") == "running" and server.get("private_ips")]

    def wanted_nodes(self) -> list[dict] | None:
        proxmox = self.proxmox_nodes()
        if proxmox is None and "proxmox" in self.lab_components():
            return None  # unknown: keep the current file rather than make every Proxmox node vanish
        nodes, names, ips = [], set(), set()
        for node in (proxmox or []) + self.hetzner_nodes():
            if node["name"] in names or node["ip"] in ips:
                continue  # the twin refuses duplicates; the first provider wins
            names.add(node["name"])
            ips.add(node["ip"])
            nodes.append(node)
        return nodes

    def lab_components(self) -> list[str]:
        return (read_json(self.lab.config, {}) or {}).get("components") or ["proxmox"]

    @property
    def instances_file(self) -> Path:
        """Which machine (VM UUID, server id) each served node name belongs to."""
        return self.data_dir / "instances.json"

    def reconcile(self) -> Health:
        wanted = self.wanted_nodes()
        if wanted is not None:
            self._serve(wanted)
        return self.health()

    def _serve(self, wanted: list[dict]) -> None:
        """Writes the nodes file; a machine destroyed (or replaced under the same name) loses its disk.

        A replaced or vanished node is first left out of the file; one round later (5 s, after the twin
        has re-read the file and stopped serving it) its state is wiped, so a machine made again boots into
        maintenance mode. When no node is left, the cluster's etcd data and certificates go too.
        """
        known = read_json(self.instances_file, {}) or {}
        if getattr(self, "_cluster_stale", False) and self._cluster_unused():
            shutil.rmtree(self.state_dir / "_cluster", ignore_errors=True)  # "_": never a hostname
            self._cluster_stale = False
        wiped = set(getattr(self, "_pending_wipe", set()))
        for name in wiped:
            shutil.rmtree(self.state_dir / name, ignore_errors=True)
            known.pop(name, None)
        by_name = {n["name"]: n["instance"] for n in wanted}
        stale = {name for name, instance in known.items() if by_name.get(name) != instance}
        served = [n for n in wanted if n["name"] not in stale]
        for node in served:
            known[node["name"]] = node["instance"]
        self._pending_wipe = stale
        # the last nodes were wiped: the cluster's etcd data and certificates go too, once the twin has
        # stopped its etcd members and API server (and before any new node is configured)
        if wiped and not known:
            self._cluster_stale = True
        write_json(self.instances_file, known, mode=0o600)
        listing = [{key: n[key] for key in ("name", "ip", "user_data") if key in n} for n in served]
        if listing != read_json(self.nodes_file, []):
            write_json(self.nodes_file, listing, mode=0o600)

    def _cluster_unused(self) -> bool:
        """No node is configured and no process (etcd, kube-apiserver) runs on the cluster's folder."""
        if any(self.state_dir.glob("*/config.yaml")):
            return False
        folder = str(self.state_dir / "_cluster")
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if folder.encode() in (proc / "cmdline").read_bytes():
                        return False
                except OSError:
                    continue
        return True

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
