"""The Authentik twin as a lab component (`/api/v3` and OpenID Connect on <net>.0.20:9443).

The cluster starts it, as the real one: while the lab cluster holds the Deployment `authentik/authentik-server` and
the kubelet would start its pod (every Secret and key its env names is there), reconcile() hands the twin the pod's
AUTHENTIK_BOOTSTRAP_* variables and the twin applies Authentik's bootstrap blueprint (twins/authentik/bootstrap.py);
without the Deployment the cluster's bootstrap token is refused again. The lab's own token keeps working throughout.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

from ..state import credentials, save_credentials
from ..twins.authentik import BOOTSTRAP_FILE, bootstrap, spec
from ..twins.component import PROBE_TIMEOUT, TwinComponent
from .base import Health
from .deployment_process import cluster_admin, pod_environment

NAMESPACE, DEPLOYMENT = "authentik", "authentik-server"


class AuthentikTwin(TwinComponent):
    name = "authentik"
    host = "0.20"
    port = 9443
    module = "turnkey_lab.twins.authentik"
    api_path = "/api/v3"
    # The first start parses the 1.7 MB document (cached for later labs) and makes two 4096-bit RSA keys.
    startup_timeout = 120.0

    @property
    def api_url(self) -> str:
        return self.url + self.api_path

    def extra_args(self) -> list[str]:
        document = spec.find()
        return [f"--spec={document}", f"--spec-cache={spec.cache_dir()}"] if document else []

    def _secrets(self) -> dict | None:
        """What credentials.json gets: the bootstrap token (AUTHENTIK_BOOTSTRAP_TOKEN's) and akadmin's login."""
        try:
            made = json.loads((self.data_dir / BOOTSTRAP_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return {"token": made["token"], "username": "akadmin", "password": made["password"]}

    def judge(self, status: dict) -> Health:
        # Healthy only once the secrets are in credentials.json, so `lab up` never returns before they are.
        if not self._secrets() or credentials(self.lab, self.name) != self._secrets():
            return Health(False, "bootstrap token not yet in credentials.json")
        validation = "on" if status.get("schema_validation") else f"OFF ({status.get('spec_note')})"
        cluster = "started by the cluster" if (status.get("cluster") or {}).get("running") else self.waiting
        return Health(True, f"authentik twin {spec.RELEASE}, {status.get('profile')} profile, "
                            f"schema validation {validation}; {cluster}")

    def reconcile(self) -> Health:
        if self.lab_health():
            self._follow_cluster()
        made = self._secrets()  # after the cluster's start, which may have given akadmin its password
        if made and self.lab_health() and credentials(self.lab, self.name) != made:
            save_credentials(self.lab, self.name, made)
        return self.health()

    # -- started by the cluster ----------------------------------------------------------------------------
    waiting = "waiting for the cluster"

    def _follow_cluster(self) -> None:
        """Start the twin as the cluster's Authentik when the kubelet would start its pod; stop it when the
        Deployment or the cluster is gone. A started pod keeps running when a Secret goes later (as a kubelet's)."""
        admin = cluster_admin(self.lab)
        state = self._bootstrap_call("GET")
        if admin is None:
            self.waiting = "waiting for the cluster: the lab has no cluster API yet"
            deployment = None
        else:
            try:
                deployment = admin.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}")
            except (OSError, urllib.error.URLError, ValueError) as exc:
                self.waiting = f"waiting for the cluster: its API {admin.server} does not answer ({exc})"
                return  # an API server restarting: a running pod keeps running
            self.waiting = f"waiting for the cluster: no Deployment {NAMESPACE}/{DEPLOYMENT}"
        if deployment is None:
            if state.get("running"):
                self._bootstrap_call("DELETE")
            return
        if state.get("running") == admin.identity:
            return
        try:
            environments, missing = pod_environment(admin, NAMESPACE, deployment)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            self.waiting = f"waiting for the cluster: its API {admin.server} does not answer ({exc})"
            return
        if missing:
            self.waiting = f"waiting for the cluster: the pod of {NAMESPACE}/{DEPLOYMENT} cannot start: {missing}"
            if state.get("running"):
                self._bootstrap_call("DELETE")
            return
        env: dict[str, str] = {}
        for values in environments.values():  # the server's container (the twin is one process for all)
            env.update({k: v for k, v in values.items() if k in bootstrap.VARIABLES})
        self._bootstrap_call("POST", {"install": admin.identity, "env": env})

    def _bootstrap_call(self, method: str, body: dict | None = None) -> dict:
        """The twin's /_lab/bootstrap, with the lab's token (the body holds the pod's secrets: never logged)."""
        token = (self._secrets() or {}).get("token", "")
        context = ssl.create_default_context(cafile=str(self.lab.ca_cert))
        request = urllib.request.Request(f"{self.url}/_lab/bootstrap", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token}"})
        # the blueprint hashes a password: more than a probe's time on a loaded machine
        with urllib.request.urlopen(request, timeout=5 * PROBE_TIMEOUT, context=context) as answer:
            return json.loads(answer.read())

    def endpoint(self) -> dict:
        status = self.lab_health() or {}
        return {**super().endpoint(), "api_url": self.api_url, "release": spec.RELEASE,
                "schema_validation": bool(status.get("schema_validation"))}

    def shell_env(self) -> dict[str, str]:
        # What authentik-client users and Terraform's provider read; the token is read from the 0600 file.
        return {"AUTHENTIK_URL": self.quote(self.url), "AUTHENTIK_TOKEN": self.credential_in_shell("token")}
