"""The real External Secrets Operator (v0.16.2, tools/build external-secrets) as a lab component.

A DeploymentProcess (deployment_process.py): it waits until the cluster holds the Deployment
`external-secrets/external-secrets` (the chart's, with the platform tree's `fullnameOverride: external-secrets`),
then runs the controller with that Deployment's ServiceAccount token and its container's args. So the controller
acts with exactly the RBAC the chart gives it, and Vault's Kubernetes auth sees the ServiceAccount the
ClusterSecretStore names, through the real API server's TokenRequest and TokenReview.

What is External Secrets' own:
- the only address the controller serves, `--metrics-addr` (the chart's `:8080`), becomes <net>.0.14:8080. v0.16.2's
  controller has no health endpoint (only its `webhook` and `certcontroller` subcommands have `--healthz-addr`, and
  the lab runs neither), so readiness is the metrics endpoint listing the ExternalSecret controller's worker count,
  which controller-runtime publishes when the manager starts that controller;
- `--enable-leader-election` (the chart's `leaderElect: true`) is dropped: controller-runtime reads the election's
  namespace only from the pod's service-account mount and will not start without it; the lab runs one process.
"""

from __future__ import annotations

from .deployment_process import DeploymentProcess

METRICS_PORT = 8080


class ExternalSecrets(DeploymentProcess):
    name = controller = deployment = container = "external-secrets"
    namespace = "external-secrets"
    host = "0.14"
    port = METRICS_PORT
    lab_flags = ("metrics-addr",)
    dropped_flags = ("enable-leader-election",)
    ready_path = "/metrics"
    ready_text = 'controller_runtime_max_concurrent_reconciles{controller="externalsecret"}'

    def lab_args(self, seen: set[str]) -> list[str]:
        return [f"--metrics-addr={self.ip}:{METRICS_PORT}"]

    def endpoint(self) -> dict:
        return {**super().endpoint(), "metrics": f"{self.url}/metrics"}
