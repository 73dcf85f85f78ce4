"""A controller of the cluster run as a process of the lab, started by its Deployment in the cluster.

The lab has no container runtime, so a controller whose Deployment the cluster holds (made Ready by KWOK) is run
here instead, against the lab cluster's kube-apiserver, with the identity and the arguments that Deployment gives
it, so installing it in the cluster (Flux's install manifests, a HelmRelease) is what starts it, as on a cluster:

- Until the Talos twin has a cluster API (after `talosctl bootstrap`) and the cluster holds the Deployment, the
  component's process waits (a small Python loop, WAITER) and the component reports itself healthy and "waiting"
  (nothing to run yet is not a fault of the lab).
- Then reconcile() asks the API server for a token of the Deployment's ServiceAccount (TokenRequest, as the
  kubelet projects one into the pod), writes a kubeconfig that uses it (`tokenFile`, re-read by client-go, and
  renewed here at half its life) and the controller's command line: the Deployment's container args with `$(VAR)`
  expanded from the pod's environment, the flags that carry a pod address or path (lab_flags) replaced by the
  component's own (lab_args), and the flags that cannot work outside a pod (dropped_flags) left out.
- The waiting process sees the command line and execs the controller in its place (argv[0] is a symlink in the
  component's folder, so the lab still recognises the process as its own); a subclass may name a wrapper command
  it goes through first (wrapper(): sealed-secrets' mount namespace), which execs the controller in turn.
- A Deployment deleted, its args changed, or a new cluster (another CA or endpoint) stops the running controller;
  the supervisor starts the waiting process again, which takes the new command line.

Subclasses: the Flux controllers (flux.py), and the other controllers the platform tree installs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from .. import procs
from ..state import Lab, LabError, read_json, write_file, write_json
from ..tools_env import tool_path
from .base import Component, Health
from .talos import TalosNodes

PROBE_TIMEOUT = 2
# The component's process: waits for reconcile() to write the controller's command line, then becomes the
# controller (argv: the launch file, the binary's symlink in the component's folder), through the launch's
# wrapper command when it names one (which must exec its trailing argv, keeping the binary as argv[0]).
WAITER = """
import json, os, sys, time
launch_file, binary = sys.argv[1], sys.argv[2]
while True:
    try:
        with open(launch_file) as handle:
            launch = json.load(handle)
        argv = [*launch.get("wrapper", []), binary, *launch["args"]]
    except (OSError, ValueError, KeyError, TypeError):
        time.sleep(1)
        continue
    os.execv(argv[0], argv)
"""
TOKEN_SECONDS = 24 * 3600


@dataclass(frozen=True)
class ClusterAdmin:
    """The lab cluster's API server and the Talos twin's own admin identity towards it."""

    server: str
    ca: Path
    cert: Path
    key: Path

    @property
    def identity(self) -> str:
        """Changes when the cluster is made again (new CA or endpoint)."""
        return hashlib.sha256(self.server.encode() + self.ca.read_bytes()).hexdigest()[:16]

    def request(self, method: str, path: str, body: dict | None = None) -> dict | None:
        """JSON in and out; None for 404; other HTTP errors and connection errors raise."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server.rstrip("/") + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT, context=context) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


