"""The real sealed-secrets controller (github.com/bitnami/sealed-secrets, tools/build sealed-secrets) as a lab
component at <net>.0.15.

A DeploymentProcess (deployment_process.py): it waits until the cluster holds `kube-system/sealed-secrets-controller`
(the platform tree's HelmRelease sets fullnameOverride), then runs with that Deployment's ServiceAccount and
container args (`--key-renew-period 0`, `--watch-for-secrets`, ...); only the listen addresses become the
component's (`--listen-addr <net>.0.15:8080`, `--listen-metrics-addr <net>.0.15:8081`).

The controller knows no kubeconfig: it only supports in-cluster config (client-go's rest.InClusterConfig), which
reads the token and the CA from /var/run/secrets/kubernetes.io/serviceaccount and the API server from
KUBERNETES_SERVICE_HOST/PORT, and takes its namespace from that folder's `namespace` file. So the lab starts it
in a mount namespace of its own (`unshare --mount`, private propagation) where the component's folder
`serviceaccount/` (the TokenRequest token, the cluster CA, the namespace) is bind-mounted read-only on that path,
as the kubelet mounts a pod's service account, and the two variables name the cluster's API endpoint. Nothing
outside that namespace sees the mount; the host keeps only the empty mount point (made once, as a pod's
container image has it). The wrapper (a shell) execs the controller, so its argv[0] is still the binary's
symlink in the component's folder, as the lab's ownership checks want. A mount namespace needs root
(CAP_SYS_ADMIN): prepare() checks for it and says so before anything runs.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from pathlib import Path

from ..state import LabError, write_file
from .deployment_process import ClusterAdmin, DeploymentProcess, tool_path

HTTP_PORT = 8080
METRICS_PORT = 8081
SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# Run by `unshare --mount --propagation private /bin/sh -ec MOUNT <name> <folder> <mount point> <host> <port>
# <controller> <args...>`: the bind mount exists only in the new namespace; the controller replaces the shell.
MOUNT = ('mount --bind -o ro "$1" "$2"; export KUBERNETES_SERVICE_HOST="$3" KUBERNETES_SERVICE_PORT="$4"; '
         'shift 4; exec "$@"')


class SealedSecretsController(DeploymentProcess):
    name = "sealed-secrets"
    host = "0.15"
    port = HTTP_PORT
    extra_ports = (METRICS_PORT,)
    namespace = "kube-system"
    deployment = controller = "sealed-secrets-controller"
    container = "controller"
    lab_flags = ("listen-addr", "listen-metrics-addr")
    # /readyz: 503 until its informers run (the chart probes /healthz, which answers once the port listens).
    ready_path = "/readyz"

    @property
    def service_account_dir(self) -> Path:
        """What the bind mount shows the controller at /var/run/secrets/kubernetes.io/serviceaccount."""
        return self.data_dir / "serviceaccount"

    @property
    def token_file(self) -> Path:
        # the TokenRequest token lands in the mounted folder; client-go re-reads it there when it is renewed
        return self.service_account_dir / "token"

    def binary(self) -> str:
        """The controller in the folder that tools/build sealed-secrets makes (controller, kubeseal, chart)."""
        binary = Path(tool_path("sealed-secrets")) / "controller"
        if not binary.is_file():
            raise LabError(f"lab: no sealed-secrets controller at {binary}; run `make tools`")
        return str(binary)

    def prepare(self) -> None:
        super().prepare()
        unshare = shutil.which("unshare")
        if not unshare:
            raise LabError("lab: sealed-secrets needs `unshare` (util-linux) to give the controller its service "
                           "account mount")
        probe = subprocess.run([unshare, "--mount", "--propagation", "private", "true"], capture_output=True,
                               text=True, check=False)
        if probe.returncode != 0:
            raise LabError("lab: sealed-secrets cannot make a mount namespace for the controller (it reads its "
                           f"identity only from {SERVICE_ACCOUNT_PATH}; needs root): {probe.stderr.strip()}")
        try:
            Path(SERVICE_ACCOUNT_PATH).mkdir(parents=True, exist_ok=True)  # the mount point; stays empty here
        except OSError as exc:
            raise LabError(f"lab: sealed-secrets cannot make the mount point {SERVICE_ACCOUNT_PATH}: {exc}") from exc

    def lab_args(self, seen: set[str]) -> list[str]:
        return [f"--listen-addr={self.ip}:{HTTP_PORT}", f"--listen-metrics-addr={self.ip}:{METRICS_PORT}"]

    def wrapper(self, admin: ClusterAdmin) -> list[str]:
        """The mount namespace with the pod's service account folder, and the in-cluster API address."""
        folder = self.service_account_dir
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in (("ca.crt", admin.ca.read_bytes()), ("namespace", self.namespace.encode())):
            if not (folder / name).is_file() or (folder / name).read_bytes() != data:
                write_file(folder / name, data, mode=0o644)
        server = urllib.parse.urlsplit(admin.server)
        return [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", MOUNT,
                "sealed-secrets-mount", str(folder), SERVICE_ACCOUNT_PATH, server.hostname or "",
                str(server.port or 443)]

    def endpoint(self) -> dict:
        return {**super().endpoint(), "metrics": f"http://{self.ip}:{METRICS_PORT}"}
