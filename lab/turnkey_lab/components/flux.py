"""The real Flux controllers (source, kustomize, helm, notification; tools/build builds them) as lab components.

Each is a DeploymentProcess (deployment_process.py): it waits until the cluster holds its Deployment
`flux-system/<controller>`, then runs with that Deployment's ServiceAccount and container args. What is Flux's
own: the addresses replaced by the component's loopback IP (metrics, health, source-controller's artifact
storage and the address it advertises, notification-controller's event and webhook receivers, the other
controllers' `--events-addr`), the storage path in the component's folder, and `--enable-leader-election`
dropped (FluxController says why).
"""

from __future__ import annotations

from typing import ClassVar

from .deployment_process import DeploymentProcess

NAMESPACE = "flux-system"
HEALTH_PORT = 9440
METRICS_PORT = 8080
HTTP_PORT = 9090  # source-controller's artifact server; notification-controller's event receiver
RECEIVER_PORT = 9292  # notification-controller's webhook receiver


class FluxController(DeploymentProcess):
    """One Flux controller; subclasses name it and its address."""

    namespace = NAMESPACE
    container = "manager"
    port = HEALTH_PORT
    extra_ports: ClassVar[tuple[int, ...]] = (METRICS_PORT,)
    lab_flags = ("metrics-addr", "health-addr", "events-addr", "receiverAddr", "storage-path", "storage-addr",
                 "storage-adv-addr")
    # controller-runtime takes the leader election namespace only from the pod's service account mount
    # (/var/run/secrets/kubernetes.io/serviceaccount/namespace) and refuses to start without it; the lab runs one
    # process per controller, so there is no other replica to elect against.
    dropped_flags = ("enable-leader-election",)

    def pod_env(self) -> dict[str, str]:
        return {"RUNTIME_NAMESPACE": NAMESPACE}

    def endpoint(self) -> dict:
        return {**super().endpoint(), "metrics": f"http://{self.ip}:{METRICS_PORT}"}

    def probe_args(self) -> list[str]:
        return [f"--metrics-addr={self.ip}:{METRICS_PORT}", f"--health-addr={self.ip}:{HEALTH_PORT}"]

    def lab_args(self, seen: set[str]) -> list[str]:
        """The probes on the component's address; the event sender points at the lab's notification-controller."""
        events = [f"--events-addr=http://{NotificationController(self.lab, self.profile).ip}:{HTTP_PORT}/"]
        return self.probe_args() + (events if "events-addr" in seen else [])


class SourceController(FluxController):
    name = controller = deployment = "source-controller"
    host = "0.9"
    extra_ports = (METRICS_PORT, HTTP_PORT)

    def lab_args(self, seen: set[str]) -> list[str]:
        storage = self.data_dir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        # the artifact server, advertised at the same address: the other controllers download from it
        return [*super().lab_args(seen), f"--storage-path={storage}", f"--storage-addr={self.ip}:{HTTP_PORT}",
                f"--storage-adv-addr={self.ip}:{HTTP_PORT}"]

    def endpoint(self) -> dict:
        return {**super().endpoint(), "storage": f"http://{self.ip}:{HTTP_PORT}"}


class KustomizeController(FluxController):
    name = controller = deployment = "kustomize-controller"
    host = "0.10"


class HelmController(FluxController):
    name = controller = deployment = "helm-controller"
    host = "0.11"


class NotificationController(FluxController):
    name = controller = deployment = "notification-controller"
    host = "0.12"
    extra_ports = (METRICS_PORT, HTTP_PORT, RECEIVER_PORT)

    def lab_args(self, seen: set[str]) -> list[str]:
        return [*self.probe_args(), f"--events-addr={self.ip}:{HTTP_PORT}", f"--receiverAddr={self.ip}:{RECEIVER_PORT}"]

    def endpoint(self) -> dict:
        return {**super().endpoint(), "events": f"http://{self.ip}:{HTTP_PORT}/",
                "receiver": f"http://{self.ip}:{RECEIVER_PORT}"}


FLUX_COMPONENTS = (SourceController, KustomizeController, HelmController, NotificationController)