def pod_environment(admin: ClusterAdmin, namespace: str, deployment: dict) -> tuple[dict[str, dict[str, str]], str]:
    """Each container's environment (by container name) as the kubelet gives it to a pod of the Deployment: literal
    values, `secretKeyRef` / `configMapKeyRef` and `envFrom` read from the cluster (fieldRef and the like are left
    out). A Secret, ConfigMap or key that is missing and not optional keeps the pod from starting: then ({}, the
    kubelet's message, e.g. `secret "s" not found`), else (the environments, "")."""
    spec = deployment["spec"]["template"]["spec"]
    found: dict[tuple[str, str], dict | None] = {}

    def source(kind: str, name: str) -> dict | None:
        if (kind, name) not in found:
            obj = admin.request("GET", f"/api/v1/namespaces/{namespace}/{kind.lower()}s/{name}")
            data = None if obj is None else obj.get("data") or {}
            if data is not None and kind == "Secret":
                data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}
            found[kind, name] = data
        return found[kind, name]

    environments = {}
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        env: dict[str, str] = {}
        for item in container.get("envFrom") or []:
            for kind, ref in (("Secret", item.get("secretRef")), ("ConfigMap", item.get("configMapRef"))):
                if ref is None:
                    continue
                data = source(kind, ref["name"])
                if data is None and not ref.get("optional"):
                    return {}, f'{kind.lower()} "{ref["name"]}" not found'
                env.update({item.get("prefix", "") + k: v for k, v in (data or {}).items()})
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            refs = item.get("valueFrom") or {}
            for kind, ref in (("Secret", refs.get("secretKeyRef")), ("ConfigMap", refs.get("configMapKeyRef"))):
                if ref is None:
                    continue
                data = source(kind, ref["name"])
                if data is not None and ref["key"] in data:
                    env[item["name"]] = data[ref["key"]]
                elif not ref.get("optional"):
                    return {}, (f'{kind.lower()} "{ref["name"]}" not found' if data is None else
                                f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
        environments[container["name"]] = env
    return environments, ""


def cluster_admin(lab: Lab) -> ClusterAdmin | None:
    """The cluster the Talos twin runs (its control plane's PKI and a control plane's configured endpoint), or
    None while there is none."""
    state = TalosNodes(lab).state_dir
    pki = state / "_cluster" / "pki"
    files = [pki / "ca.crt", pki / "twin-admin.crt", pki / "twin-admin.key"]
    if not all(path.is_file() for path in files):
        return None
    for config in sorted(state.glob("*/config.yaml")):
        try:
            documents = list(yaml.safe_load_all(config.read_text()))
        except (OSError, yaml.YAMLError):
            continue
        for document in documents:
            endpoint = (((document or {}).get("cluster") or {}).get("controlPlane") or {}).get("endpoint")
            if endpoint and (document.get("machine") or {}).get("type") in ("controlplane", "init"):
                return ClusterAdmin(endpoint, *files)
    return None


class DeploymentProcess(Component):
    """One controller run from its Deployment; subclasses name the Deployment, the binary and the addresses."""

    # The Deployment in the cluster (namespace and name) and the container whose args the controller takes.
    namespace: ClassVar[str]
    deployment: ClassVar[str]
    container: ClassVar[str | None] = None  # None: the first container
    # The binary (tools.env TURNKEY_<NAME>) and the argv[0] the lab knows the process by.
    controller: ClassVar[str]
    # Flags that carry an address or a path of the pod (the lab gives its own in lab_args), and flags that
    # cannot work outside a pod.
    lab_flags: ClassVar[tuple[str, ...]] = ()
    dropped_flags: ClassVar[tuple[str, ...]] = ()
    # The readiness probe on the component's port.
    ready_path: ClassVar[str] = "/readyz"
    # Text the probe's answer must contain too (for a controller whose only endpoint is its metrics).
    ready_text: ClassVar[str | None] = None
    scheme = "http"
    startup_timeout = 30.0

    # -- files in the component's folder --------------------------------------------------------------
    @property
    def launch_file(self) -> Path:
        """The controller's command line, written by reconcile(); the waiting process execs it."""
        return self.data_dir / "launch.json"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "token"

    @property
    def token_meta(self) -> Path:
        return self.data_dir / "token.json"

    @property
    def binary_link(self) -> Path:
        """argv[0] of the running controller: names the state folder, as every lab process must."""
        return self.data_dir / self.controller

    # -- hooks ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        binary = self.binary()  # fail in `lab up`, not in a restart loop inside the supervisor
        link = self.binary_link
        if not link.is_symlink() or os.readlink(link) != binary:
            link.unlink(missing_ok=True)
            link.symlink_to(binary)
        # what ran before belongs to another `lab up` (perhaps another cluster): reconcile() decides anew
        self.launch_file.unlink(missing_ok=True)

    def binary(self) -> str:
        """The controller's binary (tools.env TURNKEY_<CONTROLLER> by default)."""
        return tool_path(self.controller)

    def command(self) -> list[str]:
        return [sys.executable, "-c", WAITER, str(self.launch_file), str(self.binary_link)]

    def environment(self) -> dict[str, str]:
        tmp = self.data_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {**os.environ, **self.pod_env(), "KUBECONFIG": str(self.kubeconfig), "TMPDIR": str(tmp),
                "HOME": str(self.data_dir)}

    def pod_env(self) -> dict[str, str]:
        """What the pod's environment gives the controller that the lab must give too (e.g. its namespace)."""
        return {}

    def reconcile(self) -> Health:
        admin = cluster_admin(self.lab)
        if admin is None:
            self._stand_down()
            return Health(True, "waiting: the lab has no cluster API yet (talosctl bootstrap starts it)")
        try:
            path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.deployment}"
            deployment = admin.request("GET", path)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            if self._running():
                return self.health()  # the API server restarts: the controller retries by itself
            return Health(True, f"waiting: the cluster API {admin.server} does not answer ({exc})")
        if deployment is None:
            self._stand_down()
            return Health(True, f"waiting: not installed (no Deployment {self.namespace}/{self.deployment})")
        # The Deployment's uid: one made again (a rebuilt cluster with the same CA and endpoint, a reinstall) is a new
        # pod, with a new token for its new ServiceAccount, as the kubelet would start it.
        owner = deployment["metadata"].get("uid", "")
        launch = {"cluster": admin.identity, "deployment": owner, "args": self.args(deployment)}
        wrapper = self.wrapper(admin)
        if wrapper:
            launch["wrapper"] = wrapper
        account = deployment["spec"]["template"]["spec"].get("serviceAccountName") or "default"
        self._refresh_token(admin, account, owner)
        self._write_kubeconfig(admin)
        if read_json(self.launch_file) != launch:
            write_json(self.launch_file, launch, mode=0o600)
            self._stop_controller()  # a controller started with other args or another cluster: start again
        return self.health()

    def health(self) -> Health:
        if not procs.live_pid(self.pid_file, self.lab.owns):  # waiting is healthy only while the process runs
            return Health(False, "not running")
        if not self.launch_file.is_file():
            return Health(True, "waiting: not installed in the cluster")
        try:
            with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=PROBE_TIMEOUT) as response:
                if response.status == 200 and (not self.ready_text or self.ready_text in response.read().decode()):
                    return Health(True, f"{self.controller} ready")
        except (OSError, urllib.error.URLError) as exc:
            return Health(False, f"{self.controller} not ready: {exc}")
        return Health(False, f"{self.controller} not ready")

    def endpoint(self) -> dict:
        return {**super().endpoint(), "running": self.launch_file.is_file()}

    # -- the controller's command line ------------------------------------------------------------------
    def args(self, deployment: dict) -> list[str]:
        """The container's args as the kubelet would pass them, with the pod's addresses made the lab's."""
        containers = deployment["spec"]["template"]["spec"]["containers"]
        container = next((c for c in containers if c.get("name") == self.container), containers[0])
        env = {item["name"]: item["value"] for item in container.get("env") or [] if "value" in item}
        env.update(self.pod_env())
        args, seen, value_of_lab_flag = [], set(), False
        for arg in container.get("args") or []:
            arg = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)
            if value_of_lab_flag and not arg.startswith("-"):  # `--flag value`: the value goes with its flag
                value_of_lab_flag = False
                continue
            flag = arg.lstrip("-").split("=", 1)[0]
            seen.add(flag)
            # a lab flag always takes a value (an address, a path): without `=`, the next arg is that value
            value_of_lab_flag = flag in self.lab_flags and "=" not in arg
            if flag not in self.lab_flags + self.dropped_flags:
                args.append(arg)
        return args + self.lab_args(seen)

    def lab_args(self, seen: set[str]) -> list[str]:
        """The lab's own addresses and paths for the controller (seen: the flags the Deployment passes)."""
        return []

    def wrapper(self, admin: ClusterAdmin) -> list[str]:
        """A command the controller is started through (its argv follows; it must exec it), e.g. to give it
        a mount namespace; it may write the files it needs. None by default."""
        return []

    # -- identity -----------------------------------------------------------------------------------------
    def _refresh_token(self, admin: ClusterAdmin, account: str, owner: str) -> None:
        meta = read_json(self.token_meta, {}) or {}
        fresh = (meta.get("cluster") == admin.identity and meta.get("account") == account
                 and meta.get("deployment") == owner
                 and self.token_file.is_file() and time.time() < meta.get("renew_at", 0))
        if fresh:
            return
        answer = admin.request("POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS}})
        if answer is None:
            raise LabError(f"{self.controller}: no ServiceAccount {self.namespace}/{account} for its Deployment")
        write_file(self.token_file, answer["status"]["token"], mode=0o600)
        write_json(self.token_meta, {"cluster": admin.identity, "account": account, "deployment": owner,
                                     "renew_at": time.time() + TOKEN_SECONDS / 2}, mode=0o600)

    def _write_kubeconfig(self, admin: ClusterAdmin) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": self.controller,
            "clusters": [{"name": "lab", "cluster": {
                "server": admin.server,
                "certificate-authority-data": base64.b64encode(admin.ca.read_bytes()).decode()}}],
            "users": [{"name": self.controller,
                       "user": {"tokenFile": str(self.token_file)}}],
            "contexts": [{"name": self.controller, "context": {
                "cluster": "lab", "user": self.controller,
                "namespace": self.namespace}}]}
        text = yaml.safe_dump(config, sort_keys=False)
        if not self.kubeconfig.is_file() or self.kubeconfig.read_text() != text:
            write_file(self.kubeconfig, text, mode=0o600)

    # -- the process ---------------------------------------------------------------------------------------
    def _controller_pid(self) -> int | None:
        """The pid when the component's process is the controller (not the waiting process)."""
        pid = procs.read_pid(self.pid_file)
        argv = procs.cmdline(pid) if pid else None
        return pid if argv and argv[0] == str(self.binary_link) else None

    def _running(self) -> bool:
        return self._controller_pid() is not None

    def _stop_controller(self) -> None:
        pid = self._controller_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _stand_down(self) -> None:
        """Nothing to run (no cluster, or the Deployment is not there): back to waiting."""
        if self.launch_file.is_file():
            self.launch_file.unlink()
            self._stop_controller()
